"""The bounds on what one request can cost, and the hardening of issue 13, against the real
PostgreSQL and the scripted model: bodies, chat work, todos per user, turns per minute,
pagination, optional routes, strict input, model output that cannot be encoded."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agents import build_openai_client
from app.application import create_app
from app.config import ConfigurationError, load_settings
from tests import fake_openai
from tests.conftest import VALID_ENV, SignIn, make_sign_in
from tests.fake_openai import FakeModel

SECRET = VALID_ENV["BETTER_AUTH_SECRET"]


@pytest.fixture
def model() -> Iterator[FakeModel]:
    with FakeModel() as fake:
        yield fake


@pytest.fixture
def sign_in(postgres_dsn: str) -> SignIn:
    return make_sign_in(postgres_dsn, SECRET)


@pytest.fixture
def app_with(valid_env: dict[str, str], postgres_dsn: str, model: FakeModel) -> Iterator[Any]:
    """Builds a client whose settings are the valid environment plus the given overrides."""
    clients: list[TestClient] = []

    def build(**overrides: Any) -> TestClient:
        settings = load_settings(database_url=postgres_dsn, openai_base_url=model.url, **overrides)
        app = create_app(settings)
        app.state.agent.client = build_openai_client(settings, timeout=5, max_retries=0)
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def chat(client: TestClient, token: str, message: str, conversation_id: int | None = None) -> Any:
    body: dict[str, Any] = {"message": message}
    if conversation_id is not None:
        body["conversation_id"] = conversation_id
    response = client.post("/api/chat", json=body, headers=auth(token))
    assert response.status_code == 200, response.text
    return response.json()


def first_user_turn(request: dict[str, Any]) -> bool:
    return request["messages"][-1]["role"] == "user"


# ---- request bodies ----


def test_a_body_over_the_limit_is_a_413_before_authentication(app_with: Any, model: FakeModel) -> None:
    client = app_with()
    body = b'{"message": "' + b"x" * (70 * 1024) + b'"}'
    response = client.post("/api/chat", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413, response.text
    assert "larger than 65536 bytes" in response.json()["detail"]
    assert "MAX_REQUEST_BYTES" in response.json()["detail"]
    assert model.requests == []


def test_a_chunked_body_is_counted_as_it_arrives(app_with: Any, sign_in: SignIn) -> None:
    client = app_with(max_request_bytes=2048)

    def chunks() -> Iterator[bytes]:
        yield b'{"title": "'
        for _ in range(10):
            yield b"y" * 512
        yield b'"}'

    response = client.post(
        "/api/todos", content=chunks(), headers={**auth(sign_in()), "content-type": "application/json"}
    )
    assert response.status_code == 413, response.text
    assert "larger than 2048 bytes" in response.json()["detail"]
    # A body within the limit still works.
    ok = client.post("/api/todos", json={"title": "small"}, headers=auth(sign_in()))
    assert ok.status_code == 201


# ---- chat work ----


def test_tool_calls_per_response_are_capped(app_with: Any, sign_in: SignIn, model: FakeModel) -> None:
    client = app_with(chat_max_tool_calls_per_response=3)
    token = sign_in()
    model.brain = lambda request: (
        fake_openai.tool_calls(*[("add_task", {"title": f"t{i}"}) for i in range(10)])
        if first_user_turn(request)
        else fake_openai.text("done")
    )
    turn = chat(client, token, "add ten")
    assert [a["ok"] for a in turn["actions"]] == [True] * 3 + [False] * 7
    assert turn["actions"][3]["result"] == "not run: at most 3 tool calls per response"
    assert len(client.get("/api/todos", headers=auth(token)).json()) == 3
    # Every call still got an answer, so the model's next request is valid.
    assert len([m for m in model.requests[1]["messages"] if m["role"] == "tool"]) == 10


def test_tool_calls_per_turn_are_capped(app_with: Any, sign_in: SignIn, model: FakeModel) -> None:
    client = app_with(chat_max_tool_calls_per_turn=5, chat_max_tool_rounds=6)
    token = sign_in()
    model.brain = lambda _: fake_openai.tool_calls(("list_tasks", {}), ("list_tasks", {}))
    turn = chat(client, token, "loop")
    ran = [a for a in turn["actions"] if a["ok"]]
    assert len(ran) == 5
    assert turn["actions"][-1]["result"] == "not run: at most 5 tool calls per turn"
    assert "stopped after 5 tool calls" in turn["reply"]
    assert len(model.requests) == 3


def test_a_long_tool_result_is_cut_with_a_note(app_with: Any, sign_in: SignIn, model: FakeModel) -> None:
    client = app_with(chat_tool_result_max_bytes=600)
    token = sign_in()
    for i in range(12):
        client.post("/api/todos", json={"title": f"{i:02d} " + "é" * 150}, headers=auth(token))
    model.brain = lambda request: (
        fake_openai.tool_calls(("list_tasks", {})) if first_user_turn(request) else fake_openai.text("ok")
    )
    turn = chat(client, token, "list everything")
    assert len(turn["actions"][0]["result"]["tasks"]) == 12  # the caller sees the whole page
    sent = next(m["content"] for m in model.requests[1]["messages"] if m["role"] == "tool")
    assert len(sent.encode()) <= 600
    assert "[truncated: this result is" in sent
    # The stored copy is the cut one, so the replay of later turns stays bounded too.
    model.brain = fake_openai.todo_brain
    chat(client, token, "hello", turn["conversation_id"])
    replayed = next(m["content"] for m in model.requests[2]["messages"] if m["role"] == "tool")
    assert len(replayed.encode()) <= 600


def test_history_is_replayed_by_size(app_with: Any, sign_in: SignIn, model: FakeModel) -> None:
    client = app_with(chat_history_max_bytes=4096)
    token = sign_in()
    model.brain = lambda _: fake_openai.text("noted")
    conversation = None
    for i in range(8):
        conversation = chat(client, token, f"note {i} " + "z" * 1500, conversation)["conversation_id"]
    history = model.requests[-1]["messages"][1:-1]
    assert history, "some history is replayed"
    assert sum(len((m.get("content") or "").encode()) for m in history) <= 4096
    assert history[0]["role"] == "user"
    assert "note 6" in history[-2]["content"]


def test_list_tasks_answers_one_page(app_with: Any, sign_in: SignIn, model: FakeModel) -> None:
    client = app_with(list_page_size=5)
    token = sign_in()
    for i in range(7):
        client.post("/api/todos", json={"title": f"task {i}"}, headers=auth(token))
    model.brain = lambda request: (
        fake_openai.tool_calls(("list_tasks", {}), ("list_tasks", {"offset": 5}))
        if first_user_turn(request)
        else fake_openai.text("ok")
    )
    first, second = chat(client, token, "list")["actions"]
    assert [t["title"] for t in first["result"]["tasks"]] == [f"task {i}" for i in range(5)]
    assert (first["result"]["total"], first["result"]["next_offset"]) == (7, 5)
    assert [t["title"] for t in second["result"]["tasks"]] == ["task 5", "task 6"]
    assert second["result"]["next_offset"] is None


def test_todos_per_user_are_capped(app_with: Any, sign_in: SignIn, model: FakeModel) -> None:
    client = app_with(todos_per_user_max=2)
    token, other = sign_in(), sign_in()
    for title in ("one", "two"):
        assert client.post("/api/todos", json={"title": title}, headers=auth(token)).status_code == 201
    refused = client.post("/api/todos", json={"title": "three"}, headers=auth(token))
    assert refused.status_code == 409
    assert "the most one user may keep (2, TODOS_PER_USER_MAX)" in refused.json()["detail"]
    # Through the chat's tool too, and only for that user.
    turn = chat(client, token, "add three")
    assert turn["actions"][0]["ok"] is False
    assert "TODOS_PER_USER_MAX" in turn["actions"][0]["result"]
    assert client.post("/api/todos", json={"title": "mine"}, headers=auth(other)).status_code == 201


def test_turns_per_minute_are_limited_with_retry_after(app_with: Any, sign_in: SignIn, model: FakeModel) -> None:
    client = app_with(chat_turns_per_minute=2)
    token, other = sign_in(), sign_in()
    chat(client, token, "hello")
    chat(client, token, "hello again")
    refused = client.post("/api/chat", json={"message": "and again"}, headers=auth(token))
    assert refused.status_code == 429
    assert "at most 2 chat turns per minute (CHAT_TURNS_PER_MINUTE)" in refused.json()["detail"]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert len(model.requests) == 2
    # Another user has a budget of their own.
    chat(client, other, "hello")


# ---- model output and whole turns ----


def test_a_lone_surrogate_from_the_model_is_cleaned_and_the_turn_stored(
    app_with: Any, sign_in: SignIn, model: FakeModel
) -> None:
    client = app_with()
    token = sign_in()
    model.brain = lambda request: (
        fake_openai.tool_calls(("add_task", '{"title": "milk \\ud800"}'))
        if first_user_turn(request)
        else fake_openai.text("Added \ud800 milk")
    )
    response = client.post("/api/chat", json={"message": "add milk"}, headers=auth(token))
    assert response.status_code == 200, response.text
    turn = response.json()
    assert turn["reply"] == "Added \ufffd milk"
    assert [t["title"] for t in client.get("/api/todos", headers=auth(token)).json()] == ["milk \ufffd"]
    messages = client.get(f"/api/conversations/{turn['conversation_id']}/messages", headers=auth(token)).json()
    assert [(m["role"], m["content"]) for m in messages] == [("user", "add milk"), ("assistant", "Added \ufffd milk")]


def test_a_turn_that_failed_before_doing_anything_leaves_no_trace(
    app_with: Any, sign_in: SignIn, model: FakeModel
) -> None:
    client = app_with()
    token = sign_in()
    model.brain = lambda _: fake_openai.error(500, "down")
    response = client.post("/api/chat", json={"message": "add x"}, headers=auth(token))
    assert response.status_code == 502
    assert client.get("/api/conversations", headers=auth(token)).json() == []


# ---- optional routes ----


def test_ops_slow_and_api_docs_are_off_unless_enabled(app_with: Any) -> None:
    plain = app_with()
    for path in ("/ops/slow?ms=0", "/docs", "/redoc", "/openapi.json"):
        assert plain.get(path).status_code == 404, path
    enabled = app_with(ops_slow_enabled=True, api_docs_enabled=True)
    for path in ("/ops/slow?ms=0", "/docs", "/redoc", "/openapi.json"):
        assert enabled.get(path).status_code == 200, path


def test_optional_routes_are_read_from_the_environment(
    valid_env: dict[str, str], clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("OPS_SLOW_ENABLED", "1")
    clean_env.setenv("API_DOCS_ENABLED", "true")
    settings = load_settings()
    assert settings.ops_slow_enabled and settings.api_docs_enabled
    clean_env.setenv("OPS_SLOW_ENABLED", "sometimes")
    with pytest.raises(ConfigurationError, match="OPS_SLOW_ENABLED is invalid"):
        load_settings()


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("CHAT_TURNS_PER_MINUTE", "0", "CHAT_TURNS_PER_MINUTE is invalid"),
        ("MAX_REQUEST_BYTES", "many", "MAX_REQUEST_BYTES is invalid"),
        ("LIST_PAGE_SIZE_MAX", "10", "LIST_PAGE_SIZE_MAX must not be below LIST_PAGE_SIZE (50)"),
    ],
)
def test_bad_limits_stop_the_start(
    valid_env: dict[str, str], clean_env: pytest.MonkeyPatch, name: str, value: str, words: str
) -> None:
    clean_env.setenv(name, value)
    with pytest.raises(ConfigurationError, match=words.replace("(", r"\(").replace(")", r"\)")):
        load_settings()


# ---- pagination ----


def test_every_list_route_is_paged(app_with: Any, sign_in: SignIn, model: FakeModel) -> None:
    client = app_with(list_page_size=2, list_page_size_max=3)
    token = sign_in()
    for i in range(5):
        client.post("/api/todos", json={"title": f"t{i}"}, headers=auth(token))
    first = client.get("/api/todos", headers=auth(token))
    assert [t["title"] for t in first.json()] == ["t0", "t1"]
    assert first.headers["x-next-offset"] == "2"
    last = client.get("/api/todos", params={"offset": 3, "limit": 3}, headers=auth(token))
    assert [t["title"] for t in last.json()] == ["t3", "t4"]
    assert "x-next-offset" not in last.headers
    too_many = client.get("/api/todos", params={"limit": 4}, headers=auth(token))
    assert too_many.status_code == 422
    assert too_many.json()["detail"] == "limit: must be at most 3 (LIST_PAGE_SIZE_MAX)"

    model.brain = lambda _: fake_openai.text("hi")
    conversation = None
    for i in range(3):
        chat(client, token, f"new {i}")
        conversation = chat(client, token, f"more {i}", conversation)["conversation_id"]
    conversations = client.get("/api/conversations", headers=auth(token))
    assert len(conversations.json()) == 2 and conversations.headers["x-next-offset"] == "2"
    latest = client.get(f"/api/conversations/{conversation}/messages", headers=auth(token))
    assert [m["content"] for m in latest.json()] == ["more 2", "hi"]
    older = client.get(
        f"/api/conversations/{conversation}/messages",
        params={"before": latest.headers["x-next-before"], "limit": 3},
        headers=auth(token),
    )
    assert [m["content"] for m in older.json()] == ["hi", "more 1", "hi"]


# ---- strict input, errors that name the field ----


@pytest.mark.parametrize(
    ("method", "path", "body", "words"),
    [
        ("PATCH", "/api/todos/{id}", {"completed": "yes"}, "completed: Input should be a valid boolean"),
        ("PATCH", "/api/todos/{id}", {"completed": 1}, "completed: Input should be a valid boolean"),
        ("PATCH", "/api/todos/{id}", {"completed": None}, "completed: must be true or false"),
        ("POST", "/api/chat", {"message": "hi", "conversation_id": "7"}, "conversation_id: Input should be a valid integer"),
    ],
)
def test_booleans_and_ids_are_strict(
    app_with: Any, sign_in: SignIn, method: str, path: str, body: Any, words: str
) -> None:
    client = app_with()
    token = sign_in()
    task = client.post("/api/todos", json={"title": "strict"}, headers=auth(token)).json()
    response = client.request(method, path.format(id=task["id"]), json=body, headers=auth(token))
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == words
    assert client.get(f"/api/todos/{task['id']}", headers=auth(token)).json()["completed"] is False


def test_tool_result_note_fits_any_limit() -> None:
    from agents.chat import truncate_utf8

    text = json.dumps(["é" * 50] * 40)
    for limit in (256, 300, 1000):
        cut = truncate_utf8(text, limit)
        assert len(cut.encode()) <= limit and "[truncated" in cut
    assert truncate_utf8("short", 256) == "short"
