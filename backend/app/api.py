"""The authenticated HTTP API: todos, chat and conversation history, under ``/api``.

Every route takes the caller from the bearer token (``app.auth``) and passes that
user's id to the todo operations and the agent, which only ever touch that
user's rows. The route functions are plain ``def`` where they only use the
database, so FastAPI runs them in its thread pool and the event loop never
waits on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool

from agents.chat import ConversationNotFound
from app import todos
from app.auth import CurrentUser, authenticate
from app.models import ID_MAX, Conversation, Message
from app.schemas import (
    ChatRequest,
    ChatResponse,
    ConversationOut,
    MessageOut,
    TodoCreate,
    TodoOut,
    TodoUpdate,
    ToolActionOut,
)

router = APIRouter(prefix="/api")


def current_user(request: Request) -> CurrentUser:
    state = request.app.state
    return authenticate(request, state.engine, state.settings.better_auth_secret.get_secret_value())


def db_session(request: Request) -> Iterator[Session]:
    request.app.state.schema.ensure()
    with Session(request.app.state.engine) as session:
        yield session


User = Annotated[CurrentUser, Depends(current_user)]
Db = Annotated[Session, Depends(db_session)]


@router.get("/todos", response_model=list[TodoOut], tags=["todos"])
def list_todos(
    user: User, db: Db, status: Literal["all", "pending", "completed"] = "all"
) -> list[TodoOut]:
    """The caller's todos, oldest first; ``status`` keeps only pending or completed ones."""
    return [TodoOut.of(t) for t in todos.list_tasks(db, user.id, status)]


@router.post("/todos", response_model=TodoOut, status_code=status.HTTP_201_CREATED, tags=["todos"])
def create_todo(body: TodoCreate, user: User, db: Db) -> TodoOut:
    return TodoOut.of(todos.create_task(db, user.id, body.title, body.description))


@router.get("/todos/{task_id}", response_model=TodoOut, tags=["todos"])
def get_todo(task_id: int, user: User, db: Db) -> TodoOut:
    return TodoOut.of(todos.get_task(db, user.id, task_id))


@router.patch("/todos/{task_id}", response_model=TodoOut, tags=["todos"])
def update_todo(task_id: int, body: TodoUpdate, user: User, db: Db) -> TodoOut:
    clear = "description" in body.model_fields_set and body.description is None
    task = todos.update_task(
        db,
        user.id,
        task_id,
        title=body.title,
        description=body.description,
        completed=body.completed,
        clear_description=clear,
    )
    return TodoOut.of(task)


@router.post("/todos/{task_id}/complete", response_model=TodoOut, tags=["todos"])
def complete_todo(task_id: int, user: User, db: Db) -> TodoOut:
    return TodoOut.of(todos.complete_task(db, user.id, task_id))


@router.delete("/todos/{task_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["todos"])
def delete_todo(task_id: int, user: User, db: Db) -> Response:
    todos.delete_task(db, user.id, task_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/chat", response_model=ChatResponse, tags=["chat"])
async def chat(body: ChatRequest, request: Request, user: User) -> ChatResponse:
    """One turn with the todo agent; without ``conversation_id`` a new conversation starts."""
    if not body.message.strip():
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail="message must not be blank")
    if "\x00" in body.message:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail="message must not contain NUL characters")
    schema = request.app.state.schema
    if not schema.ready:
        await run_in_threadpool(schema.ensure)
    turn = await request.app.state.agent.chat(user.id, body.message, body.conversation_id)
    return ChatResponse(
        conversation_id=turn.conversation_id,
        reply=turn.reply,
        actions=[ToolActionOut(**vars(a)) for a in turn.actions],
    )


@router.get("/conversations", response_model=list[ConversationOut], tags=["chat"])
def list_conversations(user: User, db: Db) -> list[ConversationOut]:
    """The caller's conversations, most recently active first."""
    rows = db.exec(
        select(Conversation)
        .where(Conversation.user_id == user.id)
        .order_by(col(Conversation.updated_at).desc(), col(Conversation.id).desc())
    )
    return [ConversationOut(id=c.id, created_at=c.created_at, updated_at=c.updated_at) for c in rows]  # type: ignore[arg-type]


@router.get("/conversations/{conversation_id}/messages", response_model=list[MessageOut], tags=["chat"])
def conversation_messages(conversation_id: int, user: User, db: Db) -> list[MessageOut]:
    """What the user and the assistant said, in order (the tool traffic stays internal)."""
    conversation = db.get(Conversation, conversation_id) if 1 <= conversation_id <= ID_MAX else None
    if conversation is None or conversation.user_id != user.id:
        raise ConversationNotFound(f"conversation {conversation_id} not found")
    rows = db.exec(
        select(Message)
        .where(Message.conversation_id == conversation_id)
        .where(col(Message.role).in_(("user", "assistant")))
        .where(Message.content != "")
        .order_by(col(Message.id))
    )
    return [MessageOut(id=m.id, role=m.role, content=m.content, created_at=m.created_at) for m in rows]  # type: ignore[arg-type]
