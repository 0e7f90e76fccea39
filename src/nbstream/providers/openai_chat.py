"""OpenAI chat-completions streaming (``openai:`` and ``ollama:``), via the official SDK.

Any OpenAI-compatible server (vLLM, llama.cpp server, LM Studio, Ollama) works through
``--base-url`` or ``OPENAI_BASE_URL``.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator

from .base import Final, ProviderError, Request
from .common import (
    dropped_message,
    http_error_message,
    missing_key_message,
    one_line,
    redact,
    server_message,
    transport_errors,
)

OLLAMA_DEFAULT_URL = "http://localhost:11434/v1"
_FINISH = {"stop": "stop", "length": "length", "tool_calls": "stop", "function_call": "stop"}


def _ollama_url() -> str:
    host = os.environ.get("OLLAMA_HOST")
    if not host:
        return OLLAMA_DEFAULT_URL
    if "://" not in host:
        host = "http://" + host
    return host.rstrip("/") + "/v1"


async def stream(request: Request) -> AsyncIterator[str | Final]:
    """Stream ``openai:MODEL``."""
    base_url = request.base_url or os.environ.get("OPENAI_BASE_URL") or None
    api_key = os.environ.get("OPENAI_API_KEY")
    if not api_key:
        if base_url is None:
            raise ProviderError(missing_key_message("OPENAI_API_KEY", "OpenAI"))
        api_key = "no-key"  # self-hosted OpenAI-compatible servers usually need none
    async for item in _stream(request, base_url=base_url, api_key=api_key, label="OpenAI"):
        yield item


async def stream_ollama(request: Request) -> AsyncIterator[str | Final]:
    """Stream ``ollama:MODEL`` from a local Ollama server (OpenAI-compatible, no key)."""
    base_url = request.base_url or _ollama_url()
    async for item in _stream(request, base_url=base_url, api_key="ollama", label="Ollama"):
        yield item


async def _stream(
    request: Request, *, base_url: str | None, api_key: str, label: str
) -> AsyncIterator[str | Final]:
    import openai

    client = openai.AsyncOpenAI(
        api_key=api_key, base_url=base_url, timeout=max(30.0, request.timeout * 2)
    )
    messages = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    messages.append({"role": "user", "content": request.prompt})
    options: dict = {"stream_options": {"include_usage": True}}
    if request.temperature is not None:
        options["temperature"] = request.temperature
    if request.max_tokens is not None:
        # api.openai.com wants max_completion_tokens; compatible servers know max_tokens.
        key = "max_tokens" if base_url else "max_completion_tokens"
        options[key] = request.max_tokens
    options.update(request.extra)

    finish_reason: str | None = None
    usage: dict | None = None
    connected = False  # the response started: a connection error now means a dropped stream
    try:
        async with client:
            chunks = await client.chat.completions.create(
                model=request.model, messages=messages, stream=True, **options
            )
            async with chunks:
                connected = True
                async for chunk in chunks:
                    if chunk.usage is not None:
                        usage = {
                            "input_tokens": chunk.usage.prompt_tokens,
                            "output_tokens": chunk.usage.completion_tokens,
                        }
                    for choice in chunk.choices:
                        if choice.delta is not None and choice.delta.content:
                            yield choice.delta.content
                        if choice.finish_reason:
                            finish_reason = choice.finish_reason
    except openai.APIStatusError as exc:
        message = server_message(exc.body) or exc.message
        raise ProviderError(
            redact(
                http_error_message(exc.status_code, message, label=label, env="OPENAI_API_KEY"),
                api_key,
            )
        ) from None
    except openai.APITimeoutError:
        raise ProviderError(
            f"{label} did not answer in time ({base_url or 'api.openai.com'})"
        ) from None
    except openai.APIConnectionError as exc:
        if connected:
            raise ProviderError(
                redact(dropped_message(label, exc.__cause__ or exc), api_key)
            ) from None
        where = base_url or "https://api.openai.com/v1"
        cause = one_line(str(exc.__cause__ or exc), 120)
        raise ProviderError(
            redact(f"Could not reach {label} at {where}: {cause} — is the server running?", api_key)
        ) from None
    except json.JSONDecodeError as exc:
        raise ProviderError(f"{label} sent a malformed event (not JSON): {exc.msg}") from None
    except transport_errors() as exc:
        raise ProviderError(redact(dropped_message(label, exc), api_key)) from None
    except openai.OpenAIError as exc:
        raise ProviderError(redact(f"{label}: {one_line(str(exc))}", api_key)) from None

    if finish_reason is None:
        return  # no terminal event: the engine reports the truncation
    if finish_reason == "content_filter":
        raise ProviderError(f"{label} stopped the answer: content filter")
    yield Final(_FINISH.get(finish_reason, "stop"), usage)  # type: ignore[arg-type]
