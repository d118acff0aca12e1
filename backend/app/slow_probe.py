"""A deliberately slow endpoint for the graceful-stop check of ``cargo xtask smoke``.

The check starts ``GET /ops/slow?ms=2000``, stops the container while that request is in flight,
and requires the answer to arrive: uvicorn, on SIGTERM, stops accepting connections and lets
running requests finish before it exits. The endpoint only sleeps (no thread, no database), so it
costs nothing but an open connection, and the wait is capped at a few seconds.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Query

MAX_MS = 5000

router = APIRouter()


@router.get("/ops/slow", include_in_schema=False, tags=["ops"])
async def slow(ms: int = Query(1000, ge=0, le=MAX_MS)) -> dict[str, int]:
    """Answers after ``ms`` milliseconds."""
    await asyncio.sleep(ms / 1000)
    return {"slept_ms": ms}
