from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import ConfigurationError, Settings, load_settings
from tests.conftest import VALID_ENV

BACKEND_DIR = Path(__file__).resolve().parent.parent


def test_valid_environment_loads(valid_env: dict[str, str]) -> None:
    settings = load_settings()
    assert settings.agent_model == "gpt-4o"
    assert settings.frontend_url == "http://frontend:3000"
    assert settings.frontend_origin == "http://frontend:3000"
    assert settings.better_auth_secret.get_secret_value() == valid_env["BETTER_AUTH_SECRET"]
    assert settings.app_version == "0.0.0"


def test_app_version_from_env(valid_env: dict[str, str], clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("APP_VERSION", "1.4.2")
    assert load_settings().app_version == "1.4.2"
    clean_env.setenv("APP_VERSION", "  ")
    assert load_settings().app_version == "0.0.0"


def test_secrets_do_not_show_in_repr(valid_env: dict[str, str]) -> None:
    text = repr(load_settings()) + str(load_settings())
    for name in ("DATABASE_URL", "BETTER_AUTH_SECRET", "OPENAI_API_KEY"):
        assert valid_env[name] not in text


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://todo:pw@db:5432/todo",
        "postgres://todo:pw@db/todo",
        "postgresql+psycopg://todo:pw@db:5432/todo",
        "postgresql://u:p@ep-cool-1234.eu-central-1.aws.neon.tech/neondb?sslmode=require",
    ],
)
def test_database_url_accepted(valid_env: dict[str, str], url: str) -> None:
    settings = load_settings(database_url=url)
    assert settings.sqlalchemy_url.startswith("postgresql+psycopg://")
    assert settings.libpq_dsn.split("://", 1)[0] in ("postgresql", "postgres")
    assert settings.libpq_dsn.split("://", 1)[1] == url.split("://", 1)[1]


# (variable, bad value, words the message must contain)
BAD_VALUES = [
    ("DATABASE_URL", "mysql://todo:hunter2-secret@db:3306/todo", "PostgreSQL URL"),
    ("DATABASE_URL", "postgresql://todo:hunter2-secret@/todo", "PostgreSQL URL"),
    ("DATABASE_URL", "postgresql://todo:hunter2-secret@db:5432", "PostgreSQL URL"),
    ("DATABASE_URL", "postgresql://todo:hunter2-secret@db:notaport/todo", "PostgreSQL URL"),
    ("DATABASE_URL", "hunter2-secret-not-a-url", "PostgreSQL URL"),
    ("BETTER_AUTH_SECRET", "too-short-secret-31-characters!", "at least 32 characters"),
    ("OPENAI_API_KEY", "pk-live-hunter2-secret", 'start with "sk-"'),
    ("OPENAI_API_KEY", "sk-", 'start with "sk-"'),
    ("FRONTEND_URL", "ftp://frontend-hunter2:3000", "http:// or https:// URL"),
    ("FRONTEND_URL", "frontend-hunter2:3000", "http:// or https:// URL"),
    ("FRONTEND_URL", "http://", "http:// or https:// URL"),
    ("AGENT_MODEL", "   ", "must not be empty"),
    ("AGENT_MODEL", "", "must not be empty"),
]


@pytest.mark.parametrize(("name", "value", "rule"), BAD_VALUES)
def test_bad_value_rejected_without_echo(
    valid_env: dict[str, str], clean_env: pytest.MonkeyPatch, name: str, value: str, rule: str
) -> None:
    clean_env.setenv(name, value)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    message = str(info.value)
    assert name in message
    assert rule in message
    assert "\n" not in message
    if value.strip() and value not in rule:
        assert value not in message
    for secret in ("hunter2", valid_env["BETTER_AUTH_SECRET"], valid_env["OPENAI_API_KEY"]):
        assert secret not in message
    # The chained pydantic error is dropped too (it would carry the input).
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize("name", list(VALID_ENV))
def test_missing_variable_rejected(
    valid_env: dict[str, str], clean_env: pytest.MonkeyPatch, name: str
) -> None:
    clean_env.delenv(name)
    with pytest.raises(ConfigurationError, match=f"{name} is required but not set"):
        load_settings()


def test_no_defaults_for_required_settings() -> None:
    for name in ("database_url", "better_auth_secret", "openai_api_key", "frontend_url", "agent_model"):
        assert Settings.model_fields[name].is_required(), name


def _run_app_import(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in (*VALID_ENV, "APP_VERSION")}
    return subprocess.run(
        [sys.executable, "-c", "import app.main"],
        cwd=BACKEND_DIR,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_startup_exits_with_one_line_on_bad_secret() -> None:
    bad = "short-but-secret-XYZ"
    result = _run_app_import({**VALID_ENV, "BETTER_AUTH_SECRET": bad})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "CRITICAL: invalid configuration: BETTER_AUTH_SECRET must be at least 32 characters long"
    ]
    assert bad not in result.stderr + result.stdout


def test_startup_succeeds_with_valid_environment() -> None:
    result = _run_app_import(VALID_ENV)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_openai_base_url_is_optional_and_checked(valid_env: dict[str, str], clean_env: pytest.MonkeyPatch) -> None:
    assert load_settings().openai_base_url is None
    clean_env.setenv("OPENAI_BASE_URL", "  ")
    assert load_settings().openai_base_url is None
    clean_env.setenv("OPENAI_BASE_URL", "http://model:8080/v1")
    assert load_settings().openai_base_url == "http://model:8080/v1"
    clean_env.setenv("OPENAI_BASE_URL", "model:8080")
    with pytest.raises(ConfigurationError, match="OPENAI_BASE_URL must be a valid http:// or https:// URL"):
        load_settings()
