"""Persistent data model of the todo service: tasks and the chat history.

Every row carries the ``user_id`` of its owner (Better Auth's ``user.id``); every
query filters on it, which is what keeps users apart. Timestamps are stored
with their time zone so that the server's zone never changes their meaning.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, DateTime, Text
from sqlmodel import Column, Field, SQLModel

TITLE_MAX = 200
DESCRIPTION_MAX = 1000
# Task.id is a PostgreSQL INTEGER: a larger id could never exist, and passing one to the
# database would fail with "integer out of range" instead of a clean "not found".
ID_MAX = 2**31 - 1


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Task(SQLModel, table=True):
    """A user's todo item."""

    __tablename__ = "tasks"

    id: int | None = Field(default=None, primary_key=True)
    user_id: str = Field(index=True, max_length=255)
    title: str = Field(max_length=TITLE_MAX)
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX)
    completed: bool = Field(default=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class Conversation(SQLModel, table=True):
    """One chat thread of a user; its messages are the agent's memory between requests."""

    __tablename__ = "conversations"

    id: int | None = Field(default=None, primary_key=True)
    user_id: str = Field(index=True, max_length=255)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class Message(SQLModel, table=True):
    """One message of a conversation, in the shape the chat completions API replays.

    ``role`` is ``user``, ``assistant`` or ``tool``. An assistant message that asked
    for tools keeps those calls in ``tool_calls``; each tool answer names the call it
    answers in ``tool_call_id``. Storing all three kinds lets a later request hand
    the model the whole exchange, so no state lives in the server process.
    """

    __tablename__ = "messages"

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(foreign_key="conversations.id", index=True, ondelete="CASCADE")
    user_id: str = Field(index=True, max_length=255)
    role: str = Field(max_length=16)
    content: str = Field(default="", sa_column=Column(Text, nullable=False))
    tool_calls: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON))
    tool_call_id: str | None = Field(default=None, max_length=255)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class ChatTurnStart(SQLModel, table=True):
    """When a user started a chat turn: the rate limit counts these (CHAT_TURNS_PER_MINUTE).

    Rows older than the window are deleted as new turns start, so the table stays small.
    """

    __tablename__ = "chat_turn_starts"

    id: int | None = Field(default=None, primary_key=True)
    user_id: str = Field(index=True, max_length=255)
    started_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True), index=True)
