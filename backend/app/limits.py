"""A bound on request bodies, applied before anything reads them.

Without it, a client could send any number of bytes to any route and the server would read them
all before the route even checked who was asking (authentication is a dependency, solved after
the body is parsed). The middleware refuses a declared ``Content-Length`` above the limit at
once, without reading a byte, and counts the bytes of a body sent without one (chunked), so the
refusal comes as soon as the limit is passed. Both answer 413 with a JSON ``detail`` that says
the limit and how to change it.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def too_large_detail(limit: int) -> str:
    return (
        f"the request body is larger than {limit} bytes, the most this service accepts "
        "(MAX_REQUEST_BYTES); send less"
    )


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a body passes the limit; FastAPI re-raises HTTPExceptions
    from body parsing as they are, so the exception handlers answer it with a 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large_detail(limit))


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await JSONResponse({"detail": "the Content-Length header is not a number"}, 400)(scope, receive, send)
                return
            if size > self.max_bytes:
                await JSONResponse({"detail": too_large_detail(self.max_bytes)}, 413)(scope, receive, send)
                return
        received = 0
        limit = self.max_bytes

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, bounded_receive, send)
