"""Request and response bodies of the HTTP API.

Requests forbid unknown fields, so a misspelt field (``titel``) is a clear 422
instead of a silently ignored value.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.models import DESCRIPTION_MAX, ID_MAX, TITLE_MAX, Task

CHAT_MESSAGE_MAX = 4000


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TodoCreate(Strict):
    title: str = Field(min_length=1, max_length=TITLE_MAX)
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX)


class TodoUpdate(Strict):
    """Only the fields present change; ``"description": null`` clears the description."""

    title: str | None = Field(default=None, min_length=1, max_length=TITLE_MAX)
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX)
    completed: bool | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> TodoUpdate:
        if not self.model_fields_set:
            raise ValueError("give at least one of title, description, completed")
        if "title" in self.model_fields_set and self.title is None:
            raise ValueError("title cannot be null; a task always has a title")
        if "completed" in self.model_fields_set and self.completed is None:
            raise ValueError("completed must be true or false")
        return self


class TodoOut(BaseModel):
    id: int
    title: str
    description: str | None
    completed: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, task: Task) -> TodoOut:
        assert task.id is not None
        return cls(
            id=task.id,
            title=task.title,
            description=task.description,
            completed=task.completed,
            created_at=task.created_at,
            updated_at=task.updated_at,
        )


class ChatRequest(Strict):
    message: str = Field(min_length=1, max_length=CHAT_MESSAGE_MAX)
    # Omitted or null: start a new conversation.
    conversation_id: int | None = Field(default=None, ge=1, le=ID_MAX)


class ToolActionOut(BaseModel):
    tool: str
    arguments: dict[str, Any]
    ok: bool
    result: Any


class ChatResponse(BaseModel):
    conversation_id: int
    reply: str
    actions: list[ToolActionOut]


class ConversationOut(BaseModel):
    id: int
    created_at: datetime
    updated_at: datetime


class MessageOut(BaseModel):
    id: int
    role: str
    content: str
    created_at: datetime
