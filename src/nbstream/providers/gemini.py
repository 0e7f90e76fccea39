"""Google Gemini streaming (``gemini:``), via the official ``google-genai`` SDK.

The request goes to ``models/MODEL:streamGenerateContent?alt=sse`` of the Gemini API
(``generativelanguage.googleapis.com``, or ``base_url`` / ``$GOOGLE_GEMINI_BASE_URL``) with
``$GEMINI_API_KEY`` or ``$GOOGLE_API_KEY``. Conversation turns go out as Gemini *contents*
(:func:`to_gemini`: roles ``user`` / ``model``, each a list of parts, the system prompt apart
as ``system_instruction``). A schema is asked for natively: ``response_mime_type
application/json`` with the JSON schema as ``response_json_schema``, so the streamed text is
the answer's JSON.

Gemini has no terminal event: the last chunk carries ``finishReason``. A stream that ends
without one was cut short, and the engine says so. ``SAFETY``, ``RECITATION``, ``BLOCKLIST``,
``PROHIBITED_CONTENT``, ``SPII`` and a blocked prompt are errors that keep the text so far.
The SDK's own retries are off (the engine retries before the first token); the SDK runs on
an HTTP client nbstream makes and closes, so Stop closes the connection at once.
"""

from __future__ import annotations

import codecs
import contextlib
import importlib
import json
import os
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
    RETRYABLE_STATUS,
    Wire,
    dropped_message,
    http_error_message,
    mask_url,
    midstream_error,
    missing_key_message,
    one_line,
    retry_after,
    sdk_client,
    tls_context,
    transport_errors,
    wire_error,
)
from nbstream.providers.messages import Turns, call_arguments, put_parts, split_system

GEMINI_URL = "https://generativelanguage.googleapis.com"
INSTALL_HINT = "Gemini needs its SDK: pip install 'nbstream[gemini]' (then restart the kernel)"

FINISH: dict[str, WireFinish] = {"STOP": "stop", "MAX_TOKENS": "length"}
"""Gemini ``finishReason`` → nbstream's; any other reason (``SAFETY``, ``RECITATION`` …)
is an error that keeps the text so far."""


# fmt: off
PRICES = Prices(
    taken="2026-11-25",
    # https://ai.google.dev/gemini-api/docs/pricing, paid tier, prompts up to 200k tokens
    # (the 2.5 Pro rates double above that; not modelled), text in and out; output includes
    # thinking tokens; cached = context-cache reads. Not modelled: audio input rates,
    # storage of explicit caches, batch prices.
    table={  # ---------------------------------------- input, cached, output
        "gemini-2.5-pro":          _p(1.25, 0.125, 10.00),
        "gemini-2.5-flash":        _p(0.30, 0.03, 2.50),
        "gemini-2.5-flash-lite":   _p(0.10, 0.01, 0.40),
        "gemini-2.0-flash":        _p(0.10, 0.025, 0.40),
        "gemini-2.0-flash-lite":   _p(0.075, None, 0.30),
    },
)
# fmt: on
"""Gemini's prices, USD per million tokens."""

CAPABILITIES = Capabilities(
    default_model="gemini-2.5-flash",
    key_variables=("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    url_variables=("GOOGLE_GEMINI_BASE_URL",),
    default_if_set=("GEMINI_API_KEY",),
    budget=100_000,  # current models hold 1M tokens; the budget keeps cost in check
    conversation=True,
    schema=True,
    prices=PRICES,
    tools=True,
    images=True,
    documents=True,
    image_max_side=3072,  # Gemini scales larger images down to fit 3072×3072
    image_max_bytes=15 * 1024 * 1024,  # a request's inline data totals at most 20 MB
    thinking=True,  # thinking_config: the budget, and the thought summaries streamed
    count_tokens=lambda request: count_tokens(request),  # quote(): models.countTokens
)
"""``gemini:`` — the Gemini API (Google AI Studio keys)."""


def to_gemini(
    history: Turns, prompt: str, system: str | None = None
) -> tuple[str | None, list[dict[str, Any]]]:
    """``(system, contents)`` for the Gemini API: ``{"role": "user" | "model", "parts":
    [{"text": …}]}``, no empty part (the API rejects one); an empty answer is left out and
    the user turns around it merged, blank-line separated. A tool round becomes a model
    content with ``function_call`` parts and a user content of ``function_response`` parts."""
    system, turns = split_system(history, system)
    contents: list[dict[str, Any]] = []
    pending = [*turns, {"role": "user", "content": prompt}] if prompt or not turns else turns
    for message in pending:
        role = "model" if message["role"] == "assistant" else "user"
        text = message["content"]
        if message.get("tool_calls"):
            parts: list[dict[str, Any]] = [{"text": text}] if text.strip() else []
            parts += [
                {"function_call": {"name": c["name"], "args": call_arguments(c)}}
                for c in message["tool_calls"]
            ]
            contents.append({"role": "model", "parts": parts})
            continue
        if message["role"] == "tool":
            response = {"name": message["name"], "response": {"result": text}}
            part = {"function_response": response}
            last = contents[-1] if contents else None
            if last and last["role"] == "user" and "function_response" in last["parts"][0]:
                last["parts"].append(part)
            else:
                contents.append({"role": "user", "parts": [part]})
            continue
        if not text.strip():
            continue
        last = contents[-1] if contents else None
        if last is not None and last["role"] == role and "text" in last["parts"][0]:
            merged = f"{last['parts'][0]['text']}\n\n{text}"
            contents[-1] = {"role": role, "parts": [{"text": merged}]}
        else:
            contents.append({"role": role, "parts": [{"text": text}]})
    if not contents:  # an empty prompt and no history: the API still needs one content
        contents.append({"role": "user", "parts": [{"text": prompt or " "}]})
    return (system or None), contents


def gemini_part(part: str | Attachment) -> dict[str, Any]:
    """A Gemini content part: text, or inline data (images, PDFs)."""
    if isinstance(part, str):
        return {"text": part}
    return {"inline_data": {"mime_type": part.mime, "data": part.data}}


def function_declarations(tools: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``Request.tools`` as one Gemini tool of function declarations."""
    declared = [
        {
            "name": t["name"],
            "description": t.get("description") or "",
            "parameters_json_schema": t["parameters"],
        }
        for t in tools
    ]
    return [{"function_declarations": declared}]


def response_schema(wire: Mapping[str, Any]) -> dict[str, Any]:
    """The generation config that makes the answer JSON of ``wire``'s schema."""
    return {"response_mime_type": "application/json", "response_json_schema": wire["schema"]}


def request_config(request: Request) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``(contents, config)`` for ``request`` (``config``: a ``GenerateContentConfig``
    as a dict)."""
    system, contents = to_gemini(list(request.messages), request.prompt, request.system)
    if request.parts:
        texts = [{"role": c["role"], "text": c["parts"][-1].get("text")} for c in contents]
        put_parts(texts, request.prompt, request.parts, gemini_part, content="text")
        for content, merged in zip(contents, texts, strict=True):
            if isinstance(merged["text"], list):
                content["parts"] = [*content["parts"][:-1], *merged["text"]]
    config: dict[str, Any] = {}
    if system:
        config["system_instruction"] = system
    options = {
        "temperature": request.temperature,
        "top_p": request.top_p,
        "max_output_tokens": request.max_tokens,
        "stop_sequences": list(request.stop) if request.stop else None,
    }
    config.update({k: v for k, v in options.items() if v is not None})
    if request.schema is not None:
        config.update(response_schema(request.schema))
    if request.tools:
        config["tools"] = function_declarations(request.tools)
        config["automatic_function_calling"] = {"disable": True}  # nbstream runs them
    if request.thinking is not None:  # 0: no thinking (models that allow it)
        config["thinking_config"] = {
            "thinking_budget": int(request.thinking),
            "include_thoughts": request.thinking > 0,  # stream the thought summaries
        }
    return contents, config


def connection(base_url: str | None) -> tuple[str | None, str, Wire]:
    """Where ``gemini:`` requests go (``base_url``, else ``$GOOGLE_GEMINI_BASE_URL``, else
    the Gemini API: ``None``), the key (``$GEMINI_API_KEY`` or ``$GOOGLE_API_KEY``, one is
    required) and the :class:`Wire` that words errors."""
    env = "GEMINI_API_KEY" if os.environ.get("GEMINI_API_KEY") else "GOOGLE_API_KEY"
    api_key = os.environ.get(env)
    if not api_key:
        raise ProviderError(missing_key_message("GEMINI_API_KEY", "Gemini"))
    base_url = base_url or os.environ.get("GOOGLE_GEMINI_BASE_URL") or None
    wire = Wire("Gemini", env, mask_url(base_url or GEMINI_URL), (api_key,))
    return base_url, api_key, wire


class _Client:
    """A ``genai.Client`` on HTTP clients nbstream owns (closed by :meth:`close`)."""

    def __init__(self, base_url: str | None, api_key: str, connect_timeout: float) -> None:
        genai = _sdk()
        http = _http_library()
        timeout = http.Timeout(None, connect=connect_timeout)
        context = tls_context(http.__name__)
        transport = _transport(http, http.AsyncHTTPTransport(verify=context), connect_timeout)
        self.http = http.AsyncClient(transport=transport, timeout=timeout)
        self._sync = http.Client(verify=context, timeout=timeout)  # the SDK wants both
        options = genai.types.HttpOptions(
            base_url=base_url,
            httpx_client=self._sync,
            httpx_async_client=self.http,
            api_version="v1beta",
            retry_options=None,  # the engine retries (before the first token only)
        )
        self.aio = genai.Client(api_key=api_key, http_options=options).aio

    async def close(self) -> None:
        self._sync.close()
        await self.http.aclose()

    async def __aenter__(self) -> _Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def stream(request: Request) -> AsyncIterator[str | ToolCallDelta | ThinkingDelta | Final]:
    """Stream ``gemini:MODEL``."""
    genai = _sdk()
    base_url, api_key, wire = connection(request.base_url)
    contents, config = request_config(request)
    if "automatic_continuation" in genai.types.GenerateContentConfig.model_fields:
        # google-genai >= 3.6 re-sends a stream that broke ("continuation"): a second
        # request billed, a drop hidden. nbstream owns retries: the engine reports the cut.
        config["automatic_continuation"] = False
    key = ("gemini", base_url, api_key, request.connect_timeout)
    finish: str | None = None
    usage: dict[str, int] | None = None
    calls: list[ToolCall] = []
    try:
        async with sdk_client(
            key, lambda: _Client(base_url, api_key, request.connect_timeout)
        ) as client:
            chunks = await client.aio.models.generate_content_stream(
                model=request.model, contents=contents, config=config
            )
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    wire.connected = True
                    feedback = getattr(chunk, "prompt_feedback", None)
                    blocked = getattr(feedback, "block_reason", None)
                    if blocked:
                        raise ProviderError(f"Gemini refused the prompt: {_name(blocked)}")
                    for candidate in (chunk.candidates or [])[:1]:
                        for part in getattr(candidate.content, "parts", None) or []:
                            if part.text and part.thought:  # a thought summary
                                yield ThinkingDelta(part.text)
                            elif part.text:
                                yield part.text
                            called = getattr(part, "function_call", None)
                            if called is not None and called.name:
                                arguments = json.dumps(called.args or {}, ensure_ascii=False)
                                ident = called.id or f"call_{len(calls)}"
                                calls.append(ToolCall(ident, called.name, arguments))
                                yield ToolCallDelta(len(calls) - 1, called.name, arguments)
                        if candidate.finish_reason:
                            finish = _name(candidate.finish_reason)
                    if chunk.usage_metadata is not None:
                        usage = _usage(chunk.usage_metadata)
    except ProviderError:
        raise
    except _errors(genai) as exc:
        raise _error(exc, genai, wire) from None
    if finish is None:
        return  # no finishReason: the engine reports the truncation
    if finish not in FINISH:
        raise ProviderError(f"Gemini stopped the answer: {finish}")
    yield Final(FINISH[finish], usage, tool_calls=tuple(calls))


async def count_tokens(request: Request) -> int:
    """The prompt's input tokens by Gemini's ``countTokens`` (free; used by
    :func:`nbstream.quote` on sampled rows). The Gemini API counts contents only: the system
    prompt is counted as text ahead of them."""
    genai = _sdk()
    base_url, api_key, wire = connection(request.base_url)
    contents, _ = request_config(request)
    if request.system:
        contents = [{"role": "user", "parts": [{"text": request.system}]}, *contents]
    try:
        async with _Client(base_url, api_key, request.connect_timeout) as client:
            counted = await client.aio.models.count_tokens(model=request.model, contents=contents)
    except _errors(genai) as exc:
        raise _error(exc, genai, wire) from None
    if counted.total_tokens is None:
        raise ProviderError("Gemini's countTokens answered without totalTokens")
    return int(counted.total_tokens)


def _transport(http: Any, inner: Any, connect_timeout: float) -> Any:
    """``inner`` with nbstream's connect timeout and every response body checked to be
    UTF-8 as it streams. The SDK sets each request's timeout itself (none, by default: a
    server that never accepts would hang), and decodes with replacement characters, which
    would put ``\ufffd`` into the answer silently; this raises the ``UnicodeDecodeError``
    the other SDKs raise, after the text before the bad bytes."""

    class StrictBody(http.AsyncByteStream):  # type: ignore[misc]
        def __init__(self, stream: Any) -> None:
            self._stream = stream
            self._decoder = codecs.getincrementaldecoder("utf-8")("strict")

        async def __aiter__(self) -> AsyncIterator[bytes]:
            async for chunk in self._stream:
                try:
                    self._decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    if exc.start > 0:
                        yield chunk[: exc.start]  # the events before the bad bytes
                    raise
                yield chunk

        async def aclose(self) -> None:
            await self._stream.aclose()

    class StrictTransport(http.AsyncBaseTransport):  # type: ignore[misc]
        async def handle_async_request(self, request: Any) -> Any:
            timeouts = dict(request.extensions.get("timeout") or {})
            request.extensions["timeout"] = {**timeouts, "connect": connect_timeout}
            response = await inner.handle_async_request(request)
            return http.Response(
                status_code=response.status_code,
                headers=response.headers,
                stream=StrictBody(response.stream),
                extensions=response.extensions,
            )

        async def aclose(self) -> None:
            await inner.aclose()

    return StrictTransport()


def _usage(meta: Any) -> dict[str, int]:
    """Gemini's ``usageMetadata`` as nbstream's usage (thinking tokens are billed as output;
    cached tokens are part of the prompt count, as OpenAI reports them)."""
    output = (meta.candidates_token_count or 0) + (meta.thoughts_token_count or 0)
    usage = {"input_tokens": int(meta.prompt_token_count or 0), "output_tokens": int(output)}
    if meta.cached_content_token_count:
        usage["cached_input_tokens"] = int(meta.cached_content_token_count)
    if meta.thoughts_token_count:
        usage["reasoning_tokens"] = int(meta.thoughts_token_count)
    return usage


def _name(value: Any) -> str:
    """An SDK enum (or the plain string of a newer reason) as its wire name."""
    return str(getattr(value, "value", value))


def _errors(genai: Any) -> tuple[type[BaseException], ...]:
    return (genai.errors.APIError, ValueError, *transport_errors())


def _error(exc: BaseException, genai: Any, wire: Wire) -> ProviderError:
    """An exception from the SDK as a :class:`ProviderError` worded like the other providers'."""
    if isinstance(exc, genai.errors.APIError):
        status = int(exc.code or 0)
        message = str(exc.message or exc.status or "")
        response = getattr(exc, "response", None)
        if getattr(response, "status_code", None) == 200:  # an {"error": …} chunk in a stream
            return midstream_error(wire, message)
        headers = getattr(response, "headers", None)
        return wire.error(
            http_error_message(status, message, label=wire.label, env=wire.env),
            status=status,
            retry_after=retry_after(headers),
            retryable=status in RETRYABLE_STATUS,
        )
    if isinstance(exc, genai.errors.UnknownApiResponseError):
        return wire.error(f"{wire.label} sent a malformed event (not JSON)")
    if isinstance(exc, (UnicodeDecodeError, *transport_errors())):
        return wire_error(exc, wire)
    if wire.connected:
        return wire.error(dropped_message(wire.label, exc))
    return wire.error(f"{wire.label}: {type(exc).__name__}: {one_line(str(exc))}")


def _sdk() -> Any:
    try:
        return importlib.import_module("google.genai")
    except ImportError:
        raise ProviderError(INSTALL_HINT) from None


def _http_library() -> Any:
    """The HTTP library the SDK uses (``httpx2`` since google-genai 3, ``httpx`` before)."""
    for name in ("httpx2", "httpx"):
        with contextlib.suppress(ImportError):
            return importlib.import_module(name)
    raise ProviderError(INSTALL_HINT)
