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

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
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

# The header that says where the next page starts; absent on the last page.
NEXT_OFFSET = "X-Next-Offset"
NEXT_BEFORE = "X-Next-Before"


def page_size(
    request: Request,
    limit: Annotated[int | None, Query(ge=1, description="items per page (LIST_PAGE_SIZE by default)")] = None,
) -> int:
    """The page size asked for, LIST_PAGE_SIZE when none, never above LIST_PAGE_SIZE_MAX."""
    settings = request.app.state.settings
    if limit is None:
        return int(settings.list_page_size)
    if limit > settings.list_page_size_max:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"limit: must be at most {settings.list_page_size_max} (LIST_PAGE_SIZE_MAX)",
        )
    return limit


Limit = Annotated[int, Depends(page_size)]
Offset = Annotated[int, Query(ge=0, le=ID_MAX, description="items to skip")]


def one_page(rows: list, limit: int, offset: int, response: Response) -> list:  # type: ignore[type-arg]
    """The first ``limit`` of ``rows`` (fetched as ``limit + 1``); sets the next page's offset."""
    if len(rows) > limit:
        response.headers[NEXT_OFFSET] = str(offset + limit)
    return rows[:limit]


@router.get("/todos", response_model=list[TodoOut], tags=["todos"])
def list_todos(
    user: User,
    db: Db,
    response: Response,
    limit: Limit,
    offset: Offset = 0,
    status: Literal["all", "pending", "completed"] = "all",
) -> list[TodoOut]:
    """One page of the caller's todos, oldest first; ``status`` keeps only pending or completed
    ones. ``X-Next-Offset`` names the next page's offset when there is one."""
    rows = todos.list_tasks(db, user.id, status, limit=limit + 1, offset=offset)
    return [TodoOut.of(t) for t in one_page(rows, limit, offset, response)]


@router.post("/todos", response_model=TodoOut, status_code=status.HTTP_201_CREATED, tags=["todos"])
def create_todo(body: TodoCreate, request: Request, user: User, db: Db) -> TodoOut:
    most = request.app.state.settings.todos_per_user_max
    return TodoOut.of(todos.create_task(db, user.id, body.title, body.description, max_per_user=most))


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
def list_conversations(user: User, db: Db, response: Response, limit: Limit, offset: Offset = 0) -> list[ConversationOut]:
    """One page of the caller's conversations, most recently active first."""
    rows = list(
        db.exec(
            select(Conversation)
            .where(Conversation.user_id == user.id)
            .order_by(col(Conversation.updated_at).desc(), col(Conversation.id).desc())
            .offset(offset)
            .limit(limit + 1)
        )
    )
    return [
        ConversationOut(id=c.id, created_at=c.created_at, updated_at=c.updated_at)  # type: ignore[arg-type]
        for c in one_page(rows, limit, offset, response)
    ]


@router.get("/conversations/{conversation_id}/messages", response_model=list[MessageOut], tags=["chat"])
def conversation_messages(
    conversation_id: int,
    user: User,
    db: Db,
    response: Response,
    limit: Limit,
    before: Annotated[int | None, Query(ge=1, description="only messages with a smaller id")] = None,
) -> list[MessageOut]:
    """What the user and the assistant said, in order (the tool traffic stays internal): the
    latest ``limit`` messages, or those before the message id ``before``. ``X-Next-Before``
    names the id to ask before for the page of older ones, when there are any."""
    conversation = db.get(Conversation, conversation_id) if 1 <= conversation_id <= ID_MAX else None
    if conversation is None or conversation.user_id != user.id:
        raise ConversationNotFound(f"conversation {conversation_id} not found")
    query = (
        select(Message)
        .where(Message.conversation_id == conversation_id)
        .where(col(Message.role).in_(("user", "assistant")))
        .where(Message.content != "")
    )
    if before is not None:
        query = query.where(col(Message.id) < min(before, ID_MAX))
    rows = list(db.exec(query.order_by(col(Message.id).desc()).limit(limit + 1)))
    if len(rows) > limit:
        rows = rows[:limit]
        response.headers[NEXT_BEFORE] = str(rows[-1].id)
    return [MessageOut(id=m.id, role=m.role, content=m.content, created_at=m.created_at) for m in reversed(rows)]  # type: ignore[arg-type]
