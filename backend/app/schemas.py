"""Request and response bodies of the HTTP API.

Requests forbid unknown fields, so a misspelt field (``titel``) is a clear 422
instead of a silently ignored value, and take booleans and ids only as JSON
booleans and numbers: ``"completed": "yes"`` or ``"conversation_id": "7"`` is a
422 naming the field, not a guess.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator, model_validator

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
    completed: StrictBool | None = None

    # Validators on the fields themselves, so that an error names the field it is about.
    @field_validator("title")
    @classmethod
    def _title_not_null(cls, value: str | None) -> str | None:
        if value is None:
            raise ValueError("cannot be null; a task always has a title")
        return value

    @field_validator("completed")
    @classmethod
    def _completed_not_null(cls, value: bool | None) -> bool | None:
        if value is None:
            raise ValueError("must be true or false")
        return value

    @model_validator(mode="after")
    def _something_to_change(self) -> TodoUpdate:
        if not self.model_fields_set:
            raise ValueError("give at least one of title, description, completed")
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
    conversation_id: StrictInt | None = Field(default=None, ge=1, le=ID_MAX)


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
