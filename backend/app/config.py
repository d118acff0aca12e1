"""Runtime configuration, read from the environment and validated at startup.

Every variable the service depends on is required: there are no defaults for
secrets in code. A missing or malformed value stops the process at once with a
single log line that names the variable and the rule it broke. Values are never
echoed, because most of them are secrets (DATABASE_URL carries a password).
"""

from __future__ import annotations

import sys
from typing import NoReturn
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_VERSION = "0.0.0"
MIN_SECRET_LENGTH = 32
POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
OPENAI_KEY_PREFIX = "sk-"


class ConfigurationError(Exception):
    """The environment does not hold a valid configuration (message is secret-free)."""


def _http_url(value: str, example: str) -> str:
    rule = f"must be a valid http:// or https:// URL such as {example}"
    value = value.strip()
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise ValueError(rule) from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(rule)
    return value


class Settings(BaseSettings):
    """Validated settings; field ``foo_bar`` is read from env var ``FOO_BAR``."""

    model_config = SettingsConfigDict(
        case_sensitive=False,
        extra="ignore",
        frozen=True,
        # Keep input values out of pydantic's own error text as well.
        hide_input_in_errors=True,
    )

    database_url: SecretStr
    better_auth_secret: SecretStr
    openai_api_key: SecretStr
    frontend_url: str
    agent_model: str
    # Optional: any OpenAI-compatible server (a proxy, a local model, the tests' fake model).
    # Unset or blank means OpenAI itself.
    openai_base_url: str | None = None
    app_version: str = DEFAULT_VERSION

    # ---- Bounds on the work one request may cause. Each has a default; see the README's
    # "Limits" table. A value below 1 is refused at startup like any other bad value.
    # Bytes of a request body; a larger one is refused with a 413 before it is read.
    max_request_bytes: int = Field(default=64 * 1024, ge=1024)
    # Model rounds per chat turn (each round is one model call that may ask for tools).
    chat_max_tool_rounds: int = Field(default=6, ge=1)
    # Tool calls carried out from one model response, and from all responses of one turn.
    chat_max_tool_calls_per_response: int = Field(default=8, ge=1)
    chat_max_tool_calls_per_turn: int = Field(default=16, ge=1)
    # Bytes of one tool result sent back to the model; a longer one is cut, with a note.
    chat_tool_result_max_bytes: int = Field(default=8 * 1024, ge=256)
    # Bytes of earlier messages replayed to the model at the start of a turn.
    chat_history_max_bytes: int = Field(default=32 * 1024, ge=1024)
    # Chat turns one user may start per minute; more are refused with a 429 and Retry-After.
    chat_turns_per_minute: int = Field(default=20, ge=1)
    # Todos one user may keep.
    todos_per_user_max: int = Field(default=1000, ge=1)
    # Items per page of every list route (and of the list_tasks tool), unless asked otherwise,
    # and the most a caller may ask for.
    list_page_size: int = Field(default=50, ge=1)
    list_page_size_max: int = Field(default=200, ge=1)

    # ---- Optional routes, off unless enabled.
    # GET /ops/slow, the sleeping endpoint of the smoke run's graceful-stop check.
    ops_slow_enabled: bool = False
    # /docs, /redoc and /openapi.json.
    api_docs_enabled: bool = False

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: SecretStr) -> SecretStr:
        rule = (
            "must be a PostgreSQL URL such as postgresql://USER:PASSWORD@HOST:5432/DBNAME "
            f"(scheme one of {', '.join(POSTGRES_SCHEMES)}, with a host and a database name)"
        )
        try:
            parts = urlsplit(value.get_secret_value().strip())
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError:
            raise ValueError(rule) from None
        if (
            parts.scheme.lower() not in POSTGRES_SCHEMES
            or not parts.hostname
            or not parts.path.strip("/")
        ):
            raise ValueError(rule)
        return SecretStr(value.get_secret_value().strip())

    @field_validator("better_auth_secret")
    @classmethod
    def _check_auth_secret(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < MIN_SECRET_LENGTH:
            raise ValueError(f"must be at least {MIN_SECRET_LENGTH} characters long")
        return value

    @field_validator("openai_api_key")
    @classmethod
    def _check_openai_key(cls, value: SecretStr) -> SecretStr:
        key = value.get_secret_value().strip()
        if not key.startswith(OPENAI_KEY_PREFIX) or len(key) == len(OPENAI_KEY_PREFIX):
            raise ValueError(f'must start with "{OPENAI_KEY_PREFIX}"')
        return SecretStr(key)

    @field_validator("frontend_url")
    @classmethod
    def _check_frontend_url(cls, value: str) -> str:
        return _http_url(value, "http://frontend:3000")

    @field_validator("openai_base_url")
    @classmethod
    def _check_openai_base_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return _http_url(value, "https://api.openai.com/v1")

    @field_validator("agent_model")
    @classmethod
    def _check_agent_model(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be empty (e.g. gpt-4o)")
        return value

    @field_validator("app_version")
    @classmethod
    def _default_blank_version(cls, value: str) -> str:
        return value.strip() or DEFAULT_VERSION

    @field_validator("list_page_size_max")
    @classmethod
    def _max_not_below_default(cls, value: int, info: object) -> int:
        default = getattr(info, "data", {}).get("list_page_size")
        if default is not None and value < default:
            raise ValueError(f"must not be below LIST_PAGE_SIZE ({default})")
        return value

    @property
    def frontend_origin(self) -> str:
        """FRONTEND_URL reduced to an origin (scheme://host[:port]) for CORS."""
        parts = urlsplit(self.frontend_url)
        return f"{parts.scheme.lower()}://{parts.netloc}"

    @property
    def libpq_dsn(self) -> str:
        """DATABASE_URL in the form libpq/psycopg accepts (no SQLAlchemy driver suffix)."""
        url = self.database_url.get_secret_value()
        scheme, rest = url.split("://", 1)
        return f"postgresql://{rest}" if scheme.lower() == "postgresql+psycopg" else url

    @property
    def sqlalchemy_url(self) -> str:
        """DATABASE_URL for SQLAlchemy/SQLModel, pinned to the psycopg 3 driver."""
        _, rest = self.database_url.get_secret_value().split("://", 1)
        return f"postgresql+psycopg://{rest}"


def describe_errors(exc: ValidationError) -> str:
    """One secret-free line naming each offending variable and its rule."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False, include_context=True):
        name = str(error["loc"][0]).upper() if error["loc"] else "configuration"
        if error["type"] == "missing":
            rule = "is required but not set"
        elif error["type"] == "value_error":
            rule = str(error["ctx"]["error"])
        else:
            rule = f"is invalid: {error['msg']}"
        problems.append(f"{name} {rule}")
    return "invalid configuration: " + "; ".join(problems)


def load_settings(**overrides: object) -> Settings:
    """Read and validate the environment (keyword overrides win; used by tests)."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigurationError(describe_errors(exc)) from None


def exit_on_error(message: str) -> NoReturn:
    print(f"CRITICAL: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def load_settings_or_exit() -> Settings:
    """Startup entry: valid settings, or a one-line message on stderr and exit status 1."""
    try:
        return load_settings()
    except ConfigurationError as exc:
        exit_on_error(str(exc))
