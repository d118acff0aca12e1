"""The chat agent: an OpenAI-compatible model that manages todos through the MCP tools.

One request is one turn. The agent loads the conversation from the database,
appends the user's message, and lets the model answer; each tool call the model
makes is sent to the todo MCP server through an MCP client session, and the
result goes back to the model until it answers in plain language. Every message
of the turn (the user's, the model's tool requests, the tool results, the reply)
is stored, so the next request, on any server process, continues from the
database alone.

The model never sees or chooses whose todos it touches: the tools' ``user_id``
argument is removed from the schemas the model is shown and filled in from the
authenticated request on every call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
import openai
from mcp import Client
from mcp.server.mcpserver import MCPServer
from openai import AsyncOpenAI
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from agents.config import AgentConfig
from app.models import ID_MAX, Conversation, Message, utcnow

# Tool rounds per turn: enough for "list, then complete two tasks"; a model that keeps
# calling tools past this is looping, and the turn ends with a message saying so.
MAX_TOOL_ROUNDS = 6
# Messages of earlier turns replayed to the model: bounds the prompt of a long conversation.
HISTORY_LIMIT = 40
USER_ARGUMENT = "user_id"


class ChatError(Exception):
    """The model server failed; the message says how, without any secret."""


class ConversationNotFound(LookupError):
    pass


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


def trim_history(messages: list[Message], limit: int = HISTORY_LIMIT) -> list[Message]:
    """The last ``limit`` messages that the model accepts as a history.

    The chat completions API rejects a tool result without the assistant message that
    asked for it, and an assistant's tool request without an answer for every call. So
    the history starts at a user message, and a tool request left unanswered (a turn
    that failed halfway) is dropped together with the answers it did get.
    """
    recent = messages[-limit:] if limit > 0 else []
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
        max_tool_rounds: int = MAX_TOOL_ROUNDS,
        history_limit: int = HISTORY_LIMIT,
    ) -> None:
        self.config = config
        self.client = client
        self.server = server
        self.engine = engine
        self.max_tool_rounds = max_tool_rounds
        self.history_limit = history_limit

    # ---- the database side (synchronous, run in a worker thread) ----

    def _start_turn(self, user_id: str, conversation_id: int | None, text: str) -> tuple[int, list[dict[str, Any]]]:
        with Session(self.engine) as session:
            if conversation_id is None:
                conversation = Conversation(user_id=user_id)
                session.add(conversation)
                session.flush()
            else:
                conversation = session.get(Conversation, conversation_id) if 1 <= conversation_id <= ID_MAX else None
                if conversation is None or conversation.user_id != user_id:
                    raise ConversationNotFound(f"conversation {conversation_id} not found")
            assert conversation.id is not None
            earlier = list(
                session.exec(
                    select(Message)
                    .where(Message.conversation_id == conversation.id)
                    .order_by(col(Message.id).desc())
                    .limit(self.history_limit)
                )
            )[::-1]
            history = [to_openai(m) for m in trim_history(earlier, self.history_limit)]
            session.add(Message(conversation_id=conversation.id, user_id=user_id, role="user", content=text))
            conversation.updated_at = utcnow()
            session.add(conversation)
            session.commit()
            return conversation.id, history

    def _save(self, conversation_id: int, user_id: str, messages: list[dict[str, Any]]) -> None:
        with Session(self.engine) as session:
            for m in messages:
                session.add(
                    Message(
                        conversation_id=conversation_id,
                        user_id=user_id,
                        role=m["role"],
                        content=m.get("content") or "",
                        tool_calls=m.get("tool_calls"),
                        tool_call_id=m.get("tool_call_id"),
                    )
                )
            conversation = session.get(Conversation, conversation_id)
            if conversation is not None:
                conversation.updated_at = utcnow()
                session.add(conversation)
            session.commit()

    # ---- one turn ----

    async def chat(self, user_id: str, text: str, conversation_id: int | None = None) -> ChatTurn:
        conversation_id, history = await anyio.to_thread.run_sync(
            self._start_turn, user_id, conversation_id, text
        )
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
        # Whatever happened before a failure is stored too: the tools' effects are real.
        if new:
            await anyio.to_thread.run_sync(self._save, conversation_id, user_id, new)
        if failure is not None:
            raise failure
        assert reply is not None
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
        tools = model_tools((await mcp.list_tools()).tools)
        known = {t["function"]["name"] for t in tools}
        for _ in range(self.max_tool_rounds):
            message = await self._complete(messages, tools)
            calls = message.tool_calls or []
            if not calls:
                return (message.content or "").strip() or "Done."
            request = {
                "role": "assistant",
                "content": message.content or None,
                "tool_calls": [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.function.name, "arguments": c.function.arguments},
                    }
                    for c in calls
                ],
            }
            messages.append(request)
            new.append(request)
            for call in calls:
                action = await self._call_tool(mcp, known, user_id, call.function.name, call.function.arguments)
                actions.append(action)
                answer = {
                    "role": "tool",
                    "tool_call_id": call.id,
                    "content": json.dumps(action.result if action.ok else {"error": action.result}, default=str),
                }
                messages.append(answer)
                new.append(answer)
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
            args = json.loads(arguments or "{}")
        except json.JSONDecodeError:
            return ToolAction(name, {}, False, "the arguments were not valid JSON")
        if not isinstance(args, dict):
            return ToolAction(name, {}, False, "the arguments must be a JSON object")
        args.pop(USER_ARGUMENT, None)
        if name not in known:
            return ToolAction(name, args, False, f"there is no tool named {name!r}")
        result = await mcp.call_tool(name, {**args, USER_ARGUMENT: user_id})
        payload = tool_payload(result)
        if not result.is_error:
            return ToolAction(name, args, True, payload)
        # The SDK words a failure "Error executing tool NAME: REASON"; the reason is what counts.
        reason = str(payload)
        prefix = f"Error executing tool {name}: "
        return ToolAction(name, args, False, reason.removeprefix(prefix))
