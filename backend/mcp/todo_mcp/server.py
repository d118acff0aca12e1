"""MCP server exposing the todo tools the chat agent calls.

Built with the official MCP Python SDK (``mcp`` 2.x, whose ``MCPServer`` is the
successor of ``FastMCP``). Tools are scoped by ``user_id``: a user only ever
sees and changes their own tasks.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from app.models import Task

SERVER_NAME = "todo-mcp"

StatusFilter = Literal["all", "pending", "completed"]


def _task_dict(task: Task) -> dict[str, Any]:
    return {
        "task_id": task.id,
        "title": task.title,
        "description": task.description,
        "completed": task.completed,
    }


def build_server(engine: Engine, *, version: str = "0.0.0") -> MCPServer:
    """An MCP server whose tools read and write the ``tasks`` table through ``engine``."""
    server = MCPServer(
        SERVER_NAME,
        version=version,
        instructions="Manage the signed-in user's todo list.",
    )

    @server.tool()
    def add_task(user_id: str, title: str, description: str | None = None) -> dict[str, Any]:
        """Create a task for the user and return it."""
        title = title.strip()
        if not title:
            raise ToolError("title must not be empty")
        with Session(engine) as session:
            task = Task(user_id=user_id, title=title, description=description)
            session.add(task)
            session.commit()
            session.refresh(task)
            return _task_dict(task)

    @server.tool()
    def list_tasks(user_id: str, status: StatusFilter = "all") -> list[dict[str, Any]]:
        """List the user's tasks, optionally only pending or completed ones."""
        query = select(Task).where(Task.user_id == user_id)
        if status != "all":
            query = query.where(Task.completed == (status == "completed"))
        with Session(engine) as session:
            return [_task_dict(t) for t in session.exec(query.order_by(Task.id))]

    @server.tool()
    def complete_task(user_id: str, task_id: int) -> dict[str, Any]:
        """Mark one of the user's tasks as completed and return it."""
        with Session(engine) as session:
            task = session.get(Task, task_id)
            if task is None or task.user_id != user_id:
                raise ToolError(f"task {task_id} not found")
            task.completed = True
            task.updated_at = datetime.now(timezone.utc)
            session.add(task)
            session.commit()
            session.refresh(task)
            return _task_dict(task)

    return server
