"""The todo operations, shared by the REST API and the MCP tools.

Each function takes the owner's ``user_id`` and touches only that user's rows: a
task of another user reads exactly like a task that does not exist, so an id
reveals nothing. Input is checked here once, for both callers, and every
problem raises :class:`InvalidTodo` or :class:`TodoNotFound` with a message
meant for the person (or the model) that sent it.
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy import func, text
from sqlmodel import Session, select

from app.models import DESCRIPTION_MAX, ID_MAX, TITLE_MAX, Task, utcnow

StatusFilter = Literal["all", "pending", "completed"]
STATUSES: tuple[str, ...] = ("all", "pending", "completed")


class TodoError(Exception):
    """A todo operation refused its input; ``str(error)`` says why."""


class InvalidTodo(TodoError, ValueError):
    pass


class TodoNotFound(TodoError, LookupError):
    pass


class TooManyTodos(TodoError):
    """The user already keeps the most todos allowed (TODOS_PER_USER_MAX)."""


def has_lone_surrogate(value: str) -> bool:
    # A JSON string may escape half of a UTF-16 pair ("\ud800"); Python keeps it as a lone
    # surrogate, which no UTF-8 text (PostgreSQL's, the response's) can hold.
    return any("\ud800" <= ch <= "\udfff" for ch in value)


def _no_nul(name: str, value: str) -> None:
    # PostgreSQL text cannot hold NUL: refuse it here rather than fail in the driver.
    if "\x00" in value:
        raise InvalidTodo(f"{name} must not contain NUL characters")
    if has_lone_surrogate(value):
        raise InvalidTodo(f"{name} must be valid Unicode text (it holds half of a UTF-16 surrogate pair)")


def clean_title(title: str) -> str:
    title = title.strip()
    if not title:
        raise InvalidTodo("title must not be empty")
    if len(title) > TITLE_MAX:
        raise InvalidTodo(f"title must be at most {TITLE_MAX} characters (got {len(title)})")
    _no_nul("title", title)
    return title


def clean_description(description: str | None) -> str | None:
    if description is None:
        return None
    description = description.strip()
    if len(description) > DESCRIPTION_MAX:
        raise InvalidTodo(
            f"description must be at most {DESCRIPTION_MAX} characters (got {len(description)})"
        )
    _no_nul("description", description)
    return description or None


def check_status(status: str) -> StatusFilter:
    if status not in STATUSES:
        raise InvalidTodo(f"status must be one of {', '.join(STATUSES)} (got {status!r})")
    return status  # type: ignore[return-value]


def lock_user(session: Session, user_id: str, purpose: str) -> None:
    """Serialises one user's requests of one kind until the transaction ends, so that a count
    followed by an insert cannot be raced past a limit. PostgreSQL only; the tests' SQLite
    runs one connection anyway."""
    if session.get_bind().dialect.name == "postgresql":
        session.exec(text("select pg_advisory_xact_lock(hashtext(:key))").bindparams(key=f"{purpose}:{user_id}"))  # type: ignore[call-overload]


def create_task(
    session: Session,
    user_id: str,
    title: str,
    description: str | None = None,
    *,
    max_per_user: int | None = None,
) -> Task:
    task = Task(user_id=user_id, title=clean_title(title), description=clean_description(description))
    if max_per_user is not None:
        lock_user(session, user_id, "todos")
        count = session.exec(select(func.count()).select_from(Task).where(Task.user_id == user_id)).one()
        if count >= max_per_user:
            session.rollback()
            raise TooManyTodos(
                f"you already have {count} todos, the most one user may keep ({max_per_user}, "
                "TODOS_PER_USER_MAX); delete or finish some first"
            )
    session.add(task)
    session.commit()
    session.refresh(task)
    return task


def list_tasks(
    session: Session, user_id: str, status: str = "all", *, limit: int | None = None, offset: int = 0
) -> list[Task]:
    """The user's tasks, oldest first; ``limit`` and ``offset`` select one page."""
    query = select(Task).where(Task.user_id == user_id)
    status = check_status(status)
    if status != "all":
        query = query.where(Task.completed == (status == "completed"))
    query = query.order_by(Task.id).offset(max(offset, 0))
    if limit is not None:
        query = query.limit(limit)
    return list(session.exec(query))


def count_tasks(session: Session, user_id: str, status: str = "all") -> int:
    query = select(func.count()).select_from(Task).where(Task.user_id == user_id)
    status = check_status(status)
    if status != "all":
        query = query.where(Task.completed == (status == "completed"))
    return session.exec(query).one()


def get_task(session: Session, user_id: str, task_id: int) -> Task:
    task = session.get(Task, task_id) if 1 <= task_id <= ID_MAX else None
    if task is None or task.user_id != user_id:
        raise TodoNotFound(f"task {task_id} not found")
    return task


def update_task(
    session: Session,
    user_id: str,
    task_id: int,
    *,
    title: str | None = None,
    description: str | None = None,
    completed: bool | None = None,
    clear_description: bool = False,
) -> Task:
    """Changes the given fields; ``None`` leaves a field as it is."""
    task = get_task(session, user_id, task_id)
    if title is not None:
        task.title = clean_title(title)
    if clear_description:
        task.description = None
    elif description is not None:
        task.description = clean_description(description)
    if completed is not None:
        task.completed = completed
    task.updated_at = utcnow()
    session.add(task)
    session.commit()
    session.refresh(task)
    return task


def complete_task(session: Session, user_id: str, task_id: int) -> Task:
    return update_task(session, user_id, task_id, completed=True)


def delete_task(session: Session, user_id: str, task_id: int) -> Task:
    """Deletes the task and returns what it was."""
    task = get_task(session, user_id, task_id)
    gone = Task.model_validate(task.model_dump())
    session.delete(task)
    session.commit()
    return gone
