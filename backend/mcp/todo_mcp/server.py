"""MCP server exposing the todo tools the chat agent calls.

Built with the official MCP Python SDK (``mcp`` 2.x, whose ``MCPServer`` is the
successor of ``FastMCP``). The tools are thin wrappers over ``app.todos``, the
same operations the REST API uses, so both behave alike. Every tool is scoped
by ``user_id``: a user only ever sees and changes their own tasks. The chat
agent fills ``user_id`` from the authenticated request itself and hides it from
the model, so a model can never act for another user.
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from sqlalchemy.engine import Engine
from sqlmodel import Session

from app import todos
from app.models import Task
from app.todos import StatusFilter

SERVER_NAME = "todo-mcp"
# The argument the agent supplies itself (never the model).
USER_ARGUMENT = "user_id"


def _task_dict(task: Task) -> dict[str, Any]:
    return {
        "task_id": task.id,
        "title": task.title,
        "description": task.description,
        "completed": task.completed,
    }


# Defaults of the bounds the application passes from its settings (LIST_PAGE_SIZE,
# TODOS_PER_USER_MAX).
DEFAULT_PAGE_SIZE = 50
DEFAULT_TODOS_MAX = 1000


def build_server(
    engine: Engine,
    *,
    version: str = "0.0.0",
    page_size: int = DEFAULT_PAGE_SIZE,
    todos_max: int = DEFAULT_TODOS_MAX,
) -> MCPServer:
    """An MCP server whose tools read and write the ``tasks`` table through ``engine``.

    ``list_tasks`` answers one page of at most ``page_size`` tasks, so one call can never hand
    the model a user's whole list; ``add_task`` refuses once the user has ``todos_max`` tasks.
    """
    server = MCPServer(
        SERVER_NAME,
        version=version,
        instructions="Manage the signed-in user's todo list.",
    )

    def run(operation: Any, *args: Any, **kwargs: Any) -> Any:
        # The SDK runs these synchronous tools in a worker thread, so blocking I/O is fine here.
        with Session(engine) as session:
            try:
                return operation(session, *args, **kwargs)
            except todos.TodoError as error:
                raise ToolError(str(error)) from None

    @server.tool()
    def add_task(user_id: str, title: str, description: str | None = None) -> dict[str, Any]:
        """Create a task for the user and return it."""
        return _task_dict(run(todos.create_task, user_id, title, description, max_per_user=todos_max))

    @server.tool()
    def list_tasks(user_id: str, status: StatusFilter = "all", offset: int = 0) -> dict[str, Any]:
        """List the user's tasks (optionally only pending or completed ones), oldest first, one
        page at a time: when ``next_offset`` is not null, call again with that offset for more."""
        offset = max(offset, 0)

        def page(session: Session) -> dict[str, Any]:
            tasks = todos.list_tasks(session, user_id, status, limit=page_size, offset=offset)
            total = todos.count_tasks(session, user_id, status)
            following = offset + len(tasks)
            return {
                "tasks": [_task_dict(t) for t in tasks],
                "total": total,
                "next_offset": following if following < total else None,
            }

        return run(page)

    @server.tool()
    def complete_task(user_id: str, task_id: int) -> dict[str, Any]:
        """Mark one of the user's tasks as completed and return it."""
        return _task_dict(run(todos.complete_task, user_id, task_id))

    @server.tool()
    def update_task(
        user_id: str,
        task_id: int,
        title: str | None = None,
        description: str | None = None,
        completed: bool | None = None,
    ) -> dict[str, Any]:
        """Change the title, description or completed state of one of the user's tasks."""
        return _task_dict(
            run(
                todos.update_task,
                user_id,
                task_id,
                title=title,
                description=description,
                completed=completed,
            )
        )

    @server.tool()
    def delete_task(user_id: str, task_id: int) -> dict[str, Any]:
        """Delete one of the user's tasks and return what it was."""
        return _task_dict(run(todos.delete_task, user_id, task_id))

    return server
