"""Application factory: builds the FastAPI app from validated settings."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from pydantic import BaseModel

from app.config import Settings
from app.database import DatabaseProbe


class HealthResponse(BaseModel):
    status: str
    version: str
    database: str


def create_app(settings: Settings, *, db_probe: DatabaseProbe | None = None) -> FastAPI:
    app = FastAPI(title="Todo Chatbot API", version=settings.app_version)
    app.state.settings = settings
    app.state.db_probe = db_probe or DatabaseProbe(settings.libpq_dsn)

    app.add_middleware(
        CORSMiddleware,
        allow_origins=[settings.frontend_origin],
        allow_credentials=True,
        allow_methods=["*"],
        allow_headers=["*"],
    )

    @app.get("/health", response_model=HealthResponse, tags=["ops"])
    async def health(request: Request) -> HealthResponse:
        """Liveness: always 200 while the process serves; reports database reachability."""
        database = await request.app.state.db_probe.status()
        return HealthResponse(status="ok", version=settings.app_version, database=database)

    return app
