from __future__ import annotations

import asyncio
import socket
import time

import pytest
from fastapi.testclient import TestClient

from app.application import create_app
from app.config import load_settings
from app.database import DB_NOT_CONFIGURED, DB_OK, DB_UNREACHABLE, DatabaseProbe


class FixedProbe(DatabaseProbe):
    def __init__(self, state: str) -> None:
        super().__init__(None)
        self.state = state

    async def status(self) -> str:
        return self.state


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_health_reports_status_version_database(
    valid_env: dict[str, str], clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("APP_VERSION", "2.3.4")
    app = create_app(load_settings(), db_probe=FixedProbe(DB_OK))
    with TestClient(app) as client:
        response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": "2.3.4", "database": "ok"}


def test_health_is_200_and_fast_when_database_unreachable(valid_env: dict[str, str]) -> None:
    # A closed local port: the real psycopg probe must report, not fail.
    url = f"postgresql://todo:pw@127.0.0.1:{_free_port()}/todo"
    app = create_app(load_settings(database_url=url))
    with TestClient(app) as client:
        started = time.monotonic()
        response = client.get("/health")
        elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response.json()["database"] == DB_UNREACHABLE
    assert response.json()["status"] == "ok"
    assert elapsed < 1.5


def test_health_with_unresolvable_host(valid_env: dict[str, str]) -> None:
    app = create_app(load_settings(database_url="postgresql://todo:pw@db.invalid:5432/todo"))
    with TestClient(app) as client:
        started = time.monotonic()
        response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["database"] == DB_UNREACHABLE
    assert time.monotonic() - started < 1.5


def test_cors_allows_frontend_origin(valid_env: dict[str, str]) -> None:
    app = create_app(load_settings(), db_probe=FixedProbe(DB_OK))
    with TestClient(app) as client:
        response = client.options(
            "/health",
            headers={"Origin": "http://frontend:3000", "Access-Control-Request-Method": "GET"},
        )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "http://frontend:3000"


def test_probe_not_configured() -> None:
    assert asyncio.run(DatabaseProbe(None).status()) == DB_NOT_CONFIGURED
    assert asyncio.run(DatabaseProbe("").status()) == DB_NOT_CONFIGURED


def test_probe_times_out_within_deadline() -> None:
    async def hang(_: str) -> None:
        await asyncio.sleep(30)

    probe = DatabaseProbe("postgresql://x@h/db", timeout=0.2, ping=hang)
    started = time.monotonic()
    assert asyncio.run(probe.status()) == DB_UNREACHABLE
    assert time.monotonic() - started < 1.0


def test_probe_ok_and_cached() -> None:
    calls: list[str] = []

    async def ping(dsn: str) -> None:
        calls.append(dsn)

    async def scenario() -> list[str]:
        probe = DatabaseProbe("postgresql://x@h/db", cache_seconds=60, ping=ping)
        return [await probe.status() for _ in range(3)]

    assert asyncio.run(scenario()) == [DB_OK] * 3
    assert len(calls) == 1


def test_probe_error_reads_unreachable() -> None:
    async def fail(_: str) -> None:
        raise RuntimeError("password authentication failed")

    assert asyncio.run(DatabaseProbe("postgresql://x@h/db", ping=fail).status()) == DB_UNREACHABLE
