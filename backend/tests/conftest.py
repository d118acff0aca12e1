from __future__ import annotations

import pytest

# A valid test environment; every value is obviously fake.
VALID_ENV = {
    "DATABASE_URL": "postgresql://todo:pw-test-9f2c@db:5432/todo",
    "BETTER_AUTH_SECRET": "test-secret-0123456789abcdef0123456789ab",  # 40 chars
    "OPENAI_API_KEY": "sk-test-not-a-real-key-7d41",
    "AGENT_MODEL": "gpt-4o",
    "FRONTEND_URL": "http://frontend:3000",
}
ALL_VARS = (*VALID_ENV, "APP_VERSION")


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
