"""Anthropic Messages streaming (``anthropic:``), via the official SDK.

Conversation turns go out as strictly alternating messages with the system prompt apart
(:func:`to_anthropic`, here). A schema is asked for as one forced tool call
(:func:`forced_tool`): the tool's input is the answer, and the
streamed ``input_json_delta.partial_json`` pieces are yielded as the answer's text. Text
outside the tool call is dropped, unless no tool call came at all (a proxy that ignores
tools): then the text is the answer, and validation judges it.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from nbstream.providers.base import (
    Attachment,
    Capabilities,
    Final,
    Prices,
    ProviderError,
    Request,
    ThinkingDelta,
    ToolCall,
    ToolCallDelta,
    WireFinish,
)
from nbstream.providers.base import price as _p
from nbstream.providers.common import (
    Wire,
    http_client,
    mask_url,
    missing_key_message,
    sdk_client,
    sdk_error,
    sdk_exceptions,
    timeout_config,
)
from nbstream.providers.messages import Message, Turns, call_arguments, put_parts, split_system

DEFAULT_MAX_TOKENS = 4096
ANTHROPIC_URL = "https://api.anthropic.com"

FINISH: dict[str, WireFinish] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "stop",
    "max_tokens": "length",
    "pause_turn": "stop",
    "model_context_window_exceeded": "length",
}
"""Anthropic ``stop_reason`` → nbstream's (``refusal`` is an error, see below)."""


# fmt: off
PRICES = Prices(
    taken="2026-11-25",
    # The pricing page, https://platform.claude.com/docs/en/about-claude/pricing ("Model
    # pricing": base input, cache hits, output). Not modelled: cache *writes* (1.25× input;
    # nbstream sets no cache_control, so its requests write no cache), the long-context
    # premium of Sonnet 4/4.5 above 200K input tokens, batch and regional prices.
    table={  # ---------------------------------------- input, cache hit, output
        "claude-opus-4-8":    _p(5.00, 0.50, 25.00),
        "claude-opus-4-7":    _p(5.00, 0.50, 25.00),
        "claude-opus-4-6":    _p(5.00, 0.50, 25.00),
        "claude-opus-4-5":    _p(5.00, 0.50, 25.00),
        "claude-opus-4-1":    _p(15.00, 1.50, 75.00),
        "claude-opus-4":      _p(15.00, 1.50, 75.00),
        "claude-sonnet-4-6":  _p(3.00, 0.30, 15.00),
        "claude-sonnet-4-5":  _p(3.00, 0.30, 15.00),
        "claude-sonnet-4":    _p(3.00, 0.30, 15.00),
        "claude-3-7-sonnet":  _p(3.00, 0.30, 15.00),
        "claude-3-5-sonnet":  _p(3.00, 0.30, 15.00),
        "claude-haiku-4-5":   _p(1.00, 0.10, 5.00),
        "claude-3-5-haiku":   _p(0.80, 0.08, 4.00),
        "claude-3-haiku":     _p(0.25, 0.03, 1.25),
        "claude-3-opus":      _p(15.00, 1.50, 75.00),
    },
    aliases={"claude-opus-4-0": "claude-opus-4", "claude-sonnet-4-0": "claude-sonnet-4"},
    spelling=lambda name: re.sub(r"(\d)\.(\d)", r"\1-\2", name),  # 4.5 → 4-5
)
# fmt: on
"""Anthropic's prices, USD per million tokens."""

CAPABILITIES = Capabilities(
    default_model="claude-sonnet-4-5",
    key_variables=("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"),
    url_variables=("ANTHROPIC_BASE_URL",),
    default_if_set=("ANTHROPIC_API_KEY",),
    budget=100_000,  # current models hold 200k tokens
    conversation=True,
    schema=True,
    batch="nbstream.providers.anthropic_batch",
    prices=PRICES,
    tools=True,
    images=True,
    documents=True,
    image_max_side=1568,  # larger images are resized by the API (slower, same tokens)
    image_max_bytes=3_750_000,  # 5 MB per image, counted as base64
    count_tokens=lambda request: count_tokens(request),  # quote(): the counting endpoint
    thinking=True,  # extended thinking: --thinking TOKENS (thinking_delta, signatures kept)
)
"""``anthropic:`` — the Messages API."""


def to_anthropic(
    history: Turns, prompt: str, system: str | None = None
) -> tuple[str | None, list[Message]]:
    """``(system, messages)`` for the Messages API: roles strictly alternate starting with
    ``user``, no message is empty (the API rejects both). An empty answer is left out and
    the user messages around it are merged, blank-line separated; a leading assistant
    message is dropped. A tool round becomes an assistant message with ``tool_use`` blocks
    and a user message of ``tool_result`` blocks."""
    system, turns = split_system(history, system)
    messages: list[Message] = []
    pending = [*turns, {"role": "user", "content": prompt}] if prompt or not turns else turns
    for message in pending:
        role = "assistant" if message["role"] == "assistant" else "user"
        if message.get("tool_calls"):
            blocks: list[dict[str, Any]] = [dict(b) for b in message.get("thinking_blocks") or ()]
            if message["content"].strip():
                blocks.append({"type": "text", "text": message["content"]})
            blocks += [
                {"type": "tool_use", "id": c["id"], "name": c["name"], "input": call_arguments(c)}
                for c in message["tool_calls"]
            ]
            messages.append({"role": "assistant", "content": blocks})
            continue
        if message["role"] == "tool":
            result = {
                "type": "tool_result",
                "tool_use_id": message["tool_call_id"],
                "content": message["content"] or "(empty)",
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "user" and isinstance(last["content"], list):
                last["content"].append(result)
            else:
                messages.append({"role": "user", "content": [result]})
            continue
        content = message["content"]
        if not content.strip():
            continue
        if not messages and role == "assistant":
            continue
        if messages and messages[-1]["role"] == role and isinstance(messages[-1]["content"], str):
            messages[-1] = {"role": role, "content": f"{messages[-1]['content']}\n\n{content}"}
        else:
            messages.append({"role": role, "content": content})
    if not messages:  # an empty prompt and no history: the API still needs one message
        messages.append({"role": "user", "content": prompt})
    return (system or None), messages


def anthropic_block(part: str | Attachment) -> dict[str, Any]:
    """A Messages content block: text, a base64 image, a base64 PDF document."""
    if isinstance(part, str):
        return {"type": "text", "text": part}
    kind = "image" if part.kind == "image" else "document"
    source = {"type": "base64", "media_type": part.mime, "data": part.base64()}
    return {"type": kind, "source": source}


def tool_definitions(tools: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``Request.tools`` as Messages API tools."""
    return [
        {
            "name": t["name"],
            "description": t.get("description") or "",
            "input_schema": t["parameters"],
        }
        for t in tools
    ]


def forced_tool(wire: Mapping[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``(tools, tool_choice)`` forcing one tool call whose input is the answer: the
    streamed ``input_json_delta.partial_json`` pieces are the answer's JSON text."""
    tool = {
        "name": wire["name"],
        "description": f"Give the answer as {wire.get('label') or wire['name']}: "
        "call this tool with it as the input.",
        "input_schema": wire["schema"],
    }
    return [tool], {"type": "tool", "name": wire["name"]}


def request_options(request: Request) -> dict[str, Any]:
    """The Messages body options for ``request``."""
    system, messages = to_anthropic(list(request.messages), request.prompt, request.system)
    if request.parts:
        put_parts(messages, request.prompt, request.parts, anthropic_block)
    options: dict[str, Any] = {
        "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
        "messages": messages,
        "stream": True,
    }
    if system:
        options["system"] = system
    if request.schema is not None:
        options["tools"], options["tool_choice"] = forced_tool(request.schema)
    elif request.tools:
        options["tools"] = tool_definitions(request.tools)
    if request.stop:
        options["stop_sequences"] = list(request.stop)
    if request.thinking:
        options.update(thinking_options(request, options["max_tokens"]))
    # anthropic>=2 dropped the sampling keywords; the API still takes the fields.
    sampling = {"temperature": request.temperature, "top_p": request.top_p}
    extra = {k: v for k, v in sampling.items() if v is not None}
    if extra:
        options["extra_body"] = extra
    return options


MIN_THINKING = 1024
"""Anthropic's smallest extended-thinking budget."""


def thinking_options(request: Request, max_tokens: int) -> dict[str, Any]:
    """Extended thinking with ``request.thinking`` tokens (checked before sending: the
    budget's minimum, room for an answer after it, no forced tool, no sampling changes)."""
    budget = int(request.thinking or 0)
    if budget < MIN_THINKING:
        raise ProviderError(
            f"Anthropic's thinking budget is at least {MIN_THINKING} tokens, got {budget}: "
            f"use --thinking {MIN_THINKING} or more",
            option="thinking",
        )
    if request.schema is not None:
        raise ProviderError(
            "Anthropic cannot think with a schema (nbstream asks for the structured answer "
            "as a forced tool call, which thinking does not allow): leave --thinking or "
            "--schema out",
            option="thinking",
        )
    if request.temperature is not None or request.top_p is not None:
        raise ProviderError(
            "Anthropic's extended thinking takes neither temperature nor top_p: leave them "
            "out with --thinking",
            option="thinking",
        )
    if request.max_tokens is not None and request.max_tokens <= budget:
        raise ProviderError(
            f"--max-tokens ({request.max_tokens}) must be larger than the thinking budget "
            f"({budget}): the answer comes after the thinking",
            option="max_tokens",
        )
    return {
        "thinking": {"type": "enabled", "budget_tokens": budget},
        "max_tokens": max(max_tokens, budget + DEFAULT_MAX_TOKENS)
        if request.max_tokens is None
        else max_tokens,
    }


async def count_tokens(request: Request) -> int:
    """The prompt's input tokens by Anthropic's token-counting endpoint (free; used by
    :func:`nbstream.quote` on sampled rows)."""
    import anthropic

    base_url, api_key, auth_token, wire = connection(request.base_url)
    timeout = timeout_config(anthropic, request.connect_timeout)
    client = anthropic.AsyncAnthropic(
        api_key=api_key,
        auth_token=None if api_key else auth_token,
        base_url=base_url,
        timeout=timeout,
        max_retries=2,  # a control call, not a stream
    )
    system, messages = to_anthropic(list(request.messages), request.prompt, request.system)
    body: dict[str, Any] = {"model": request.model, "messages": messages}
    if system:
        body["system"] = system
    try:
        async with client:
            counted = await client.post("/v1/messages/count_tokens", body=body, cast_to=object)
    except sdk_exceptions(anthropic) as exc:
        raise sdk_error(exc, anthropic, wire) from None
    if not isinstance(counted, dict) or not isinstance(counted.get("input_tokens"), int):
        raise ProviderError("Anthropic's token counting answered without input_tokens")
    return int(counted["input_tokens"])


def connection(base_url: str | None) -> tuple[str | None, str | None, str | None, Wire]:
    """Where ``anthropic:`` requests go and with which credentials: ``base_url`` (the
    option), else ``$ANTHROPIC_BASE_URL``, else api.anthropic.com (``None``);
    ``$ANTHROPIC_API_KEY`` or ``$ANTHROPIC_AUTH_TOKEN`` (one is required); and the
    :class:`Wire` that words errors. Streams and batches (:mod:`.openai_batch`,
    :mod:`.anthropic_batch`)."""
    api_key = os.environ.get("ANTHROPIC_API_KEY")
    auth_token = os.environ.get("ANTHROPIC_AUTH_TOKEN")
    if not api_key and not auth_token:
        raise ProviderError(missing_key_message("ANTHROPIC_API_KEY", "Anthropic"))
    base_url = base_url or os.environ.get("ANTHROPIC_BASE_URL") or None
    wire = Wire(
        "Anthropic",
        "ANTHROPIC_API_KEY" if api_key else "ANTHROPIC_AUTH_TOKEN",
        mask_url(base_url or ANTHROPIC_URL),
        (api_key, auth_token),
    )
    return base_url, api_key, auth_token, wire


async def stream(request: Request) -> AsyncIterator[str | ToolCallDelta | ThinkingDelta | Final]:
    """Stream ``anthropic:MODEL``."""
    import anthropic

    base_url, api_key, auth_token, wire = connection(request.base_url)

    def make_client() -> Any:
        timeout = timeout_config(anthropic, request.connect_timeout)
        return anthropic.AsyncAnthropic(
            api_key=api_key,
            auth_token=None if api_key else auth_token,
            base_url=base_url,
            timeout=timeout,
            http_client=http_client(anthropic, timeout),
            max_retries=0,  # the engine retries (before the first token only)
        )

    key = ("anthropic", base_url, api_key, auth_token, request.connect_timeout)
    input_tokens = output_tokens = None
    cache_read = cache_write = 0
    stop_reason: str | None = None
    saw_stop = False
    structured = request.schema is not None
    held: list[str] = []  # text outside the tool call, with a schema (see the docstring)
    tool_input = False
    calls: dict[int, dict[str, str]] = {}  # block index → id, name, arguments (with tools)
    thinking: dict[int, dict[str, Any]] = {}  # block index → the thinking block, to send back
    try:
        async with sdk_client(key, make_client) as client:
            body = request_options(request)
            body.update(body.pop("extra_body", None) or {})
            # The SDK's request path, SSE decoder and error events, with the events as the
            # JSON dicts they are (no pydantic model per event: see openai_chat.py).
            events = await client.post(
                "/v1/messages",
                body={"model": request.model, **body},
                cast_to=object,
                stream=True,
                stream_cls=anthropic.AsyncStream[object],
            )
            async with events:
                wire.connected = True
                async for event in events:
                    if not isinstance(event, dict):
                        continue
                    kind = event.get("type")
                    if kind == "content_block_delta":
                        delta = event.get("delta") or {}
                        text = delta.get("text")
                        if delta.get("type") == "thinking_delta":
                            piece = str(delta.get("thinking") or "")
                            block = thinking.get(int(event.get("index") or 0))
                            if block is not None:
                                block["thinking"] += piece
                            if piece:
                                yield ThinkingDelta(piece)
                        elif delta.get("type") == "signature_delta":
                            block = thinking.get(int(event.get("index") or 0))
                            if block is not None:
                                block["signature"] += str(delta.get("signature") or "")
                        elif delta.get("type") == "text_delta" and text:
                            if structured:
                                held.append(text)
                            else:
                                yield text
                        elif delta.get("type") == "input_json_delta" and structured:
                            partial = delta.get("partial_json")
                            if partial:
                                tool_input = True
                                yield partial
                        elif delta.get("type") == "input_json_delta":
                            index = int(event.get("index") or 0)
                            partial = str(delta.get("partial_json") or "")
                            if index in calls and partial:
                                calls[index]["arguments"] += partial
                                yield ToolCallDelta(len(calls) - 1, None, partial)
                    elif kind == "content_block_start" and (
                        (event.get("content_block") or {}).get("type")
                        in ("thinking", "redacted_thinking")
                    ):
                        block = event.get("content_block") or {}
                        index = int(event.get("index") or 0)
                        if block.get("type") == "thinking":
                            thinking[index] = {"type": "thinking", "thinking": "", "signature": ""}
                        else:  # encrypted: kept for the next request, never shown
                            thinking[index] = {"type": "redacted_thinking", "data": block["data"]}
                    elif kind == "content_block_start" and not structured:
                        block = event.get("content_block") or {}
                        if block.get("type") == "tool_use":
                            index = int(event.get("index") or 0)
                            name = str(block.get("name") or "")
                            calls[index] = {"id": str(block.get("id") or ""), "name": name}
                            calls[index]["arguments"] = ""
                            yield ToolCallDelta(len(calls) - 1, name, "")
                    elif kind == "message_start":
                        usage_start = (event.get("message") or {}).get("usage") or {}
                        input_tokens = usage_start.get("input_tokens")
                        cache_read, cache_write = cache_tokens(usage_start)
                    elif kind == "message_delta":
                        stop_reason = (event.get("delta") or {}).get("stop_reason") or stop_reason
                        usage_end = event.get("usage") or {}
                        output_tokens = usage_end.get("output_tokens")
                        if usage_end.get("input_tokens") is not None:
                            input_tokens = usage_end["input_tokens"]  # the final count
                            cache_read, cache_write = cache_tokens(usage_end)
                    elif kind == "message_stop":
                        saw_stop = True
    except sdk_exceptions(anthropic) as exc:
        raise sdk_error(exc, anthropic, wire) from None

    if not saw_stop:
        return  # no message_stop: the engine reports the truncation
    if structured and not tool_input and held:
        yield "".join(held)
    if stop_reason == "refusal":
        raise ProviderError("Anthropic stopped the answer: the model refused")
    usage = None
    if input_tokens is not None or output_tokens is not None:
        # input_tokens counts every prompt token, cached ones included (as OpenAI does)
        total_in = (input_tokens or 0) + cache_read + cache_write
        usage = {"input_tokens": total_in, "output_tokens": output_tokens or 0}
        if cache_read:
            usage["cached_input_tokens"] = cache_read
    made = tuple(
        ToolCall(c["id"] or f"toolu_{i}", c["name"], c["arguments"] or "{}")
        for i, c in sorted(calls.items())
    )
    blocks = tuple(b for _, b in sorted(thinking.items()))
    yield Final(
        FINISH.get(stop_reason or "end_turn", "stop"),
        usage,
        tool_calls=made,
        thinking_blocks=blocks,
    )


def cache_tokens(usage: dict[str, Any]) -> tuple[int, int]:
    """Prompt-cache reads and writes, which Anthropic counts apart from ``input_tokens``."""
    read = usage.get("cache_read_input_tokens") or 0
    write = usage.get("cache_creation_input_tokens") or 0
    return int(read), int(write)
