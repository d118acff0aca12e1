"""Todo MCP server package (see ../README.md for why it is not named ``mcp``)."""

from todo_mcp.server import SERVER_NAME, build_server

__all__ = ["SERVER_NAME", "build_server"]
