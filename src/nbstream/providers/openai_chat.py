"""OpenAI chat-completions streaming (``openai:`` and ``ollama:``), via the official SDK.

Any OpenAI-compatible server (vLLM, llama.cpp server, LM Studio, Ollama) works through
``--base-url`` or ``OPENAI_BASE_URL``.

Conversation turns go out as chat messages (:func:`to_openai`, here). A
schema is sent as ``response_format`` (``json_schema``, strict when the schema allows it).
Compatible servers do not all take that field, and they say so in many ways (llama.cpp,
vLLM, LM Studio and proxies word the 400 differently, some with a bare "bad request"). So
when the server answers the request with HTTP 400 or 422 — *any* 400/422 from a server set
by a base URL, one that names ``response_format`` / ``json_schema`` from api.openai.com —
the request is sent once more without ``response_format``, the schema given as instructions
in the system prompt (:func:`nbstream.structured.instructions`), and the status line says
so. The second request costs nothing if the first failed for another reason: it fails the
same way, and that error is reported. The answer is validated either way.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, cast

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
    note,
)
from nbstream.providers.base import price as _p
from nbstream.providers.common import (
    Wire,
    mask_url,
    missing_key_message,
    one_line,
    sdk_client,
    sdk_error,
    sdk_exceptions,
    server_message,
    timeout_config,
)
from nbstream.providers.messages import Message, Turns, put_parts, schema_instructions, split_system
from nbstream.providers.openai_responses import (
    openai_client,
    stream_responses,
    to_responses,
)
from nbstream.providers.thinking import ThinkTags

OLLAMA_DEFAULT_URL = "http://localhost:11434/v1"
OPENAI_URL = "https://api.openai.com/v1"

FALLBACK_NOTE = "schema by instructions: the server has no response_format"
"""The status note when a server refused ``response_format`` (see the module docstring)."""
JSON_OBJECT_NOTE = "schema as json_object: the server has no json_schema response_format"
"""The status note when a server took the schema as ``json_object`` + ``schema``."""

FINISH: dict[str, WireFinish] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "stop",
    "function_call": "stop",
}
"""OpenAI ``finish_reason`` → nbstream's (``content_filter`` is an error, see below)."""


HOSTED_BUDGET = 100_000
"""Conversation budget at api.openai.com (current models hold 128k tokens and more)."""
SELF_HOSTED_BUDGET = 3_000
"""A ``base_url`` (vLLM, llama.cpp server, LM Studio): the context size is unknown and often
4k. Ollama runs models with a 4k context unless configured otherwise (2k in older versions)
and silently cuts the *start* of a longer prompt, so 3k leaves room for the answer."""


def _budget(max_tokens: int | None, base_url: str | None) -> int:
    return SELF_HOSTED_BUDGET if base_url else HOSTED_BUDGET


# fmt: off
PRICES = Prices(
    taken="2026-11-25",
    # The standard-tier prices of https://developers.openai.com/api/docs/pricing, read from
    # dated copies of that page (cross-checked between at least two copies dated 2025-06 to
    # 2026-11). Not modelled: batch, flex and priority tiers, long-context surcharges,
    # audio/image tokens.
    table={  # ---------------------------------------- input, cached, output
        "gpt-5.4":               _p(2.50, 0.25, 15.00),
        "gpt-5.4-mini":          _p(0.75, 0.075, 4.50),
        "gpt-5.2":               _p(1.75, 0.175, 14.00),
        "gpt-5.1":               _p(1.25, 0.125, 10.00),
        "gpt-5":                 _p(1.25, 0.125, 10.00),
        "gpt-5-mini":            _p(0.25, 0.025, 2.00),
        "gpt-5-nano":            _p(0.05, 0.005, 0.40),
        "gpt-4.1":               _p(2.00, 0.50, 8.00),
        "gpt-4.1-mini":          _p(0.40, 0.10, 1.60),
        "gpt-4.1-nano":          _p(0.10, 0.025, 0.40),
        "gpt-4o":                _p(2.50, 1.25, 10.00),
        "gpt-4o-2024-05-13":     _p(5.00, None, 15.00),  # the first gpt-4o snapshot
        "gpt-4o-mini":           _p(0.15, 0.075, 0.60),
        "o3":                    _p(2.00, 0.50, 8.00),
        "o3-mini":               _p(1.10, 0.55, 4.40),
        "o4-mini":               _p(1.10, 0.275, 4.40),
        "o1":                    _p(15.00, 7.50, 60.00),
    },
)
# fmt: on
"""OpenAI's prices, USD per million tokens."""

CUT_OFF = (
    "; or the server cut this request off when another arrived: llama-cpp-python's server "
    "does so unless started with --interrupt_requests False (or send one at a time: "
    "concurrency=1)"
)
"""Added to the error of a stream that a server of the user's own ended before sending
anything."""


def _empty_stream_hint(request: Request) -> str:
    return CUT_OFF if request.base_url else ""


CAPABILITIES = Capabilities(
    default_model="gpt-4o-mini",
    key_variables=("OPENAI_API_KEY",),
    url_variables=("OPENAI_BASE_URL",),
    default_if_set=("OPENAI_API_KEY",),
    budget=_budget,
    conversation=True,
    schema=True,
    batch="nbstream.providers.openai_batch",
    prices=PRICES,
    tools=True,
    images=True,  # image_url parts (an OpenAI-compatible server without vision says so)
    documents=True,  # PDFs as file parts (api.openai.com)
    image_max_side=2048,  # OpenAI fits "high" detail into 2048×2048
    image_max_bytes=20 * 1024 * 1024,
    reasoning_effort=True,  # o-series and gpt-5 models; compatible servers that accept it
    empty_stream_hint=_empty_stream_hint,
    whole=True,  # Chat Completions without "stream" (a batch row nobody watches)
    count_tokens=lambda request: count_tokens(request),  # quote(): /v1/responses/input_tokens
)
"""``openai:`` — api.openai.com, or any OpenAI-compatible server by ``base_url``."""

OLLAMA_CAPABILITIES = Capabilities(
    default_model="llama3.2",
    url_variables=("OLLAMA_HOST",),
    budget=SELF_HOSTED_BUDGET,
    conversation=True,
    schema=True,
    free=True,
    tools=True,
    images=True,  # vision models (llava, gemma3, llama3.2-vision) take image_url parts
    image_max_side=1344,
    image_max_bytes=20 * 1024 * 1024,
    empty_stream_hint=_empty_stream_hint,
    whole=True,
)
"""``ollama:`` — a local Ollama server (OpenAI-compatible, no key)."""


def _ollama_url() -> str:
    host = os.environ.get("OLLAMA_HOST")
    if not host:
        return OLLAMA_DEFAULT_URL
    if "://" not in host:
        host = "http://" + host
    return host.rstrip("/") + "/v1"


def connection(base_url: str | None) -> tuple[str | None, str, Wire]:
    """Where ``openai:`` requests go and with which key: ``base_url`` (the option), else
    ``$OPENAI_BASE_URL``, else api.openai.com (``None``); ``$OPENAI_API_KEY``, required
    there only (self-hosted OpenAI-compatible servers usually need none); and the
    :class:`Wire` that words errors. Streams and batches (:mod:`.openai_batch`,
    :mod:`.anthropic_batch`)."""
    base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
    api_key = os.environ.get("OPENAI_API_KEY")
    if not api_key:
        if base_url is None:
            raise ProviderError(missing_key_message("OPENAI_API_KEY", "OpenAI"))
        api_key = "no-key"
    where = mask_url(base_url or OPENAI_URL)
    wire = Wire(server_label(base_url, where), "OPENAI_API_KEY", where, (api_key,))
    return base_url, api_key, wire


def server_label(base_url: str | None, where: str) -> str:
    """``OpenAI`` for api.openai.com, else ``the server at <URL>`` (a llama.cpp, vLLM or
    Ollama server's error is not OpenAI's)."""
    from urllib.parse import urlsplit

    if base_url is None or urlsplit(base_url).hostname == "api.openai.com":
        return "OpenAI"
    return f"the server at {where}"


async def stream(request: Request) -> AsyncIterator[str | ToolCallDelta | ThinkingDelta | Final]:
    """Stream ``openai:MODEL``: the Responses API at api.openai.com (or with ``--api
    responses``), Chat Completions elsewhere (or with ``--api chat``)."""
    base_url, api_key, wire = connection(request.base_url)
    if request.api == "responses" or (request.api == "auto" and base_url is None):
        async for item in stream_responses(request, base_url=base_url, api_key=api_key, wire=wire):
            yield item
        return
    async for item in _stream(request, base_url=base_url, api_key=api_key, wire=wire):
        yield item


async def stream_ollama(
    request: Request,
) -> AsyncIterator[str | ToolCallDelta | ThinkingDelta | Final]:
    """Stream ``ollama:MODEL`` from a local Ollama server (OpenAI-compatible, no key)."""
    base_url = request.base_url or _ollama_url()
    wire = Wire("Ollama", "OLLAMA_HOST", mask_url(base_url))
    async for item in _stream(request, base_url=base_url, api_key="ollama", wire=wire):
        yield item


def to_openai(history: Turns, prompt: str, system: str | None = None) -> list[Message]:
    """Chat-completions ``messages``: system (``system``, else the history's), the earlier
    turns (a tool round as an assistant message with ``tool_calls`` and one ``tool`` message
    per result), then ``prompt``."""
    system, turns = split_system(history, system)
    messages: list[Message] = []
    if system:
        messages.append({"role": "system", "content": system})
    for m in turns:
        if m.get("tool_calls"):
            calls = [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": c["arguments"] or "{}"},
                }
                for c in m["tool_calls"]
            ]
            messages.append(
                {"role": "assistant", "content": m["content"] or None, "tool_calls": calls}
            )
        elif m["role"] == "tool":
            messages.append(
                {"role": "tool", "tool_call_id": m["tool_call_id"], "content": m["content"]}
            )
        elif m["role"] == "user" or m["content"].strip():
            messages.append({"role": m["role"], "content": m["content"]})
    if prompt or not turns or turns[-1]["role"] != "tool":  # after tool results: no new prompt
        messages.append({"role": "user", "content": prompt})
    return messages


def openai_part(part: str | Attachment) -> dict[str, Any]:
    """A chat-completions content part: text, an image as a data URL, a PDF as a file."""
    if isinstance(part, str):
        return {"type": "text", "text": part}
    url = f"data:{part.mime};base64,{part.base64()}"
    if part.kind == "image":
        return {"type": "image_url", "image_url": {"url": url}}
    name = part.label if part.label.lower().endswith(".pdf") else f"{part.label}.pdf"
    return {"type": "file", "file": {"filename": name, "file_data": url}}


def function_tools(tools: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``Request.tools`` as chat-completions function tools."""
    return [
        {
            "type": "function",
            "function": {
                "name": t["name"],
                "description": t.get("description") or "",
                "parameters": t["parameters"],
            },
        }
        for t in tools
    ]


def json_schema_format(wire: Mapping[str, Any]) -> dict[str, Any]:
    """The chat-completions ``response_format`` for a schema (``Request.schema``)."""
    return {
        "type": "json_schema",
        "json_schema": {"name": wire["name"], "schema": wire["schema"], "strict": wire["strict"]},
    }


def request_options(
    request: Request, *, official: bool, response_format: bool | str = True
) -> dict[str, Any]:
    """The chat-completions body options for ``request`` (``official``: api.openai.com,
    which wants ``max_completion_tokens``; compatible servers know ``max_tokens``).
    How a schema travels: ``response_format=True`` as ``json_schema``, ``"json_object"``
    as ``{"type": "json_object", "schema": …}``, ``False`` as instructions in the system
    prompt."""
    system = request.system
    if request.schema is not None and not response_format:
        rules = schema_instructions(request.schema)
        system = f"{system}\n\n{rules}" if system else rules
    messages = to_openai(list(request.messages), request.prompt, system)
    if request.parts:
        put_parts(messages, request.prompt, request.parts, openai_part)
    options: dict[str, Any] = {
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if request.temperature is not None:
        options["temperature"] = request.temperature
    if request.top_p is not None:
        options["top_p"] = request.top_p
    if request.max_tokens is not None:
        options["max_completion_tokens" if official else "max_tokens"] = request.max_tokens
    if request.stop:
        options["stop"] = list(request.stop)
    if request.schema is not None and response_format == "json_object":
        options["response_format"] = {
            "type": "json_object",
            "schema": request.schema["schema"],
        }
    elif request.schema is not None and response_format:
        options["response_format"] = json_schema_format(request.schema)
    if request.reasoning_effort is not None:
        options["reasoning_effort"] = request.reasoning_effort
    if request.tools:
        options["tools"] = function_tools(request.tools)
    return options


def _said(exc: Exception) -> str:
    return f"{getattr(exc, 'message', '')} {getattr(exc, 'body', '')}".lower()


def rejects_response_format(exc: Exception, *, self_hosted: bool) -> bool:
    """Whether ``exc`` (raised by ``create``) says the server does not take the
    ``response_format`` sent, by what it says: HTTP 400/422 naming it, any 400/422 from a
    self-hosted server, or any other error status whose body names ``response_format`` /
    ``json_schema`` (llama-cpp-python's server answers 500). A 429 is never a refusal."""
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int) or status < 400 or status == 429:
        return False
    if status in (400, 422) and self_hosted:
        return True
    text = _said(exc)
    return "response_format" in text or "json_schema" in text


def rejects_tools(exc: Exception) -> bool:
    """Whether ``exc`` says the server does not take the ``tools`` sent (HTTP 400/422 whose
    body names tools or function calling)."""
    status = getattr(exc, "status_code", None)
    text = _said(exc)
    return status in (400, 422) and ("tool" in text or "function" in text)


def next_mechanism(exc: Exception, tried: bool | str) -> bool | str:
    """After a refusal of ``tried`` (``True``: json_schema), what to send next:
    ``"json_object"`` when the server named it as what it takes, else instructions."""
    if tried is True and "json_object" in _said(exc):
        return "json_object"
    return False


async def _stream(
    request: Request, *, base_url: str | None, api_key: str, wire: Wire
) -> AsyncIterator[str | ToolCallDelta | ThinkingDelta | Final]:
    import openai

    key, make_client = openai_client(base_url, api_key, request.connect_timeout)
    options = request_options(request, official=base_url is None)
    finish_reason: str | None = None
    usage: dict[str, int] | None = None
    calls: dict[int, dict[str, str]] = {}  # index → id, name, arguments so far

    async def post(client: Any, body: dict[str, Any]) -> Any:
        # The SDK's own request path (headers, errors, SSE decoding, mid-stream error
        # events), with the chunks as the JSON dicts they are: building a pydantic model
        # per chunk cost ~0.5 ms of CPU each, which capped a 32-wide batch (bench_batch.py).
        if request.whole:  # one response, read as one chunk
            whole = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
            answer = await client.post(
                "/chat/completions", body={"model": request.model, **whole}, cast_to=object
            )
            return _Whole(answer)
        return await client.post(
            "/chat/completions",
            body={"model": request.model, **body},
            cast_to=object,
            stream=True,
            stream_cls=openai.AsyncStream[object],
        )

    tags = ThinkTags()
    try:
        async with sdk_client(key, make_client) as client:
            mechanism: bool | str = True
            while True:
                try:
                    chunks = await post(client, options)
                    break
                except openai.APIStatusError as exc:
                    if "tools" in options and rejects_tools(exc):
                        raise wire.error(
                            f"{wire.label} does not take tools (HTTP {exc.status_code}: "
                            f"{one_line(server_message(exc.body) or exc.message, 160)}) — leave "
                            "--tools out, or use a model or server with function calling"
                        ) from None
                    if "response_format" not in options or not rejects_response_format(
                        exc, self_hosted=base_url is not None
                    ):
                        raise
                    mechanism = next_mechanism(exc, mechanism)
                    options = request_options(
                        request, official=base_url is None, response_format=mechanism
                    )
                    note(JSON_OBJECT_NOTE if mechanism else FALLBACK_NOTE)
            async with chunks:
                wire.connected = True
                async for chunk in chunks:
                    if not isinstance(chunk, dict):
                        continue
                    counts = chunk.get("usage")
                    if isinstance(counts, dict):
                        usage = {
                            "input_tokens": int(counts.get("prompt_tokens") or 0),
                            "output_tokens": int(counts.get("completion_tokens") or 0),
                        }
                        details = counts.get("prompt_tokens_details")
                        cached = details.get("cached_tokens") if isinstance(details, dict) else 0
                        if cached:  # part of prompt_tokens, billed at the cached price
                            usage["cached_input_tokens"] = int(cached)
                        out = counts.get("completion_tokens_details")
                        thought = out.get("reasoning_tokens") if isinstance(out, dict) else 0
                        if thought:  # part of completion_tokens
                            usage["reasoning_tokens"] = int(thought)
                    for choice in chunk.get("choices") or ():
                        delta = choice.get("delta")
                        if isinstance(delta, dict):
                            # vLLM / llama.cpp server / DeepSeek: reasoning_content; others:
                            # reasoning; Qwen3 / R1 distills: <think> tags in the content
                            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                            if isinstance(reasoning, str) and reasoning:
                                yield ThinkingDelta(reasoning)
                            if delta.get("content"):
                                for item in tags.feed(str(delta["content"])):
                                    yield item
                        if isinstance(delta, dict) and delta.get("tool_calls"):
                            for piece in delta["tool_calls"]:
                                yield _call_piece(piece, calls)
                        if choice.get("finish_reason"):
                            finish_reason = choice["finish_reason"]
    except sdk_exceptions(openai) as exc:
        raise sdk_error(exc, openai, wire) from None

    for item in tags.finish():
        yield item
    if finish_reason is None:
        return  # no terminal event: the engine reports the truncation
    if finish_reason == "content_filter":
        raise ProviderError(f"{wire.label} stopped the answer: content filter")
    made = tuple(
        ToolCall(c["id"] or f"call_{i}", c["name"], c["arguments"])
        for i, c in sorted(calls.items())
    )
    yield Final(FINISH.get(finish_reason, "stop"), usage, tool_calls=made)


class _Whole:
    """A whole (not streamed) completion, read as the one chunk of a stream: its message
    as the delta (its tool calls numbered), its finish reason and usage."""

    def __init__(self, answer: Any) -> None:
        chunk: dict[str, Any] = {}
        if isinstance(answer, dict):
            chunk["usage"] = answer.get("usage")
            chunk["choices"] = []
            for choice in answer.get("choices") or ():
                message = dict(choice.get("message") or {}) if isinstance(choice, dict) else {}
                calls = message.get("tool_calls")
                if isinstance(calls, list):
                    message["tool_calls"] = [
                        {**c, "index": i} for i, c in enumerate(calls) if isinstance(c, dict)
                    ]
                finish = choice.get("finish_reason") if isinstance(choice, dict) else None
                chunk["choices"].append({"delta": message, "finish_reason": finish})
        self.chunk = chunk

    async def __aenter__(self) -> _Whole:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        yield self.chunk


def _call_piece(piece: Any, calls: dict[int, dict[str, str]]) -> ToolCallDelta:
    """One streamed ``tool_calls`` delta: added to its call (by ``index``), for the display."""
    index = int(piece.get("index") or 0) if isinstance(piece, dict) else 0
    call = calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
    function = piece.get("function") if isinstance(piece, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    arguments = function.get("arguments") if isinstance(function, dict) else None
    if isinstance(piece, dict) and piece.get("id"):
        call["id"] = str(piece["id"])
    if name:
        call["name"] += str(name)
    if arguments:
        call["arguments"] += str(arguments)
    return ToolCallDelta(index, str(name) if name else None, str(arguments or ""))


async def count_tokens(request: Request) -> int:
    """The prompt's input tokens by OpenAI's token-counting endpoint
    (``/v1/responses/input_tokens``, free; used by :func:`nbstream.quote` on sampled rows).
    An OpenAI-compatible server without it answers an error, and the quote says so."""
    import openai

    base_url, api_key, wire = connection(request.base_url)
    timeout = timeout_config(openai, request.connect_timeout)
    client = openai.AsyncOpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=2)
    instructions, items = to_responses(list(request.messages), request.prompt, request.system)
    try:
        async with client:
            counted = await client.responses.input_tokens.count(
                model=request.model,
                input=cast(Any, items),
                instructions=instructions if instructions else openai.omit,
            )
    except sdk_exceptions(openai) as exc:
        raise sdk_error(exc, openai, wire) from None
    return int(counted.input_tokens)
