"""AI agent code: OpenAI client and agent configuration built from settings."""

from agents.config import AgentConfig, build_agent_config, build_openai_client

__all__ = ["AgentConfig", "build_agent_config", "build_openai_client"]
