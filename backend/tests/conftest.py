from __future__ import annotations

import base64
import glob
import hashlib
import hmac
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

# A valid test environment; every value is obviously fake.
VALID_ENV = {
    "DATABASE_URL": "postgresql://todo:pw-test-9f2c@db:5432/todo",
    "BETTER_AUTH_SECRET": "test-secret-0123456789abcdef0123456789ab",  # 40 chars
    "OPENAI_API_KEY": "sk-test-not-a-real-key-7d41",
    "AGENT_MODEL": "gpt-4o",
    "FRONTEND_URL": "http://frontend:3000",
}
ALL_VARS = (*VALID_ENV, "APP_VERSION", "OPENAI_BASE_URL")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Every test starts with none of the app's variables set."""
    for name in ALL_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def valid_env(clean_env: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in VALID_ENV.items():
        clean_env.setenv(name, value)
    return dict(VALID_ENV)


# ---- a real PostgreSQL server, one per test session ----

# Better Auth's tables as its PostgreSQL migration creates them (better-auth 1.7, default
# names): the backend reads `session`; `user` is what `session.userId` references.
BETTER_AUTH_DDL = """
create table "user" ("id" text not null primary key, "name" text not null,
  "email" text not null unique, "emailVerified" boolean not null, "image" text,
  "createdAt" timestamptz default CURRENT_TIMESTAMP not null,
  "updatedAt" timestamptz default CURRENT_TIMESTAMP not null);
create table "session" ("id" text not null primary key, "expiresAt" timestamptz not null,
  "token" text not null unique, "createdAt" timestamptz default CURRENT_TIMESTAMP not null,
  "updatedAt" timestamptz not null, "ipAddress" text, "userAgent" text,
  "userId" text not null references "user" ("id") on delete cascade);
create index "session_userId_idx" on "session" ("userId");
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pg_binary(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        pytest.fail(
            f"PostgreSQL's `{name}` is not on PATH nor in /usr/lib/postgresql/*/bin: the backend tests "
            "run against a real PostgreSQL server; install it with `apt-get install postgresql`"
        )
    return found


@dataclass
class Postgres:
    """A throwaway server: ``url(db)`` for a database on it, ``create_database()`` for a fresh one."""

    port: int

    def url(self, database: str = "postgres", driver: str = "postgresql") -> str:
        return f"{driver}://todo@127.0.0.1:{self.port}/{database}"

    def create_database(self, *, better_auth: bool = True) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'create database "{name}"')
        if better_auth:
            with psycopg.connect(self.url(name), autocommit=True) as conn:
                conn.execute(BETTER_AUTH_DDL)
        return self.url(name)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    initdb, pg_ctl = _pg_binary("initdb"), _pg_binary("pg_ctl")
    prefix: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix="todo-pg-"))
    if os.geteuid() == 0:
        # initdb and postgres refuse to run as root: run them as the `postgres` user.
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("running as root and there is no `postgres` user to run the test server as")
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.fail("running as root and `runuser` is missing (package util-linux)")
        os.chown(workdir, user.pw_uid, user.pw_gid)
        prefix = [runuser, "-u", "postgres", "--"]
    data, port = workdir / "data", _free_port()

    def run(*args: str) -> None:
        result = subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            log = (workdir / "log").read_text() if (workdir / "log").exists() else ""
            pytest.fail(f"{' '.join(args[:2])} failed:\n{result.stdout}{result.stderr}{log}")

    run(initdb, "-D", str(data), "-U", "todo", "--auth=trust", "-E", "UTF8", "--no-sync")
    # fsync off: a test database that is thrown away needs no durability, and it is much faster.
    options = f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
    run(pg_ctl, "-D", str(data), "-w", "-t", "60", "-l", str(workdir / "log"), "-o", options, "start")
    try:
        yield Postgres(port)
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_dsn(postgres: Postgres) -> str:
    """A database of the session's server, with Better Auth's tables."""
    return postgres.create_database()


SignIn = Callable[..., str]


def signed(token: str, secret: str) -> str:
    """The token as Better Auth signs it for its cookie and its bearer plugin."""
    signature = base64.b64encode(hmac.new(secret.encode(), token.encode(), hashlib.sha256).digest()).decode()
    return f"{token}.{signature}"


def make_sign_in(dsn: str, secret: str) -> SignIn:
    """Creates a Better Auth user and session directly in the database, as the frontend would,
    and returns the signed bearer token (`expires_in` seconds; negative: already expired)."""

    def sign_in(user_id: str | None = None, *, expires_in: int = 3600) -> str:
        user_id = user_id or f"user-{uuid.uuid4().hex[:8]}"
        token = uuid.uuid4().hex
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                'insert into "user" (id, name, email, "emailVerified") values (%s, %s, %s, false) '
                "on conflict (id) do nothing",
                (user_id, user_id, f"{user_id}@example.test"),
            )
            conn.execute(
                'insert into "session" (id, "expiresAt", token, "updatedAt", "userId") '
                "values (%s, now() + make_interval(secs => %s), %s, now(), %s)",
                (uuid.uuid4().hex, expires_in, token, user_id),
            )
        return signed(token, secret)

    return sign_in
