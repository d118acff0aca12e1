"""Configuration of the todo chat agent and of its OpenAI client.

Nothing here talks to the network: the client connects on its first request.
"""

from __future__ import annotations

from dataclasses import dataclass

from openai import AsyncOpenAI

from app.config import Settings

DEFAULT_INSTRUCTIONS = (
    "You are a helpful assistant that manages the user's todo list. "
    "Use the todo tools to add, list, update, complete and delete tasks; look tasks up with "
    "list_tasks before changing one you only know by name. Confirm briefly what you changed."
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
    """Async OpenAI client authenticated with OPENAI_API_KEY, at OPENAI_BASE_URL when set."""
    return AsyncOpenAI(
        api_key=settings.openai_api_key.get_secret_value(),
        # Always explicit: given None, the SDK would read OPENAI_BASE_URL from the environment
        # itself and bypass the validation in app.config.
        base_url=settings.openai_base_url or "https://api.openai.com/v1",
        timeout=timeout,
        max_retries=max_retries,
    )
