"""Application factory: builds the FastAPI app from validated settings."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, DBAPIError

from agents import build_agent_config, build_openai_client
from agents.chat import ChatError, ConversationNotFound, TodoAgent
from app.api import router
from app.config import Settings
from app.database import DatabaseProbe, SchemaGate, make_engine
from app.mcp_bridge import load_todo_mcp
from app.slow_probe import router as slow_probe_router
from app.todos import InvalidTodo, TodoNotFound

# libpq's own connect timeout (seconds): a request against a database that does not answer
# fails with a 503 after this long instead of hanging.
CONNECT_TIMEOUT = 5


class HealthResponse(BaseModel):
    status: str
    version: str
    database: str


def _where(loc: tuple[Any, ...]) -> str:
    # ("body", "title") -> "title"; ("query", "status") -> "status"; the body itself -> "body".
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or str(loc[0] if loc else "request")


def _error(status_code: int, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status_code=status_code)


def install_error_handlers(app: FastAPI) -> None:
    """Every refusal answers with a JSON body whose ``detail`` is one readable sentence."""

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": _where(tuple(e.get("loc", ()))), "problem": str(e.get("msg", "invalid")), "type": e.get("type")}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{e['field']}: {e['problem']}" for e in errors) or "invalid request"
        return _error(422, detail, errors=errors)

    @app.exception_handler(InvalidTodo)
    async def invalid_todo(_: Request, exc: InvalidTodo) -> JSONResponse:
        return _error(422, str(exc))

    @app.exception_handler(TodoNotFound)
    async def todo_not_found(_: Request, exc: TodoNotFound) -> JSONResponse:
        return _error(404, str(exc))

    @app.exception_handler(ConversationNotFound)
    async def conversation_not_found(_: Request, exc: ConversationNotFound) -> JSONResponse:
        return _error(404, str(exc))

    @app.exception_handler(ChatError)
    async def model_failed(_: Request, exc: ChatError) -> JSONResponse:
        return _error(502, str(exc))

    @app.exception_handler(DBAPIError)
    async def database_failed(_: Request, exc: DBAPIError) -> JSONResponse:
        if isinstance(exc, DataError):
            # Input checks come first, so this is a last line: the database refused a value.
            return _error(422, "the database rejected a value of the request; check its fields")
        return _error(503, "the database is unavailable; try again shortly")


def create_app(
    settings: Settings,
    *,
    db_probe: DatabaseProbe | None = None,
    engine: Engine | None = None,
    agent: TodoAgent | None = None,
) -> FastAPI:
    engine = engine or make_engine(settings.sqlalchemy_url, connect_args={"connect_timeout": CONNECT_TIMEOUT})
    schema = SchemaGate(engine)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Tables are created in the background: the service answers /health at once, even
        # while the database is still starting.
        task = asyncio.create_task(schema.keep_trying())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            engine.dispose()

    app = FastAPI(title="Todo Chatbot API", version=settings.app_version, lifespan=lifespan)
    app.state.settings = settings
    app.state.db_probe = db_probe or DatabaseProbe(settings.libpq_dsn)
    app.state.engine = engine
    app.state.schema = schema
    app.state.agent = agent or TodoAgent(
        build_agent_config(settings),
        build_openai_client(settings),
        load_todo_mcp().build_server(engine, version=settings.app_version),
        engine,
    )

    app.add_middleware(
        CORSMiddleware,
        allow_origins=[settings.frontend_origin],
        allow_credentials=True,
        allow_methods=["*"],
        allow_headers=["*"],
    )
    install_error_handlers(app)
    app.include_router(router)
    # For the graceful-stop check of `cargo xtask smoke`: a request that is still in flight.
    app.include_router(slow_probe_router)

    @app.get("/health", response_model=HealthResponse, tags=["ops"])
    async def health(request: Request) -> HealthResponse:
        """Liveness: always 200 while the process serves; reports database reachability."""
        database = await request.app.state.db_probe.status()
        return HealthResponse(status="ok", version=settings.app_version, database=database)

    return app
