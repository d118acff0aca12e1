from __future__ import annotations

import time

from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.slow_probe import MAX_MS, router


def _client() -> TestClient:
    app = FastAPI()
    app.include_router(router)
    return TestClient(app)


def test_slow_answers_after_the_wait() -> None:
    start = time.monotonic()
    response = _client().get("/ops/slow", params={"ms": 200})
    assert response.status_code == 200
    assert response.json() == {"slept_ms": 200}
    assert time.monotonic() - start >= 0.2


def test_slow_refuses_long_waits() -> None:
    response = _client().get("/ops/slow", params={"ms": MAX_MS + 1})
    assert response.status_code == 422
