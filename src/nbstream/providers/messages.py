"""Chat messages as the providers' formats take them: what the thread (``Request.messages``, or
a :class:`nbstream.conversation.History`) holds, split into the system prompt and the turns.
Each provider module turns them into its own wire format."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeAlias

Message = dict[str, Any]
"""``{"role": "system" | "user" | "assistant", "content": str}``; a tool round adds
``"tool_calls": [{"id", "name", "arguments"}]`` to an assistant message, and its results are
``{"role": "tool", "tool_call_id", "name", "content"}`` messages."""


class HasMessages(Protocol):
    """A :class:`nbstream.conversation.History` (its ``messages``)."""

    @property
    def messages(self) -> Sequence[Mapping[str, Any]]: ...


Turns: TypeAlias = Sequence[Mapping[str, Any]] | HasMessages | None
"""Earlier messages: ``{"role", "content"}`` mappings, a ``History``, or ``None``."""


def messages_of(history: Turns) -> list[Message]:
    if history is None:
        return []
    items = history if isinstance(history, Sequence) else history.messages
    out: list[Message] = []
    for m in items:
        message: Message = {"role": str(m["role"]), "content": str(m.get("content") or "")}
        if m.get("tool_calls"):
            message["tool_calls"] = [dict(call) for call in m["tool_calls"]]
        if m.get("thinking_blocks"):  # a provider's own thinking, sent back in a tool loop
            message["thinking_blocks"] = [dict(b) for b in m["thinking_blocks"]]
        if m["role"] == "tool":
            message["tool_call_id"] = str(m.get("tool_call_id") or "")
            message["name"] = str(m.get("name") or "")
        out.append(message)
    return out


def split_system(history: Turns, system: str | None) -> tuple[str | None, list[Message]]:
    """(the system prompt to send, the user/assistant messages)."""
    found: str | None = None
    turns: list[Message] = []
    for message in messages_of(history):
        if message["role"] == "system":
            found = message["content"] or found
        else:
            turns.append(message)
    return (system if system is not None else found), turns


def call_arguments(call: Mapping[str, Any]) -> dict[str, Any]:
    """A tool call's arguments (JSON text in ``Request.messages``) as an object, ``{}`` when
    they are not a JSON object: the form Anthropic's ``tool_use.input`` and Gemini's
    ``function_call.args`` hold."""
    try:
        value = json.loads(call.get("arguments") or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def schema_instructions(wire: Mapping[str, Any]) -> str:
    """Prompt text asking for JSON that matches the schema (``Request.schema``), for servers
    without a native mechanism: appended to the system prompt."""
    return (
        "Answer with JSON only (no prose, no code fence), matching this JSON Schema:\n"
        + json.dumps(wire["schema"], ensure_ascii=False)
    )


__all__ = [
    "HasMessages",
    "Message",
    "Turns",
    "call_arguments",
    "messages_of",
    "schema_instructions",
    "split_system",
]


def put_parts(
    messages: list[Message],
    prompt: str,
    parts: Sequence[Any],
    convert: Any,
    *,
    content: str = "content",
) -> None:
    """Give the last user message the prompt's parts (text and attachments, each made a
    content block by ``convert``) in place of the prompt's text at its end (a provider that
    merged earlier text into that message keeps it first). ``content``: the key that holds a
    message's content."""
    for message in reversed(messages):
        held = message.get(content)
        if message.get("role") != "user" or not isinstance(held, str):
            continue
        if held.endswith(prompt):
            head = held[: len(held) - len(prompt)]
            items = ([head] if head.strip() else []) + [p for p in parts if p != ""]
            message[content] = [convert(p) for p in items]
            return
    raise ValueError("the prompt is not in the last user message")  # pragma: no cover
