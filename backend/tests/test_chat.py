"""The chat endpoint: a real OpenAI client talking HTTP to a scripted model, MCP tools, PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agents import build_openai_client
from agents.chat import Message, trim_history
from app.application import create_app
from app.config import load_settings
from tests import fake_openai
from tests.conftest import VALID_ENV, SignIn, _free_port, make_sign_in
from tests.fake_openai import FakeModel

SECRET = VALID_ENV["BETTER_AUTH_SECRET"]


@pytest.fixture
def model() -> Iterator[FakeModel]:
    with FakeModel() as fake:
        yield fake


def make_client(dsn: str, base_url: str) -> TestClient:
    settings = load_settings(database_url=dsn, openai_base_url=base_url)
    app = create_app(settings)
    # No retries: a failing model should fail the request at once in these tests.
    app.state.agent.client = build_openai_client(settings, timeout=5, max_retries=0)
    return TestClient(app)


@pytest.fixture
def client(valid_env: dict[str, str], postgres_dsn: str, model: FakeModel) -> Iterator[TestClient]:
    with make_client(postgres_dsn, model.url) as test_client:
        yield test_client


@pytest.fixture
def token(postgres_dsn: str) -> str:
    return make_sign_in(postgres_dsn, SECRET)()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def chat(client: TestClient, token: str, message: str, conversation_id: int | None = None) -> Any:
    body: dict[str, Any] = {"message": message}
    if conversation_id is not None:
        body["conversation_id"] = conversation_id
    response = client.post("/api/chat", json=body, headers=auth(token))
    assert response.status_code == 200, response.text
    return response.json()


def test_add_buy_milk_through_the_model_and_the_mcp_tool(
    client: TestClient, token: str, model: FakeModel
) -> None:
    turn = chat(client, token, "add buy milk")
    assert turn["reply"] == 'Added "buy milk" to your list.'
    assert [(a["tool"], a["arguments"], a["ok"]) for a in turn["actions"]] == [
        ("add_task", {"title": "buy milk"}, True)
    ]
    todos = client.get("/api/todos", headers=auth(token)).json()
    assert [t["title"] for t in todos] == ["buy milk"]

    # What the backend sent: the model, the key, every todo tool, and no user_id anywhere.
    first = model.requests[0]
    assert first["model"] == VALID_ENV["AGENT_MODEL"]
    assert model.authorizations[0] == f"Bearer {VALID_ENV['OPENAI_API_KEY']}"
    tools = {t["function"]["name"]: t["function"]["parameters"] for t in first["tools"]}
    assert set(tools) == {"add_task", "list_tasks", "complete_task", "update_task", "delete_task"}
    assert all("user_id" not in p.get("properties", {}) and "user_id" not in p.get("required", []) for p in tools.values())
    assert first["messages"][0]["role"] == "system"


def test_history_is_stored_and_replayed(client: TestClient, token: str, model: FakeModel) -> None:
    first = chat(client, token, "add buy milk")
    second = chat(client, token, "list my tasks", first["conversation_id"])
    assert second["conversation_id"] == first["conversation_id"]
    assert second["reply"] == "Your tasks: buy milk"

    # The second turn's first request replays the first turn from the database.
    replayed = model.requests[2]["messages"]
    roles = [m["role"] for m in replayed]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert replayed[1]["content"] == "add buy milk"
    assert replayed[2]["tool_calls"][0]["function"]["name"] == "add_task"
    assert json.loads(replayed[3]["content"])["title"] == "buy milk"

    conversations = client.get("/api/conversations", headers=auth(token)).json()
    assert [c["id"] for c in conversations] == [first["conversation_id"]]
    messages = client.get(f"/api/conversations/{first['conversation_id']}/messages", headers=auth(token)).json()
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "add buy milk"),
        ("assistant", 'Added "buy milk" to your list.'),
        ("user", "list my tasks"),
        ("assistant", "Your tasks: buy milk"),
    ]


def test_history_survives_a_new_app_instance(
    valid_env: dict[str, str], postgres_dsn: str, model: FakeModel, token: str
) -> None:
    with make_client(postgres_dsn, model.url) as one:
        conversation = chat(one, token, "add water plants")["conversation_id"]
    with make_client(postgres_dsn, model.url) as other:
        assert chat(other, token, "list", conversation)["reply"] == "Your tasks: water plants"


def test_model_cannot_act_for_another_user(
    client: TestClient, postgres_dsn: str, model: FakeModel
) -> None:
    sign_in = make_sign_in(postgres_dsn, SECRET)
    victim, attacker = sign_in("victim-x1"), sign_in()
    model.brain = lambda request: (
        fake_openai.tool_calls(("add_task", {"title": "planted", "user_id": "victim-x1"}))
        if request["messages"][-1]["role"] == "user"
        else fake_openai.text("ok")
    )
    chat(client, attacker, "do something sneaky")
    assert client.get("/api/todos", headers=auth(victim)).json() == []
    assert [t["title"] for t in client.get("/api/todos", headers=auth(attacker)).json()] == ["planted"]


def test_conversations_are_private(client: TestClient, postgres_dsn: str) -> None:
    sign_in = make_sign_in(postgres_dsn, SECRET)
    alice, bob = sign_in(), sign_in()
    conversation = chat(client, alice, "add a secret")["conversation_id"]
    response = client.post("/api/chat", json={"message": "list", "conversation_id": conversation}, headers=auth(bob))
    assert response.status_code == 404
    assert response.json()["detail"] == f"conversation {conversation} not found"
    assert client.get(f"/api/conversations/{conversation}/messages", headers=auth(bob)).status_code == 404
    assert client.get("/api/conversations", headers=auth(bob)).json() == []


def test_tool_errors_go_back_to_the_model(client: TestClient, token: str, model: FakeModel) -> None:
    model.brain = lambda request: (
        fake_openai.tool_calls(("complete_task", {"task_id": 987654}), ("no_such_tool", {}), ("add_task", "{not json"))
        if request["messages"][-1]["role"] == "user"
        else fake_openai.text("Some of that failed.")
    )
    turn = chat(client, token, "complete task 987654")
    assert turn["reply"] == "Some of that failed."
    assert [(a["tool"], a["ok"], a["result"]) for a in turn["actions"]] == [
        ("complete_task", False, "task 987654 not found"),
        ("no_such_tool", False, "there is no tool named 'no_such_tool'"),
        ("add_task", False, "the arguments were not valid JSON"),
    ]
    tool_answers = [m for m in model.requests[1]["messages"] if m["role"] == "tool"]
    assert json.loads(tool_answers[0]["content"]) == {"error": "task 987654 not found"}


def test_a_looping_model_is_stopped(client: TestClient, token: str, model: FakeModel) -> None:
    model.brain = lambda _: fake_openai.tool_calls(("list_tasks", {}))
    turn = chat(client, token, "loop forever")
    assert "too many tool calls" in turn["reply"]
    assert len(model.requests) == 6
    # The stored history still replays cleanly: the next turn reaches the model.
    model.brain = fake_openai.todo_brain
    assert chat(client, token, "list", turn["conversation_id"])["reply"] == "You have no tasks."


@pytest.mark.parametrize(
    ("status", "words"),
    [(401, "HTTP 401 (check OPENAI_API_KEY)"), (404, "check AGENT_MODEL and OPENAI_BASE_URL"), (500, "HTTP 500")],
)
def test_model_errors_are_a_502_without_secrets(
    client: TestClient, token: str, model: FakeModel, status: int, words: str
) -> None:
    model.brain = lambda _: fake_openai.error(status, f"Incorrect API key provided: {VALID_ENV['OPENAI_API_KEY']}")
    response = client.post("/api/chat", json={"message": "add x"}, headers=auth(token))
    assert response.status_code == 502
    assert words in response.json()["detail"]
    assert VALID_ENV["OPENAI_API_KEY"] not in response.text
    assert "Incorrect API key" not in response.text


def test_unreachable_model_is_a_502(valid_env: dict[str, str], postgres_dsn: str, token: str) -> None:
    with make_client(postgres_dsn, f"http://127.0.0.1:{_free_port()}/v1") as client:
        response = client.post("/api/chat", json={"message": "add x"}, headers=auth(token))
    assert response.status_code == 502
    assert "cannot be reached; check OPENAI_BASE_URL" in response.json()["detail"]


def test_chat_requires_a_session(client: TestClient, model: FakeModel) -> None:
    response = client.post("/api/chat", json={"message": "add buy milk"})
    assert response.status_code == 401
    assert model.requests == []


def _message(role: str, **extra: Any) -> Message:
    return Message(conversation_id=1, user_id="u", role=role, **extra)


def test_trim_history_keeps_only_replayable_sequences() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "list_tasks", "arguments": "{}"}}
    half = {"id": "c3", "type": "function", "function": {"name": "list_tasks", "arguments": "{}"}}
    history = [
        _message("tool", content="[]", tool_call_id="c0"),  # its request was trimmed away
        _message("user", content="list"),
        _message("assistant", tool_calls=[call]),
        _message("tool", content="[]", tool_call_id="c1"),
        _message("assistant", content="none"),
        _message("user", content="list twice"),
        _message("assistant", tool_calls=[half, {**half, "id": "c4"}]),
        _message("tool", content="[]", tool_call_id="c3"),  # c4 never answered: a failed turn
        _message("user", content="again"),
    ]
    kept = trim_history(history, limit=100)
    assert [(m.role, m.content, m.tool_call_id) for m in kept] == [
        ("user", "list", None),
        ("assistant", "", None),
        ("tool", "[]", "c1"),
        ("assistant", "none", None),
        ("user", "list twice", None),
        ("user", "again", None),
    ]
    assert trim_history(history, limit=2)[0].content == "again"
