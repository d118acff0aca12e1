"""Database access: the SQLModel engine, table creation and the health probe."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable

import psycopg
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel, create_engine

import app.models  # noqa: F401 - registers the service's tables on SQLModel.metadata

DB_OK = "ok"
DB_UNREACHABLE = "unreachable"
DB_NOT_CONFIGURED = "not configured"


def make_engine(sqlalchemy_url: str, **kwargs: object) -> Engine:
    """Engine for the application database; connects lazily, on first use."""
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(sqlalchemy_url, **kwargs)


async def _ping_postgres(dsn: str) -> None:
    # libpq clamps connect_timeout to >= 2 s; the probe's own deadline is shorter.
    conn = await psycopg.AsyncConnection.connect(dsn, connect_timeout=2, autocommit=True)
    try:
        await conn.execute("SELECT 1")
    finally:
        await conn.close()


class DatabaseProbe:
    """Reports whether the database answers, without ever blocking long.

    Each check is bounded by ``timeout`` seconds (an unreachable or unresolvable
    host reads as "unreachable", never as an error), only one check runs at a
    time, and a result is reused for ``cache_seconds`` so frequent health polls
    do not open a connection each.
    """

    def __init__(
        self,
        dsn: str | None,
        *,
        timeout: float = 1.0,
        cache_seconds: float = 2.0,
        ping: Callable[[str], Awaitable[None]] = _ping_postgres,
    ) -> None:
        self._dsn = dsn
        self._timeout = timeout
        self._cache_seconds = cache_seconds
        self._ping = ping
        self._lock = asyncio.Lock()
        self._last: tuple[float, str] | None = None

    async def status(self) -> str:
        if not self._dsn:
            return DB_NOT_CONFIGURED
        async with self._lock:
            now = time.monotonic()
            if self._last is not None and now - self._last[0] < self._cache_seconds:
                return self._last[1]
            try:
                await asyncio.wait_for(self._ping(self._dsn), timeout=self._timeout)
                state = DB_OK
            except Exception:  # noqa: BLE001 - any failure (DNS, refused, auth, timeout) reads "unreachable"
                state = DB_UNREACHABLE
            self._last = (time.monotonic(), state)
            return state


class SchemaGate:
    """Creates the service's tables (``SQLModel.metadata``) once the database answers.

    The service must start, and report its health, while the database is still
    coming up or briefly away; so startup does not wait for the tables. A
    background task retries until they exist, and every request that needs them
    calls :meth:`ensure` first, which is a flag check once they do.
    ``create_all`` only adds what is missing, so a restart never loses data.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._ready = False
        self._lock = threading.Lock()

    @property
    def ready(self) -> bool:
        return self._ready

    def ensure(self) -> None:
        """Returns once the tables exist; raises the driver's error when the database fails."""
        if self._ready:
            return
        with self._lock:
            if not self._ready:
                SQLModel.metadata.create_all(self._engine)
                self._ready = True

    async def keep_trying(self, interval: float = 2.0) -> None:
        while not self._ready:
            try:
                await asyncio.to_thread(self.ensure)
            except Exception:  # noqa: BLE001 - the database is not there yet: try again
                await asyncio.sleep(interval)
