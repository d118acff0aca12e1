"""Against a real, throwaway PostgreSQL server (skipped where none can be started)."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import SQLModel

from app.database import DB_OK, DatabaseProbe, make_engine
from app.models import Task  # noqa: F401 - registers the table on SQLModel.metadata


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_dsn() -> Iterator[str]:
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not on PATH")
    prefix: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix="todo-pg-"))
    if os.geteuid() == 0:  # initdb refuses to run as root
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and no 'postgres' user to run the server")
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.skip("running as root and no runuser")
        os.chown(workdir, user.pw_uid, user.pw_gid)
        prefix = [runuser, "-u", "postgres", "--"]
    data, port = workdir / "data", _free_port()

    def run(*args: str) -> None:
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)

    run(initdb, "-D", str(data), "-U", "todo", "--auth=trust", "-E", "UTF8")
    run(pg_ctl, "-D", str(data), "-w", "-t", "60", "-l", str(workdir / "log"),
        "-o", f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1", "start")
    try:
        yield f"postgresql://todo@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(workdir, ignore_errors=True)


def test_probe_reports_ok_for_live_database(postgres_dsn: str) -> None:
    assert asyncio.run(DatabaseProbe(postgres_dsn).status()) == DB_OK


def test_mcp_tools_on_postgres(postgres_dsn: str) -> None:
    from app.mcp_bridge import load_todo_mcp

    engine = make_engine(postgres_dsn.replace("postgresql://", "postgresql+psycopg://", 1))
    SQLModel.metadata.create_all(engine)
    server = load_todo_mcp().build_server(engine)

    async def scenario() -> None:
        await server.call_tool("add_task", {"user_id": "pg-user", "title": "Ship it"})
        result = await server.call_tool("list_tasks", {"user_id": "pg-user"})
        assert "Ship it" in str(result)

    asyncio.run(scenario())
    engine.dispose()
