"""Against the session's real, throwaway PostgreSQL server (see conftest.py)."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
from sqlmodel import SQLModel

from app.database import DB_OK, DatabaseProbe, SchemaGate, make_engine
from tests.conftest import Postgres


def test_probe_reports_ok_for_live_database(postgres_dsn: str) -> None:
    assert asyncio.run(DatabaseProbe(postgres_dsn).status()) == DB_OK


def test_schema_gate_creates_every_table_once(postgres: Postgres) -> None:
    url = postgres.create_database(better_auth=False)
    engine = make_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    gate = SchemaGate(engine)
    assert not gate.ready
    gate.ensure()
    gate.ensure()
    assert gate.ready
    with psycopg.connect(url) as conn:
        tables = {r[0] for r in conn.execute("select tablename from pg_tables where schemaname = 'public'")}
    assert tables == {"tasks", "conversations", "messages", "chat_turn_starts"}
    assert set(SQLModel.metadata.tables) == tables
    engine.dispose()


def test_schema_gate_keeps_trying_until_the_database_answers(postgres: Postgres) -> None:
    # A database that does not exist yet stands for a server still starting.
    name = f"later_{uuid.uuid4().hex[:12]}"
    engine = make_engine(postgres.url(name, "postgresql+psycopg"))
    gate = SchemaGate(engine)

    async def scenario() -> None:
        task = asyncio.create_task(gate.keep_trying(interval=0.05))
        await asyncio.sleep(0.3)
        assert not gate.ready
        with psycopg.connect(postgres.url(), autocommit=True) as conn:
            conn.execute(f'create database "{name}"')
        await asyncio.wait_for(task, timeout=30)

    asyncio.run(scenario())
    assert gate.ready
    engine.dispose()


def test_mcp_tools_on_postgres(postgres_dsn: str) -> None:
    from app.mcp_bridge import load_todo_mcp

    engine = make_engine(postgres_dsn.replace("postgresql://", "postgresql+psycopg://", 1))
    SQLModel.metadata.create_all(engine)
    server = load_todo_mcp().build_server(engine)

    async def scenario() -> None:
        await server.call_tool("add_task", {"user_id": "pg-user", "title": "Ship it"})
        result = await server.call_tool("list_tasks", {"user_id": "pg-user"})
        assert "Ship it" in str(result)
        other = await server.call_tool("list_tasks", {"user_id": "pg-other"})
        assert "Ship it" not in str(other)

    asyncio.run(scenario())
    engine.dispose()
