"""Anthropic Messages streaming (``anthropic:``), via the official SDK."""

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

DEFAULT_MAX_TOKENS = 4096
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "stop",
    "max_tokens": "length",
    "pause_turn": "stop",
    "model_context_window_exceeded": "length",
}


async def stream(request: Request) -> AsyncIterator[str | Final]:
    """Stream ``anthropic:MODEL``."""
    import anthropic

    api_key = os.environ.get("ANTHROPIC_API_KEY")
    auth_token = os.environ.get("ANTHROPIC_AUTH_TOKEN")
    if not api_key and not auth_token:
        raise ProviderError(missing_key_message("ANTHROPIC_API_KEY", "Anthropic"))
    base_url = request.base_url or os.environ.get("ANTHROPIC_BASE_URL") or None
    client = anthropic.AsyncAnthropic(
        api_key=api_key,
        auth_token=None if api_key else auth_token,
        base_url=base_url,
        timeout=max(30.0, request.timeout * 2),
    )
    options: dict = {}
    if request.system:
        options["system"] = request.system
    if request.temperature is not None:
        # anthropic>=2 dropped the sampling keywords; older models still accept the field.
        options["extra_body"] = {"temperature": request.temperature}
    options.update(request.extra)

    input_tokens = output_tokens = None
    stop_reason: str | None = None
    saw_stop = False
    connected = False  # the response started: a connection error now means a dropped stream
    try:
        async with client:
            events = await client.messages.create(
                model=request.model,
                max_tokens=request.max_tokens or DEFAULT_MAX_TOKENS,
                messages=[{"role": "user", "content": request.prompt}],
                stream=True,
                **options,
            )
            async with events:
                connected = True
                async for event in events:
                    kind = event.type
                    if kind == "content_block_delta":
                        if event.delta.type == "text_delta" and event.delta.text:
                            yield event.delta.text
                    elif kind == "message_start":
                        input_tokens = event.message.usage.input_tokens
                    elif kind == "message_delta":
                        stop_reason = event.delta.stop_reason or stop_reason
                        output_tokens = event.usage.output_tokens
                    elif kind == "message_stop":
                        saw_stop = True
    except anthropic.APIStatusError as exc:
        message = server_message(exc.body) or exc.message
        raise ProviderError(
            redact(
                http_error_message(
                    exc.status_code, message, label="Anthropic", env="ANTHROPIC_API_KEY"
                ),
                api_key,
                auth_token,
            )
        ) from None
    except anthropic.APITimeoutError:
        raise ProviderError("Anthropic did not answer in time") from None
    except anthropic.APIConnectionError as exc:
        if connected:
            raise ProviderError(
                redact(dropped_message("Anthropic", exc.__cause__ or exc), api_key, auth_token)
            ) from None
        where = base_url or "https://api.anthropic.com"
        cause = one_line(str(exc.__cause__ or exc), 120)
        raise ProviderError(
            redact(f"Could not reach Anthropic at {where}: {cause}", api_key, auth_token)
        ) from None
    except json.JSONDecodeError as exc:
        raise ProviderError(f"Anthropic sent a malformed event (not JSON): {exc.msg}") from None
    except transport_errors() as exc:  # the SDK lets these out unwrapped mid-stream
        raise ProviderError(
            redact(dropped_message("Anthropic", exc), api_key, auth_token)
        ) from None
    except anthropic.AnthropicError as exc:
        raise ProviderError(
            redact(f"Anthropic: {one_line(str(exc))}", api_key, auth_token)
        ) from None

    if not saw_stop:
        return  # no message_stop: the engine reports the truncation
    if stop_reason == "refusal":
        raise ProviderError("Anthropic stopped the answer: the model refused")
    usage = None
    if input_tokens is not None or output_tokens is not None:
        usage = {"input_tokens": input_tokens or 0, "output_tokens": output_tokens or 0}
    yield Final(_FINISH.get(stop_reason or "end_turn", "stop"), usage)  # type: ignore[arg-type]
