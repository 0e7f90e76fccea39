"""OpenAI's Responses API (``openai:`` at api.openai.com, or ``--api responses``), via the
official SDK: OpenAI's recommended API for new work, and the one that streams reasoning
summaries.

``--api`` chooses: ``responses`` or ``chat`` (Chat Completions, :mod:`.openai_chat`); the
default (``auto``) is the Responses API for api.openai.com and Chat Completions for any other
server (OpenAI-compatible servers speak chat). Both keep every guarantee: Stop closes the
request, the SDK's retries are off (the engine retries before the first token), errors are
worded by :func:`~nbstream.providers.common.sdk_error`, a stream without its terminal event
(``response.completed`` / ``response.incomplete``) is reported as cut.

What goes out (:func:`request_body`): the conversation as ``input`` items (user and
assistant messages, ``function_call`` and ``function_call_output`` items for tool rounds,
``input_image`` / ``input_file`` parts for images and PDFs), the system prompt as
``instructions``, a schema as ``text.format`` (``json_schema``), tools as flat function
tools, ``reasoning`` (``effort``, and ``summary: "auto"`` so that the thinking streams),
``store: false``. Stop sequences do not exist in this API: they are refused before sending.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from nbstream.providers.base import (
    Attachment,
    Final,
    ProviderError,
    Request,
    ThinkingDelta,
    ToolCall,
    ToolCallDelta,
    WireFinish,
)
from nbstream.providers.common import (
    Wire,
    http_client,
    midstream_error,
    sdk_client,
    sdk_error,
    sdk_exceptions,
    timeout_config,
)
from nbstream.providers.messages import Message, Turns, put_parts, split_system


def to_responses(
    history: Turns, prompt: str, system: str | None = None
) -> tuple[str | None, list[Message]]:
    """``(instructions, input)``: the earlier turns as Responses input items, then
    ``prompt`` (no new prompt after tool results)."""
    system, turns = split_system(history, system)
    items: list[Message] = []
    for m in turns:
        if m.get("tool_calls"):
            if m["content"].strip():
                items.append({"role": "assistant", "content": m["content"]})
            items += [
                {
                    "type": "function_call",
                    "call_id": c["id"],
                    "name": c["name"],
                    "arguments": c.get("arguments") or "{}",
                }
                for c in m["tool_calls"]
            ]
        elif m["role"] == "tool":
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": m["tool_call_id"],
                    "output": m["content"],
                }
            )
        elif m["role"] == "user" or m["content"].strip():
            items.append({"role": m["role"], "content": m["content"]})
    if prompt or not turns or turns[-1]["role"] != "tool":
        items.append({"role": "user", "content": prompt})
    return (system or None), items


def responses_part(part: str | Attachment) -> dict[str, Any]:
    """A Responses input content part: text, an image or a PDF as a data URL."""
    if isinstance(part, str):
        return {"type": "input_text", "text": part}
    url = f"data:{part.mime};base64,{part.base64()}"
    if part.kind == "image":
        return {"type": "input_image", "image_url": url}
    name = part.label if part.label.lower().endswith(".pdf") else f"{part.label}.pdf"
    return {"type": "input_file", "filename": name, "file_data": url}


def function_tools(tools: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``Request.tools`` as Responses function tools (flat, not nested in ``function``)."""
    return [
        {
            "type": "function",
            "name": t["name"],
            "description": t.get("description") or "",
            "parameters": t["parameters"],
            "strict": False,
        }
        for t in tools
    ]


def request_body(request: Request) -> dict[str, Any]:
    """The Responses body for ``request`` (see the module docstring)."""
    if request.stop:
        raise ProviderError(
            "OpenAI's Responses API has no stop sequences: leave --stop out, or use "
            "--api chat (Chat Completions)",
            option="stop",
        )
    instructions, items = to_responses(list(request.messages), request.prompt, request.system)
    if request.parts:
        put_parts(items, request.prompt, request.parts, responses_part)
    body: dict[str, Any] = {"model": request.model, "input": items, "stream": True, "store": False}
    if instructions:
        body["instructions"] = instructions
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.max_tokens is not None:
        body["max_output_tokens"] = request.max_tokens
    if request.reasoning_effort is not None:
        body["reasoning"] = {"effort": request.reasoning_effort, "summary": "auto"}
    if request.schema is not None:
        wire = request.schema
        body["text"] = {
            "format": {
                "type": "json_schema",
                "name": wire["name"],
                "schema": wire["schema"],
                "strict": bool(wire.get("strict")),
            }
        }
    if request.tools:
        body["tools"] = function_tools(request.tools)
    return body


def openai_client(
    base_url: str | None, api_key: str, connect_timeout: float
) -> tuple[tuple[Any, ...], Callable[[], Any]]:
    """The shared-client key and the factory of an ``openai.AsyncOpenAI`` for both of
    OpenAI's APIs (Chat Completions and Responses share one client per server and key)."""
    import openai

    def make_client() -> Any:
        timeout = timeout_config(openai, connect_timeout)
        return openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            http_client=http_client(openai, timeout),
            max_retries=0,  # the engine retries (before the first token only)
        )

    return ("openai", base_url, api_key, connect_timeout), make_client


async def stream_responses(
    request: Request, *, base_url: str | None, api_key: str, wire: Wire
) -> AsyncIterator[str | ToolCallDelta | ThinkingDelta | Final]:
    """Stream one answer through the Responses API."""
    import openai

    key, make_client = openai_client(base_url, api_key, request.connect_timeout)
    body = request_body(request)
    ended: dict[str, Any] | None = None
    calls: dict[int, dict[str, str]] = {}  # output index → id, name, arguments
    order: list[int] = []
    try:
        async with sdk_client(key, make_client) as client:
            # The SDK's request path, SSE decoding and error handling, with the events as
            # the JSON dicts they are (see openai_chat.py).
            events = await client.post(
                "/responses",
                body=body,
                cast_to=object,
                stream=True,
                stream_cls=openai.AsyncStream[object],
            )
            async with events:
                wire.connected = True
                async for raw in events:
                    event = _unwrap(raw)
                    if event is None:
                        continue
                    kind = event.get("type")
                    if kind == "response.output_text.delta":
                        if event.get("delta"):
                            yield str(event["delta"])
                    elif kind == "response.reasoning_summary_text.delta":
                        if event.get("delta"):
                            yield ThinkingDelta(str(event["delta"]))
                    elif kind == "response.output_item.added":
                        item = event.get("item") or {}
                        if item.get("type") == "function_call":
                            index = int(event.get("output_index") or 0)
                            name = str(item.get("name") or "")
                            calls[index] = {
                                "id": str(item.get("call_id") or item.get("id") or ""),
                                "name": name,
                                "arguments": "",
                            }
                            order.append(index)
                            yield ToolCallDelta(order.index(index), name, "")
                    elif kind == "response.function_call_arguments.delta":
                        index = int(event.get("output_index") or 0)
                        piece = str(event.get("delta") or "")
                        if index in calls and piece:
                            calls[index]["arguments"] += piece
                            yield ToolCallDelta(order.index(index), None, piece)
                    elif kind == "response.output_item.done":
                        item = event.get("item") or {}
                        index = int(event.get("output_index") or 0)
                        if item.get("type") == "function_call" and index in calls:
                            calls[index]["arguments"] = str(item.get("arguments") or "")
                    elif kind in ("response.completed", "response.incomplete"):
                        ended = event.get("response") or {}
                    elif kind == "response.failed":
                        error = (event.get("response") or {}).get("error") or {}
                        raise midstream_error(wire, str(error.get("message") or "failed"))
                    elif kind == "error":
                        said = event.get("message") or event.get("error") or event
                        raise midstream_error(wire, str(said))
    except ProviderError:
        raise
    except sdk_exceptions(openai) as exc:
        raise sdk_error(exc, openai, wire) from None
    if ended is None:
        return  # no response.completed: the engine reports the truncation
    reason = (ended.get("incomplete_details") or {}).get("reason")
    if reason == "content_filter":
        raise ProviderError("OpenAI stopped the answer: content filter")
    made = tuple(
        ToolCall(calls[i]["id"] or f"call_{n}", calls[i]["name"], calls[i]["arguments"] or "{}")
        for n, i in enumerate(order)
    )
    finish: WireFinish = "length" if reason == "max_output_tokens" else "stop"
    yield Final(finish, _usage(ended.get("usage")), tool_calls=made)


def _unwrap(raw: Any) -> dict[str, Any] | None:
    """An event as a dict with its ``type`` (the SDK hands some named events over as
    ``{"event": name, "data": {...}}``)."""
    if not isinstance(raw, dict):
        return None
    if "type" not in raw and isinstance(raw.get("data"), dict):
        data = dict(raw["data"])
        data.setdefault("type", raw.get("event"))
        return data
    return raw


def _usage(counts: Any) -> dict[str, int] | None:
    if not isinstance(counts, dict):
        return None
    usage = {
        "input_tokens": int(counts.get("input_tokens") or 0),
        "output_tokens": int(counts.get("output_tokens") or 0),
    }
    cached = (counts.get("input_tokens_details") or {}).get("cached_tokens")
    if cached:
        usage["cached_input_tokens"] = int(cached)
    reasoning = (counts.get("output_tokens_details") or {}).get("reasoning_tokens")
    if reasoning:
        usage["reasoning_tokens"] = int(reasoning)
    return usage


__all__ = ["openai_client", "request_body", "responses_part", "stream_responses", "to_responses"]
