"""Virtual users of the Todo Chatbot for the load test (``node tests/e2e/load/run.mjs``).

Each user signs up once, then, with a pause of 0.5 to 2 s between steps, lists its todos,
creates and completes them, chats with the deterministic fake model ("add X", "list my
tasks") and now and then signs in again. Everything goes through the frontend, as a browser
would: Better Auth's endpoints and ``/api/backend/...``, with the session cookie.

The users stand behind a proxy: each sends an ``X-Forwarded-For`` address of its own, which the
frontend believes because the run names the network's gateway in TRUSTED_PROXIES. So the
sign-in limit (3 tries per 10 s per client) applies per user, as it would to real people.

Every answer is classified by status; the run's bound on requests is LOAD_MAX_REQUESTS.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import uuid
from collections import Counter
from typing import Any

from locust import HttpUser, between, events, task

MAX_REQUESTS = int(os.environ.get("LOAD_MAX_REQUESTS", "5000"))
STATUS_FILE = os.environ.get("LOAD_STATUS_FILE", "load-statuses.json")
PASSWORD = "correct horse battery staple"

statuses: Counter[str] = Counter()
addresses = itertools.count(1)


@events.request.add_listener
def count(request_type: str, name: str, response: Any, exception: Any, **_: Any) -> None:
    code = getattr(response, "status_code", 0) or 0
    statuses[f"{code // 100}xx" if code else "no answer"] += 1
    if code >= 500 or not code:
        statuses[f"{request_type} {name} -> {code or exception}"] += 1
    total = sum(v for k, v in statuses.items() if k.endswith("xx") or k == "no answer")
    if total >= MAX_REQUESTS and count.environment is not None and count.environment.runner is not None:
        count.environment.runner.quit()


count.environment = None  # type: ignore[attr-defined]


@events.init.add_listener
def remember(environment: Any, **_: Any) -> None:
    count.environment = environment  # type: ignore[attr-defined]


@events.quitting.add_listener
def save(**_: Any) -> None:
    with open(STATUS_FILE, "w") as file:
        json.dump(dict(statuses), file, indent=1, sort_keys=True)


class TodoUser(HttpUser):
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        n = next(addresses)
        self.address = f"198.51.{n // 250}.{n % 250 + 1}"
        self.email = f"load-{uuid.uuid4().hex[:12]}@example.test"
        self.todos: list[int] = []
        self.conversation: int | None = None
        self.client.headers.update({"X-Forwarded-For": self.address, "Origin": self.host})
        self.client.post(
            "/api/auth/sign-up/email",
            json={"name": "Load User", "email": self.email, "password": PASSWORD},
            name="POST /api/auth/sign-up/email",
        )

    @task(1)
    def sign_in(self) -> None:
        self.client.post(
            "/api/auth/sign-in/email",
            json={"email": self.email, "password": PASSWORD},
            name="POST /api/auth/sign-in/email",
        )

    @task(4)
    def list_todos(self) -> None:
        status = random.choice(["all", "pending", "completed"])
        self.client.get(f"/api/backend/todos?status={status}", name="GET /api/backend/todos")

    @task(3)
    def create(self) -> None:
        with self.client.post(
            "/api/backend/todos",
            json={"title": f"errand {uuid.uuid4().hex[:8]}"},
            name="POST /api/backend/todos",
            catch_response=True,
        ) as response:
            if response.status_code == 201:
                self.todos.append(response.json()["id"])

    @task(2)
    def complete(self) -> None:
        if not self.todos:
            return
        todo = self.todos.pop(random.randrange(len(self.todos)))
        self.client.patch(
            f"/api/backend/todos/{todo}", json={"completed": True}, name="PATCH /api/backend/todos/[id]"
        )

    @task(1)
    def chat(self) -> None:
        message = random.choice([f"add groceries {uuid.uuid4().hex[:6]}", "list my tasks"])
        with self.client.post(
            "/api/backend/chat",
            json={"message": message, "conversation_id": self.conversation},
            name="POST /api/backend/chat",
            catch_response=True,
        ) as response:
            if response.status_code == 200:
                self.conversation = response.json()["conversation_id"]
