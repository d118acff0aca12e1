"""Configuration of the todo chat agent and of its OpenAI client.

Nothing here talks to the network: the client connects on its first request.
"""

from __future__ import annotations

from dataclasses import dataclass

from openai import AsyncOpenAI

from app.config import Settings

DEFAULT_INSTRUCTIONS = (
    "You are a helpful assistant that manages the user's todo list. "
    "Use the todo tools to add, list and complete tasks; confirm what you changed."
)


@dataclass(frozen=True)
class AgentConfig:
    model: str
    instructions: str = DEFAULT_INSTRUCTIONS
    mcp_server_name: str = "todo-mcp"


def build_agent_config(settings: Settings) -> AgentConfig:
    return AgentConfig(model=settings.agent_model)


def build_openai_client(
    settings: Settings, *, timeout: float = 30.0, max_retries: int = 2
) -> AsyncOpenAI:
    """Async OpenAI client authenticated with OPENAI_API_KEY."""
    return AsyncOpenAI(
        api_key=settings.openai_api_key.get_secret_value(),
        timeout=timeout,
        max_retries=max_retries,
    )
