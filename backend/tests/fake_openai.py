"""A scripted OpenAI-compatible model server on a loopback port, for the chat tests.

It answers ``POST /v1/chat/completions`` with whatever the test's ``brain``
returns for the request, and records every request, so a test can check what
the backend sent (the tools, the replayed history) as well as what it did.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Brain = Callable[[dict[str, Any]], "Reply"]


class Reply:
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status, self.body = status, body


def _completion(message: dict[str, Any], finish: str) -> Reply:
    return Reply(
        200,
        {
            "id": f"chatcmpl-{time.monotonic_ns()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": "fake-model",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        },
    )


def text(content: str) -> Reply:
    return _completion({"role": "assistant", "content": content}, "stop")


def tool_calls(*calls: tuple[str, dict[str, Any] | str]) -> Reply:
    return _completion(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": f"call_{i}_{time.monotonic_ns()}",
                    "type": "function",
                    "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)},
                }
                for i, (name, args) in enumerate(calls)
            ],
        },
        "tool_calls",
    )


def error(status: int, message: str) -> Reply:
    return Reply(status, {"error": {"message": message, "type": "invalid_request_error", "code": None}})


def last_user_text(request: dict[str, Any]) -> str:
    return next(m["content"] for m in reversed(request["messages"]) if m["role"] == "user")


def todo_brain(request: dict[str, Any]) -> Reply:
    """A deterministic stand-in for a model: "add X" adds a task named X, "list" lists;
    after a tool result it says in words what happened."""
    last = request["messages"][-1]
    if last["role"] == "tool":
        result = json.loads(last["content"])
        if isinstance(result, dict) and "error" in result:
            return text(f"That did not work: {result['error']}")
        if isinstance(result, dict) and "tasks" in result:
            tasks = result["tasks"]
            return text("Your tasks: " + ", ".join(t["title"] for t in tasks) if tasks else "You have no tasks.")
        return text(f"Added \"{result['title']}\" to your list.")
    said = last_user_text(request).strip()
    if said.lower().startswith("add "):
        return tool_calls(("add_task", {"title": said[4:].strip()}))
    if said.lower().startswith("list"):
        return tool_calls(("list_tasks", {}))
    return text("I can add or list your tasks.")


class FakeModel:
    def __init__(self, brain: Brain = todo_brain) -> None:
        self.brain = brain
        self.requests: list[dict[str, Any]] = []
        self.authorizations: list[str | None] = []
        model = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                model.requests.append(body)
                model.authorizations.append(self.headers.get("authorization"))
                reply = model.brain(body) if self.path == "/v1/chat/completions" else error(404, "no such path")
                data = json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # A short poll interval: shutdown() waits for it, once per test.
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> FakeModel:
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
