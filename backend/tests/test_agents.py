from __future__ import annotations

from openai import AsyncOpenAI

from agents import build_agent_config, build_openai_client
from app.config import load_settings


def test_agent_config_uses_agent_model(valid_env: dict[str, str]) -> None:
    config = build_agent_config(load_settings(agent_model="gpt-4o-mini"))
    assert config.model == "gpt-4o-mini"
    assert config.instructions


def test_openai_client_built_from_settings(valid_env: dict[str, str]) -> None:
    client = build_openai_client(load_settings(), timeout=5.0, max_retries=0)
    assert isinstance(client, AsyncOpenAI)
    assert client.api_key == valid_env["OPENAI_API_KEY"]
    assert client.max_retries == 0


def test_agent_config_names_the_todo_mcp_server(valid_env: dict[str, str]) -> None:
    from app.mcp_bridge import load_todo_mcp

    config = build_agent_config(load_settings())
    assert config.mcp_server_name == load_todo_mcp().SERVER_NAME


def test_openai_client_uses_openai_base_url(valid_env: dict[str, str]) -> None:
    default = build_openai_client(load_settings())
    assert str(default.base_url).rstrip("/") == "https://api.openai.com/v1"
    custom = build_openai_client(load_settings(openai_base_url="http://model:8080/v1"))
    assert str(custom.base_url).rstrip("/") == "http://model:8080/v1"
