"""The HTTP API against the session's real PostgreSQL: authentication, todos, isolation, errors."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from fastapi.testclient import TestClient

from app.application import create_app
from app.config import load_settings
from tests.conftest import VALID_ENV, Postgres, SignIn, _free_port, make_sign_in, signed
from tests.fake_openai import FakeModel

SECRET = VALID_ENV["BETTER_AUTH_SECRET"]
# For apps that never reach the chat: a closed loopback port, so no call could leave the machine.
UNUSED_MODEL = f"http://127.0.0.1:{_free_port()}/v1"


@pytest.fixture
def client(valid_env: dict[str, str], postgres_dsn: str) -> Iterator[TestClient]:
    # The model is the scripted loopback one: no test sends anything off the machine.
    with FakeModel() as model:
        app = create_app(load_settings(database_url=postgres_dsn, openai_base_url=model.url))
        with TestClient(app) as test_client:
            yield test_client


@pytest.fixture
def sign_in(postgres_dsn: str) -> SignIn:
    return make_sign_in(postgres_dsn, SECRET)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def add(client: TestClient, token: str, title: str, **extra: Any) -> dict[str, Any]:
    response = client.post("/api/todos", json={"title": title, **extra}, headers=auth(token))
    assert response.status_code == 201, response.text
    return response.json()


def titles(client: TestClient, token: str, status: str = "all") -> list[str]:
    response = client.get("/api/todos", params={"status": status}, headers=auth(token))
    assert response.status_code == 200, response.text
    return [t["title"] for t in response.json()]


# ---- authentication ----


def test_valid_session_token_is_accepted(client: TestClient, sign_in: SignIn) -> None:
    response = client.get("/api/todos", headers=auth(sign_in()))
    assert response.status_code == 200
    assert response.json() == []


def test_url_encoded_cookie_form_is_accepted(client: TestClient, sign_in: SignIn) -> None:
    # The cookie holds the signed token URL-encoded; a client may send it as it is.
    response = client.get("/api/todos", headers=auth(quote(sign_in(), safe="")))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        ({}, "missing Authorization header"),
        ({"Authorization": "Basic dXNlcjpwdw=="}, "must read 'Bearer <session token>'"),
        ({"Authorization": "Bearer "}, "must read 'Bearer <session token>'"),
        ({"Authorization": "Bearer no-dot-in-here"}, "malformed bearer token"),
        ({"Authorization": "Bearer abc.!!!not-base64!!!"}, "signature does not match"),
    ],
)
def test_missing_or_malformed_credentials_are_401(
    client: TestClient, headers: dict[str, str], words: str
) -> None:
    response = client.get("/api/todos", headers=headers)
    assert response.status_code == 401
    assert words in response.json()["detail"]
    assert response.headers["www-authenticate"] == "Bearer"


def test_token_signed_with_another_secret_is_401(client: TestClient, postgres_dsn: str) -> None:
    forged = make_sign_in(postgres_dsn, "another-secret-" + "x" * 32)()
    response = client.get("/api/todos", headers=auth(forged))
    assert response.status_code == 401
    assert "does not match BETTER_AUTH_SECRET" in response.json()["detail"]


def test_unknown_or_expired_session_is_401(client: TestClient, sign_in: SignIn) -> None:
    for token in (signed(uuid.uuid4().hex, SECRET), sign_in(expires_in=-60)):
        response = client.get("/api/todos", headers=auth(token))
        assert response.status_code == 401
        assert "expired or was signed out" in response.json()["detail"]


def test_signed_out_session_stops_working_at_once(
    client: TestClient, sign_in: SignIn, postgres_dsn: str
) -> None:
    token = sign_in()
    assert client.get("/api/todos", headers=auth(token)).status_code == 200
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute('delete from "session" where token = %s', (token.rsplit(".", 1)[0],))
    assert client.get("/api/todos", headers=auth(token)).status_code == 401


# ---- todos ----


def test_create_list_filter_update_complete_delete(client: TestClient, sign_in: SignIn) -> None:
    token = sign_in()
    milk = add(client, token, "  Buy milk  ", description="two litres")
    assert milk["title"] == "Buy milk" and milk["description"] == "two litres"
    assert milk["completed"] is False and milk["id"] >= 1
    walk = add(client, token, "Walk the dog")
    assert titles(client, token) == ["Buy milk", "Walk the dog"]

    done = client.post(f"/api/todos/{milk['id']}/complete", headers=auth(token))
    assert done.status_code == 200 and done.json()["completed"] is True
    assert titles(client, token, "completed") == ["Buy milk"]
    assert titles(client, token, "pending") == ["Walk the dog"]

    renamed = client.patch(f"/api/todos/{walk['id']}", json={"title": "Walk the cat"}, headers=auth(token))
    assert renamed.status_code == 200 and renamed.json()["title"] == "Walk the cat"
    reopened = client.patch(f"/api/todos/{milk['id']}", json={"completed": False, "description": None}, headers=auth(token))
    assert reopened.json()["completed"] is False and reopened.json()["description"] is None
    assert client.get(f"/api/todos/{milk['id']}", headers=auth(token)).json()["title"] == "Buy milk"

    deleted = client.delete(f"/api/todos/{milk['id']}", headers=auth(token))
    assert deleted.status_code == 204 and deleted.content == b""
    assert titles(client, token) == ["Walk the cat"]
    gone = client.get(f"/api/todos/{milk['id']}", headers=auth(token))
    assert gone.status_code == 404
    assert gone.json() == {"detail": f"task {milk['id']} not found"}


def test_users_never_see_or_touch_each_others_todos(client: TestClient, sign_in: SignIn) -> None:
    alice, bob = sign_in("alice-" + uuid.uuid4().hex[:6]), sign_in("bob-" + uuid.uuid4().hex[:6])
    secret = add(client, alice, "Alice's secret plan")
    add(client, bob, "Bob's errand")

    assert titles(client, alice) == ["Alice's secret plan"]
    assert titles(client, bob) == ["Bob's errand"]
    task = f"/api/todos/{secret['id']}"
    for method, path, body in [
        ("GET", task, None),
        ("PATCH", task, {"title": "hijacked"}),
        ("POST", f"{task}/complete", None),
        ("DELETE", task, None),
    ]:
        response = client.request(method, path, json=body, headers=auth(bob))
        assert response.status_code == 404, (method, response.text)
        assert response.json()["detail"] == f"task {secret['id']} not found"
    unchanged = client.get(task, headers=auth(alice)).json()
    assert unchanged["title"] == "Alice's secret plan" and unchanged["completed"] is False


# ---- bad input: 4xx with a readable detail, never a 500 ----

BAD_REQUESTS = [
    ("POST", "/api/todos", {"title": ""}, 422, "title: String should have at least 1 character"),
    ("POST", "/api/todos", {"title": "   "}, 422, "title must not be empty"),
    ("POST", "/api/todos", {"title": "x" * 201}, 422, "title: String should have at most 200 characters"),
    ("POST", "/api/todos", {"title": "ok", "description": "d" * 1001}, 422, "description: String should have at most 1000"),
    ("POST", "/api/todos", {"titel": "typo"}, 422, "titel: Extra inputs are not permitted"),
    ("POST", "/api/todos", {}, 422, "title: Field required"),
    ("POST", "/api/todos", {"title": 5}, 422, "title: Input should be a valid string"),
    ("POST", "/api/todos", {"title": "nul\x00byte"}, 422, "title must not contain NUL characters"),
    ("POST", "/api/todos", [1, 2], 422, "Input should be a valid dictionary"),
    ("GET", "/api/todos?status=done", None, 422, "status: Input should be 'all', 'pending' or 'completed'"),
    ("GET", "/api/todos/abc", None, 422, "task_id: Input should be a valid integer"),
    ("GET", "/api/todos/99999999999999999999", None, 404, "not found"),
    ("GET", "/api/todos/-1", None, 404, "task -1 not found"),
    ("PATCH", "/api/todos/1", {}, 422, "give at least one of title, description, completed"),
    ("PATCH", "/api/todos/1", {"title": None}, 422, "title: cannot be null"),
    ("PATCH", "/api/todos/1", {"completed": "maybe"}, 422, "completed: Input should be a valid boolean"),
    ("POST", "/api/chat", {"message": ""}, 422, "message: String should have at least 1 character"),
    ("POST", "/api/chat", {"message": "hi", "conversation_id": 0}, 422, "conversation_id: Input should be greater than or equal to 1"),
    ("POST", "/api/chat", {"message": "x" * 4001}, 422, "message: String should have at most 4000 characters"),
    ("POST", "/api/chat", {"message": "nul\x00"}, 422, "message must not contain NUL characters"),
    ("POST", "/api/chat", {"message": "   "}, 422, "message must not be blank"),
    ("GET", "/api/conversations/424242/messages", None, 404, "conversation 424242 not found"),
]


@pytest.mark.parametrize(("method", "path", "body", "code", "words"), BAD_REQUESTS)
def test_bad_input_is_a_clear_4xx(
    client: TestClient, sign_in: SignIn, method: str, path: str, body: Any, code: int, words: str
) -> None:
    response = client.request(method, path, json=body, headers=auth(sign_in()))
    assert response.status_code == code, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and words in detail, detail


def test_malformed_json_is_a_clear_422(client: TestClient, sign_in: SignIn) -> None:
    response = client.post(
        "/api/todos",
        content=b'{"title": "unterminated',
        headers={**auth(sign_in()), "content-type": "application/json"},
    )
    assert response.status_code == 422
    # The body is named as the field, not the character offset pydantic puts in its place.
    assert response.json()["detail"] == "body: is not valid JSON: Unterminated string starting at: character 10"
    assert response.json()["errors"][0]["field"] == "body"


# ---- the database: tables at startup, an outage is a 503 ----


def test_tables_are_created_at_startup(valid_env: dict[str, str], postgres: Postgres) -> None:
    dsn = postgres.create_database()
    with TestClient(create_app(load_settings(database_url=dsn, openai_base_url=UNUSED_MODEL))):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with psycopg.connect(dsn) as conn:
                found = {r[0] for r in conn.execute("select tablename from pg_tables where schemaname='public'")}
            if {"tasks", "conversations", "messages"} <= found:
                break
            time.sleep(0.1)
    assert {"tasks", "conversations", "messages", "user", "session"} <= found


def test_unreachable_database_is_a_503_not_a_500(valid_env: dict[str, str]) -> None:
    url = f"postgresql://todo:pw@127.0.0.1:{_free_port()}/todo"
    with TestClient(create_app(load_settings(database_url=url, openai_base_url=UNUSED_MODEL))) as client:
        response = client.get("/api/todos", headers=auth(signed("sometoken", SECRET)))
        assert response.status_code == 503
        assert "database is unavailable" in response.json()["detail"]
        assert client.get("/health").json()["database"] == "unreachable"


def test_cors_preflight_allows_the_frontend_with_a_bearer_token(client: TestClient) -> None:
    response = client.options(
        "/api/todos",
        headers={
            "Origin": "http://frontend:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "http://frontend:3000"
    assert "authorization" in response.headers["access-control-allow-headers"].lower()


ODD_VALUES: list[Any] = [None, True, 0, -1, 2**63, 1.5, "", " ", "\x00", "é" * 300, [], {}, {"a": [1]}, "x" * 5000]


def test_no_input_makes_a_500(client: TestClient, sign_in: SignIn) -> None:
    token = sign_in()
    task = add(client, token, "target")
    requests: list[tuple[str, str, Any]] = []
    for value in ODD_VALUES:
        for field in ("title", "description", "completed"):
            requests.append(("POST", "/api/todos", {"title": "t", field: value}))
            requests.append(("PATCH", f"/api/todos/{task['id']}", {field: value}))
        requests.append(("POST", "/api/chat", {"message": value}))
        requests.append(("POST", "/api/chat", {"message": "hi", "conversation_id": value}))
        requests.append(("POST", "/api/todos", value))
    for path_id in ("0", "-5", "2147483648", "1e3", "%00", "NaN", "9" * 40):
        for method, suffix in (("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/complete")):
            requests.append((method, f"/api/todos/{path_id}{suffix}", {"title": "x"} if method == "PATCH" else None))
        requests.append(("GET", f"/api/conversations/{path_id}/messages", None))
    for method, path, body in requests:
        response = client.request(method, path, json=body, headers=auth(token))
        assert 400 <= response.status_code < 500 or response.status_code in (200, 201, 204, 502), (method, path, body)
        assert response.status_code != 500
        if response.status_code >= 400:
            assert isinstance(response.json()["detail"], str), (method, path, body, response.text)
