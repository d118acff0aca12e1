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
from agents.chat import ChatError, ChatLimits, ConversationNotFound, TodoAgent, TooManyTurns
from app.api import router
from app.config import Settings
from app.database import DatabaseProbe, SchemaGate, make_engine
from app.limits import BodyLimit
from app.mcp_bridge import load_todo_mcp
from app.slow_probe import router as slow_probe_router
from app.todos import InvalidTodo, TodoNotFound, TooManyTodos

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


def _describe(error: dict[str, Any]) -> dict[str, Any]:
    """One validation error as {field, problem, type}, the field named as the caller wrote it."""
    kind = error.get("type")
    loc = tuple(error.get("loc", ()))
    if kind == "json_invalid":
        # Pydantic's location is ("body", <character offset>): the offset is not a field.
        position = loc[1] if len(loc) > 1 else "?"
        reason = (error.get("ctx") or {}).get("error", "invalid JSON")
        return {"field": "body", "problem": f"is not valid JSON: {reason}: character {position}", "type": kind}
    problem = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    return {"field": _where(loc), "problem": problem, "type": kind}


def _error(status_code: int, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status_code=status_code)


def install_error_handlers(app: FastAPI) -> None:
    """Every refusal answers with a JSON body whose ``detail`` is one readable sentence."""

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [_describe(e) for e in exc.errors()]
        detail = "; ".join(f"{e['field']}: {e['problem']}" for e in errors) or "invalid request"
        return _error(422, detail, errors=errors)

    @app.exception_handler(InvalidTodo)
    async def invalid_todo(_: Request, exc: InvalidTodo) -> JSONResponse:
        return _error(422, str(exc))

    @app.exception_handler(TooManyTodos)
    async def too_many_todos(_: Request, exc: TooManyTodos) -> JSONResponse:
        return _error(409, str(exc))

    @app.exception_handler(TooManyTurns)
    async def too_many_turns(_: Request, exc: TooManyTurns) -> JSONResponse:
        response = _error(429, str(exc))
        response.headers["Retry-After"] = str(exc.retry_after)
        return response

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

    # The API documentation is served only when API_DOCS_ENABLED says so: it maps every route
    # for whoever asks, which a production deployment has no need to do.
    docs = settings.api_docs_enabled
    app = FastAPI(
        title="Todo Chatbot API",
        version=settings.app_version,
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.settings = settings
    app.state.db_probe = db_probe or DatabaseProbe(settings.libpq_dsn)
    app.state.engine = engine
    app.state.schema = schema
    app.state.agent = agent or TodoAgent(
        build_agent_config(settings),
        build_openai_client(settings),
        load_todo_mcp().build_server(
            engine,
            version=settings.app_version,
            page_size=settings.list_page_size,
            todos_max=settings.todos_per_user_max,
        ),
        engine,
        limits=ChatLimits(
            max_tool_rounds=settings.chat_max_tool_rounds,
            max_tool_calls_per_response=settings.chat_max_tool_calls_per_response,
            max_tool_calls_per_turn=settings.chat_max_tool_calls_per_turn,
            tool_result_max_bytes=settings.chat_tool_result_max_bytes,
            history_max_bytes=settings.chat_history_max_bytes,
            turns_per_minute=settings.chat_turns_per_minute,
        ),
    )

    # Added first, so it sits inside CORS: a 413 carries the CORS headers a browser needs to read it.
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
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
    # Only when OPS_SLOW_ENABLED says so (the smoke run sets it): anyone could hold connections
    # open with it.
    if settings.ops_slow_enabled:
        app.include_router(slow_probe_router)

    @app.get("/health", response_model=HealthResponse, tags=["ops"])
    async def health(request: Request) -> HealthResponse:
        """Liveness: always 200 while the process serves; reports database reachability."""
        database = await request.app.state.db_probe.status()
        return HealthResponse(status="ok", version=settings.app_version, database=database)

    return app
