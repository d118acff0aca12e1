"""The chat agent: an OpenAI-compatible model that manages todos through the MCP tools.

One request is one turn. The agent loads the conversation from the database,
appends the user's message, and lets the model answer; each tool call the model
makes is sent to the todo MCP server through an MCP client session, and the
result goes back to the model until it answers in plain language. Every message
of the turn (the user's, the model's tool requests, the tool results, the reply)
is stored in one transaction at the end, so the next request, on any server
process, continues from the database alone, and a turn is stored whole or not
at all.

Every kind of work a turn can cause is bounded (:class:`ChatLimits`, from the
settings): turns per user per minute, model rounds, tool calls per model
response and per turn, the bytes of one tool result sent back to the model, and
the bytes of history replayed. A model that is confused or prompt-injected can
make a turn end early; it cannot make it enormous.

The model never sees or chooses whose todos it touches: the tools' ``user_id``
argument is removed from the schemas the model is shown and filled in from the
authenticated request on every call.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import anyio.to_thread
import openai
from mcp import Client
from mcp.server.mcpserver import MCPServer
from openai import AsyncOpenAI
from sqlalchemy.engine import Engine
from sqlalchemy import delete, func
from sqlmodel import Session, col, select

from agents.config import AgentConfig
from app.models import ID_MAX, ChatTurnStart, Conversation, Message, utcnow
from app.todos import lock_user

USER_ARGUMENT = "user_id"
# Rows read per query while walking a conversation's history backwards.
HISTORY_BATCH = 100
RATE_WINDOW = timedelta(minutes=1)
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class ChatLimits:
    """The bounds on one turn; the defaults are the settings' defaults (app/config.py)."""

    # Model rounds: enough for "list, then complete two tasks"; a model that keeps calling
    # tools past this is looping, and the turn ends with a message saying so.
    max_tool_rounds: int = 6
    max_tool_calls_per_response: int = 8
    max_tool_calls_per_turn: int = 16
    tool_result_max_bytes: int = 8 * 1024
    history_max_bytes: int = 32 * 1024
    turns_per_minute: int = 20


class ChatError(Exception):
    """The model server failed; the message says how, without any secret."""


class ConversationNotFound(LookupError):
    pass


class TooManyTurns(Exception):
    """The user started ``turns_per_minute`` turns in the last minute already."""

    def __init__(self, limit: int, retry_after: int) -> None:
        super().__init__(
            f"at most {limit} chat turns per minute (CHAT_TURNS_PER_MINUTE); "
            f"try again in {retry_after} s"
        )
        self.retry_after = retry_after


def clean_text(value: str) -> str:
    """``value`` without lone UTF-16 surrogates, which a model's JSON may carry ("\\ud800")
    and which no UTF-8 text can hold: each becomes U+FFFD, the replacement character."""
    return LONE_SURROGATE.sub("\ufffd", value)


def clean(value: Any) -> Any:
    """``clean_text`` applied to every string inside a JSON-like value."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, list):
        return [clean(v) for v in value]
    if isinstance(value, dict):
        return {clean(k): clean(v) for k, v in value.items()}
    return value


def truncate_utf8(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` of UTF-8, with a note for the model saying so."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    note = (
        f"\n[truncated: this result is {len(data)} bytes, only the first {{kept}} are shown; "
        "ask for less, e.g. list_tasks with a status or an offset]"
    )
    room = max(max_bytes - len(note.format(kept=max_bytes).encode()), 0)
    kept = data[:room].decode("utf-8", errors="ignore")
    return kept + note.format(kept=len(kept.encode()))


def message_bytes(message: Message) -> int:
    """What replaying a stored message costs, in bytes of its text and tool calls."""
    size = len(message.content.encode("utf-8", errors="replace"))
    if message.tool_calls:
        size += len(json.dumps(message.tool_calls))
    return size


@dataclass
class ToolAction:
    tool: str
    arguments: dict[str, Any]
    ok: bool
    result: Any


@dataclass
class ChatTurn:
    conversation_id: int
    reply: str
    actions: list[ToolAction] = field(default_factory=list)


def to_openai(message: Message) -> dict[str, Any]:
    """A stored message in the chat completions API's shape."""
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if message.role == "assistant" and message.tool_calls:
        return {"role": "assistant", "content": message.content or None, "tool_calls": message.tool_calls}
    return {"role": message.role, "content": message.content}


def within_bytes(newest_first: list[Message], max_bytes: int) -> list[Message]:
    """The most recent messages whose replay fits in ``max_bytes``, oldest first."""
    kept: list[Message] = []
    total = 0
    for message in newest_first:
        total += message_bytes(message)
        if total > max_bytes:
            break
        kept.append(message)
    return kept[::-1]


def trim_history(messages: list[Message], limit: int | None = None) -> list[Message]:
    """The (last ``limit``) messages that the model accepts as a history.

    The chat completions API rejects a tool result without the assistant message that
    asked for it, and an assistant's tool request without an answer for every call. So
    the history starts at a user message, and a tool request left unanswered (a turn
    that failed halfway) is dropped together with the answers it did get.
    """
    recent = messages if limit is None else (messages[-limit:] if limit > 0 else [])
    while recent and recent[0].role != "user":
        recent = recent[1:]
    kept: list[Message] = []
    i = 0
    while i < len(recent):
        message = recent[i]
        if message.role == "assistant" and message.tool_calls:
            j = i + 1
            while j < len(recent) and recent[j].role == "tool":
                j += 1
            asked = {call.get("id") for call in message.tool_calls}
            answered = {m.tool_call_id for m in recent[i + 1 : j]}
            if asked <= answered:
                kept.extend(recent[i:j])
            i = j
            continue
        if message.role != "tool":
            kept.append(message)
        i += 1
    return kept


def model_tools(tools: list[Any]) -> list[dict[str, Any]]:
    """The MCP tools as chat completions function specs, without the ``user_id`` argument."""
    specs = []
    for tool in tools:
        schema = json.loads(json.dumps(tool.input_schema))
        schema.get("properties", {}).pop(USER_ARGUMENT, None)
        if USER_ARGUMENT in schema.get("required", []):
            schema["required"] = [name for name in schema["required"] if name != USER_ARGUMENT]
        schema.pop("title", None)
        specs.append(
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    "description": tool.description or tool.name,
                    "parameters": schema,
                },
            }
        )
    return specs


def tool_payload(result: Any) -> Any:
    """What an MCP tool result says, as plain data."""
    structured = getattr(result, "structured_content", None)
    if structured is not None:
        return structured.get("result", structured) if isinstance(structured, dict) else structured
    texts = [getattr(part, "text", "") for part in getattr(result, "content", [])]
    return "\n".join(t for t in texts if t)


def describe_model_error(error: openai.OpenAIError) -> str:
    # Status errors carry the server's body, which for a wrong key quotes part of the key:
    # report the status and what to check, never the body.
    if isinstance(error, openai.APIStatusError):
        hint = {
            401: "check OPENAI_API_KEY",
            403: "check OPENAI_API_KEY and the account's access to AGENT_MODEL",
            404: "check AGENT_MODEL and OPENAI_BASE_URL",
            429: "rate limit or quota reached; try again later",
        }.get(error.status_code, "try again later")
        return f"the model server answered HTTP {error.status_code} ({hint})"
    if isinstance(error, openai.APITimeoutError):
        return "the model server did not answer in time; try again later"
    if isinstance(error, openai.APIConnectionError):
        return "the model server cannot be reached; check OPENAI_BASE_URL and the network"
    return f"the model server's answer could not be used ({type(error).__name__})"


class TodoAgent:
    def __init__(
        self,
        config: AgentConfig,
        client: AsyncOpenAI,
        server: MCPServer,
        engine: Engine,
        *,
        limits: ChatLimits | None = None,
    ) -> None:
        self.config = config
        self.client = client
        self.server = server
        self.engine = engine
        self.limits = limits or ChatLimits()

    # ---- the database side (synchronous, run in a worker thread) ----

    def _start_turn(self, user_id: str, conversation_id: int | None) -> list[dict[str, Any]]:
        """Counts the turn against the user's rate and returns the history to replay. Nothing
        of the conversation is written here: the turn is stored whole by :meth:`_save`."""
        with Session(self.engine) as session:
            self._count_turn(session, user_id)
            if conversation_id is None:
                session.commit()
                return []
            conversation = session.get(Conversation, conversation_id) if 1 <= conversation_id <= ID_MAX else None
            if conversation is None or conversation.user_id != user_id:
                # The refused turn is not counted.
                session.rollback()
                raise ConversationNotFound(f"conversation {conversation_id} not found")
            history = self._history(session, conversation_id)
            session.commit()
            return history

    def _count_turn(self, session: Session, user_id: str) -> None:
        """Records a turn start, or raises TooManyTurns. In the database, so that the limit
        holds across server processes; a per-user lock keeps concurrent turns from racing it."""
        lock_user(session, user_id, "chat-turns")
        since = utcnow() - RATE_WINDOW
        session.exec(delete(ChatTurnStart).where(col(ChatTurnStart.started_at) < since))  # type: ignore[call-overload]
        count, oldest = session.exec(
            select(func.count(), func.min(ChatTurnStart.started_at))
            .where(ChatTurnStart.user_id == user_id)
            .where(col(ChatTurnStart.started_at) >= since)
        ).one()
        limit = self.limits.turns_per_minute
        if count >= limit:
            session.rollback()
            wait = (oldest + RATE_WINDOW - utcnow()).total_seconds() if oldest else 1
            raise TooManyTurns(limit, max(1, math.ceil(wait)))
        session.add(ChatTurnStart(user_id=user_id))
        session.flush()

    def _history(self, session: Session, conversation_id: int) -> list[dict[str, Any]]:
        """The conversation's latest messages that fit in ``history_max_bytes``, read newest
        first in batches, so a long conversation costs a few small queries."""
        budget = self.limits.history_max_bytes
        newest_first: list[Message] = []
        used = 0
        before: int | None = None
        while used <= budget:
            query = select(Message).where(Message.conversation_id == conversation_id)
            if before is not None:
                query = query.where(col(Message.id) < before)
            batch = list(session.exec(query.order_by(col(Message.id).desc()).limit(HISTORY_BATCH)))
            for message in batch:
                used += message_bytes(message)
                newest_first.append(message)
                if used > budget:
                    break
            if len(batch) < HISTORY_BATCH:
                break
            before = batch[-1].id
        return [to_openai(m) for m in trim_history(within_bytes(newest_first, budget))]

    def _save(
        self, user_id: str, conversation_id: int | None, text: str, messages: list[dict[str, Any]]
    ) -> int:
        """Stores the user's message and every message of the turn in one transaction, in a new
        conversation when ``conversation_id`` is None; returns the conversation's id."""
        with Session(self.engine) as session:
            if conversation_id is None:
                conversation = Conversation(user_id=user_id)
                session.add(conversation)
                session.flush()
            else:
                conversation = session.get(Conversation, conversation_id)
                if conversation is None or conversation.user_id != user_id:
                    raise ConversationNotFound(f"conversation {conversation_id} not found")
            assert conversation.id is not None
            session.add(Message(conversation_id=conversation.id, user_id=user_id, role="user", content=text))
            for m in messages:
                session.add(
                    Message(
                        conversation_id=conversation.id,
                        user_id=user_id,
                        role=m["role"],
                        content=m.get("content") or "",
                        tool_calls=m.get("tool_calls"),
                        tool_call_id=m.get("tool_call_id"),
                    )
                )
            conversation.updated_at = utcnow()
            session.add(conversation)
            session.commit()
            return conversation.id

    # ---- one turn ----

    async def chat(self, user_id: str, text: str, conversation_id: int | None = None) -> ChatTurn:
        history = await anyio.to_thread.run_sync(self._start_turn, user_id, conversation_id)
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": self.config.instructions},
            *history,
            {"role": "user", "content": text},
        ]
        new: list[dict[str, Any]] = []
        actions: list[ToolAction] = []
        reply: str | None = None
        failure: ChatError | None = None
        async with Client(self.server) as mcp:
            try:
                reply = await self._run_tools_loop(mcp, user_id, messages, new, actions)
            except ChatError as error:
                # Raised only after the MCP session closed: inside it, the session's task group
                # would wrap the error in an ExceptionGroup.
                failure = error
        if reply is None and failure is None:
            reply = "I stopped after too many tool calls in one turn; please rephrase the request."
        if reply is not None:
            new.append({"role": "assistant", "content": reply})
        # A turn is stored whole, in one transaction, or not at all. One that failed after tools
        # ran is stored as far as it got: the tools' effects are real, and the next turn's model
        # should know about them. One that failed before doing anything leaves no trace.
        if new:
            conversation_id = await anyio.to_thread.run_sync(self._save, user_id, conversation_id, text, new)
        if failure is not None:
            raise failure
        assert reply is not None and conversation_id is not None
        return ChatTurn(conversation_id=conversation_id, reply=reply, actions=actions)

    async def _run_tools_loop(
        self,
        mcp: Client,
        user_id: str,
        messages: list[dict[str, Any]],
        new: list[dict[str, Any]],
        actions: list[ToolAction],
    ) -> str | None:
        """Lets the model call tools until it answers in words; None when it never does."""
        limits = self.limits
        tools = model_tools((await mcp.list_tools()).tools)
        known = {t["function"]["name"] for t in tools}
        calls_left = limits.max_tool_calls_per_turn
        for _ in range(limits.max_tool_rounds):
            message = await self._complete(messages, tools)
            calls = message.tool_calls or []
            if not calls:
                return clean_text((message.content or "").strip()) or "Done."
            request = {
                "role": "assistant",
                "content": clean_text(message.content) if message.content else None,
                "tool_calls": [
                    {
                        "id": clean_text(c.id),
                        "type": "function",
                        "function": {
                            "name": clean_text(c.function.name),
                            "arguments": clean_text(c.function.arguments or ""),
                        },
                    }
                    for c in calls
                ],
            }
            messages.append(request)
            new.append(request)
            refused_for_turn = False
            # Every call asked for gets an answer (the API requires one per call id); those past
            # a limit are answered with a refusal instead of being run.
            for index, call in enumerate(request["tool_calls"]):
                name, arguments = call["function"]["name"], call["function"]["arguments"]
                if index >= limits.max_tool_calls_per_response:
                    action = ToolAction(
                        name, {}, False,
                        f"not run: at most {limits.max_tool_calls_per_response} tool calls per response",
                    )
                elif calls_left <= 0:
                    refused_for_turn = True
                    action = ToolAction(
                        name, {}, False,
                        f"not run: at most {limits.max_tool_calls_per_turn} tool calls per turn",
                    )
                else:
                    calls_left -= 1
                    action = await self._call_tool(mcp, known, user_id, name, arguments)
                actions.append(action)
                content = json.dumps(action.result if action.ok else {"error": action.result}, default=str)
                answer = {
                    "role": "tool",
                    "tool_call_id": call["id"],
                    "content": truncate_utf8(content, limits.tool_result_max_bytes),
                }
                messages.append(answer)
                new.append(answer)
            if refused_for_turn:
                return (
                    f"I stopped after {limits.max_tool_calls_per_turn} tool calls in one turn; "
                    "please ask for less at a time."
                )
        return None

    async def _complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Any:
        try:
            response = await self.client.chat.completions.create(
                model=self.config.model,
                messages=messages,  # type: ignore[arg-type]
                tools=tools,  # type: ignore[arg-type]
            )
        except openai.OpenAIError as error:
            raise ChatError(describe_model_error(error)) from None
        if not getattr(response, "choices", None):
            raise ChatError("the model server answered without any choice")
        return response.choices[0].message

    async def _call_tool(
        self, mcp: Client, known: set[str], user_id: str, name: str, arguments: str
    ) -> ToolAction:
        try:
            args = clean(json.loads(arguments or "{}"))
        except json.JSONDecodeError:
            return ToolAction(name, {}, False, "the arguments were not valid JSON")
        if not isinstance(args, dict):
            return ToolAction(name, {}, False, "the arguments must be a JSON object")
        args.pop(USER_ARGUMENT, None)
        if name not in known:
            return ToolAction(name, args, False, f"there is no tool named {name!r}")
        result = await mcp.call_tool(name, {**args, USER_ARGUMENT: user_id})
        payload = clean(tool_payload(result))
        if not result.is_error:
            return ToolAction(name, args, True, payload)
        # The SDK words a failure "Error executing tool NAME: REASON"; the reason is what counts.
        reason = str(payload)
        prefix = f"Error executing tool {name}: "
        return ToolAction(name, args, False, reason.removeprefix(prefix))
