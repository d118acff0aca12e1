"""A tiny OpenAI-compatible model server for the end-to-end test: deterministic tool calls.

Answers POST /v1/chat/completions like a chat model that can only do two things:
"add X" becomes a call of the add_task tool with title X, and "list ..." a call
of list_tasks; once the tool's result comes back, it says in words what
happened. GET /health answers 200 so the test can wait for it. Standard
library only, so it runs on the backend image's Python (no shell, no pip).

Usage: python fake_model.py [PORT]   (default 8080)
"""

from __future__ import annotations

import json
import re
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ADD = re.compile(r"^\s*(?:please\s+)?add\s+(.+?)\s*[.!]?\s*$", re.IGNORECASE)
LIST = re.compile(r"\b(list|show|what)\b", re.IGNORECASE)


def completion(message: dict[str, Any], finish: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-fake-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "fake-model",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


def say(text: str) -> dict[str, Any]:
    return completion({"role": "assistant", "content": text}, "stop")


def call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    tool_call = {
        "id": f"call_{time.monotonic_ns()}",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }
    return completion({"role": "assistant", "content": None, "tool_calls": [tool_call]}, "tool_calls")


def answer(request: dict[str, Any]) -> dict[str, Any]:
    messages = request.get("messages") or []
    tools = {t["function"]["name"] for t in request.get("tools") or []}
    last = messages[-1] if messages else {"role": "user", "content": ""}
    if last["role"] == "tool":
        result = json.loads(last["content"])
        if isinstance(result, dict) and "error" in result:
            return say(f"That did not work: {result['error']}")
        if isinstance(result, dict) and "tasks" in result:
            # list_tasks answers one page: {"tasks": [...], "total": N, "next_offset": ...}.
            titles = [t["title"] for t in result["tasks"]]
            return say("Your tasks: " + ", ".join(titles) if titles else "You have no tasks.")
        return say(f'Added "{result["title"]}" to your list.')
    text = str(last.get("content") or "")
    if (match := ADD.match(text)) and "add_task" in tools:
        return call("add_task", {"title": match.group(1)})
    if LIST.search(text) and "list_tasks" in tools:
        return call("list_tasks", {})
    return say("I can add tasks (\"add buy milk\") and list them (\"list my tasks\").")


class Handler(BaseHTTPRequestHandler):
    def reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.reply(200, {"status": "ok"}) if self.path == "/health" else self.reply(404, {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802
        if self.path != "/v1/chat/completions":
            self.reply(404, {"error": {"message": f"no route {self.path}"}})
            return
        # The backend must send its OPENAI_API_KEY, as it would to OpenAI.
        if not (self.headers.get("authorization") or "").startswith("Bearer sk-"):
            self.reply(401, {"error": {"message": "missing API key", "type": "invalid_request_error"}})
            return
        request = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
        response = answer(request)
        message = response["choices"][0]["message"]
        said = message.get("content") or json.dumps([c["function"] for c in message.get("tool_calls", [])])
        print(f"fake-model: {request['messages'][-1]['role']} -> {said}", flush=True)
        self.reply(200, response)

    def log_message(self, *_: Any) -> None:
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    print(f"fake-model: listening on port {port}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()
