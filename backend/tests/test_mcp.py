from __future__ import annotations

import asyncio
import importlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.pool import StaticPool
from sqlmodel import SQLModel

from app.database import make_engine
from app.mcp_bridge import MCP_SOURCE_DIR, load_todo_mcp
from app.models import Task  # noqa: F401 - registers the table on SQLModel.metadata

BACKEND_DIR = Path(__file__).resolve().parent.parent


def test_local_mcp_dir_does_not_shadow_the_sdk() -> None:
    assert not (BACKEND_DIR / "mcp" / "__init__.py").exists()
    assert not (BACKEND_DIR / "mcp.py").exists()
    assert str(BACKEND_DIR) in [str(Path(p).resolve()) for p in sys.path if p]
    sdk = importlib.import_module("mcp")
    assert Path(sdk.__file__).parent != BACKEND_DIR / "mcp"
    assert "site-packages" in sdk.__file__


def test_bridge_loads_todo_mcp() -> None:
    module = load_todo_mcp()
    assert Path(module.__file__).parent == MCP_SOURCE_DIR / "todo_mcp"
    assert sys.path[-1] == str(MCP_SOURCE_DIR) or str(MCP_SOURCE_DIR) in sys.path
    assert load_todo_mcp() is module


@pytest.fixture
def server() -> Any:
    engine = make_engine(
        "sqlite://", connect_args={"check_same_thread": False}, poolclass=StaticPool
    )
    SQLModel.metadata.create_all(engine)
    yield load_todo_mcp().build_server(engine, version="9.9.9")
    engine.dispose()


def _payload(result: Any) -> Any:
    if getattr(result, "structured_content", None) is not None:
        content = result.structured_content
        return content.get("result", content) if isinstance(content, dict) else content
    return json.loads(result.content[0].text)


def test_server_declares_todo_tools(server: Any) -> None:
    assert server.name == "todo-mcp"
    tools = {tool.name: tool for tool in asyncio.run(server.list_tools())}
    assert set(tools) == {"add_task", "list_tasks", "complete_task", "update_task", "delete_task"}
    assert tools["add_task"].input_schema["required"] == ["user_id", "title"]
    for tool in tools.values():
        assert "user_id" in tool.input_schema["required"], tool.name


def test_tools_add_list_complete(server: Any) -> None:
    async def scenario() -> None:
        first = _payload(await server.call_tool("add_task", {"user_id": "u1", "title": "Buy milk"}))
        assert first["title"] == "Buy milk" and first["completed"] is False
        await server.call_tool("add_task", {"user_id": "u1", "title": "Walk dog"})
        await server.call_tool("add_task", {"user_id": "u2", "title": "Not yours"})

        mine = _payload(await server.call_tool("list_tasks", {"user_id": "u1"}))["tasks"]
        assert [t["title"] for t in mine] == ["Buy milk", "Walk dog"]

        done = _payload(
            await server.call_tool("complete_task", {"user_id": "u1", "task_id": first["task_id"]})
        )
        assert done["completed"] is True
        pending = _payload(await server.call_tool("list_tasks", {"user_id": "u1", "status": "pending"}))["tasks"]
        assert [t["title"] for t in pending] == ["Walk dog"]
        completed = _payload(
            await server.call_tool("list_tasks", {"user_id": "u1", "status": "completed"})
        )["tasks"]
        assert [t["title"] for t in completed] == ["Buy milk"]

    asyncio.run(scenario())


def test_user_cannot_complete_someone_elses_task(server: Any) -> None:
    async def scenario() -> None:
        task = _payload(await server.call_tool("add_task", {"user_id": "owner", "title": "Mine"}))
        with pytest.raises(Exception, match="not found"):
            await server.call_tool("complete_task", {"user_id": "intruder", "task_id": task["task_id"]})

    asyncio.run(scenario())


def test_update_and_delete(server: Any) -> None:
    async def scenario() -> None:
        task = _payload(await server.call_tool("add_task", {"user_id": "u1", "title": "Draft"}))
        changed = _payload(
            await server.call_tool(
                "update_task", {"user_id": "u1", "task_id": task["task_id"], "title": "Final", "completed": True}
            )
        )
        assert changed["title"] == "Final" and changed["completed"] is True
        with pytest.raises(Exception, match="title must not be empty"):
            await server.call_tool("update_task", {"user_id": "u1", "task_id": task["task_id"], "title": "  "})
        with pytest.raises(Exception, match="not found"):
            await server.call_tool("delete_task", {"user_id": "u2", "task_id": task["task_id"]})
        gone = _payload(await server.call_tool("delete_task", {"user_id": "u1", "task_id": task["task_id"]}))
        assert gone["title"] == "Final"
        assert _payload(await server.call_tool("list_tasks", {"user_id": "u1"}))["tasks"] == []

    asyncio.run(scenario())
