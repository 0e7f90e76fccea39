"""Anthropic's Message Batches (``anthropic:``) via the official SDK: create, retrieve, the
results JSONL, cancel.

The rows' params are the streaming provider's own (:func:`~.anthropic_messages.request_options`
without ``stream``; a schema is one forced tool call whose input is the answer); keys, base
URLs and error wording are the streaming provider's too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from nbstream.providers.anthropic_messages import FINISH, cache_tokens, connection, request_options
from nbstream.providers.base import BatchAnswer, Request
from nbstream.providers.batches import (
    CONNECT_TIMEOUT,
    CONTROL_READ_TIMEOUT,
    CONTROL_RETRIES,
    EXPIRED,
    BatchLimits,
    BatchState,
    BatchStatus,
    failed,
    row_error,
    still_running,
)
from nbstream.providers.common import Wire, http_client, one_line, sdk_error, sdk_exceptions

if TYPE_CHECKING:
    import anthropic

LIMITS = BatchLimits(rows=100_000, bytes=256 * 1000 * 1000)
"""Message Batches' limits: 100,000 requests or 256 MB per batch, whichever comes first."""
ENVELOPE = 64
"""Bytes of the body around the rows (``{"requests": [...]}``), counted on the first row."""

STATUS_OF_ERROR = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "gateway_timeout_error": 504,
    "overloaded_error": 529,
}
"""Anthropic error types → the HTTP status the Messages API answers them with (a batch row's
error carries the type only)."""


def _anthropic_client(
    base_url: str | None, connect_timeout: float
) -> tuple[anthropic.AsyncAnthropic, Wire]:
    import anthropic

    base_url, api_key, auth_token, wire = connection(base_url)
    timeout = anthropic.Timeout(CONTROL_READ_TIMEOUT, connect=connect_timeout)
    client = anthropic.AsyncAnthropic(
        api_key=api_key,
        auth_token=None if api_key else auth_token,
        base_url=base_url,
        timeout=timeout,
        http_client=http_client(anthropic, timeout),
        max_retries=CONTROL_RETRIES,
    )
    return client, wire


def row_of(index: int, request: Request) -> dict[str, Any]:
    """Row ``index`` of an Anthropic Message Batch: the streaming body without ``stream``
    (the sampling fields the SDK keeps in ``extra_body`` go into the params)."""
    params = request_options(request)
    params.pop("stream", None)
    params.update(params.pop("extra_body", None) or {})
    return {"custom_id": f"row-{index}", "params": {"model": request.model, **params}}


def sizes(requests: Sequence[Request], first: Request) -> list[int]:
    """Each row's bytes in the request body, at most: ASCII-escaped JSON with spaces (the
    SDK sends it no larger), a separator, and the body's envelope on the first row."""
    found = [len(json.dumps(row_of(i, r))) + 2 for i, r in enumerate(requests)]
    if found:
        found[0] += ENVELOPE
    return found


async def submit(
    requests: Sequence[Request], first: Request, metadata: dict[str, str] | None
) -> str:
    """Create the Message Batch (Message Batches take no metadata); its id."""
    import anthropic

    client, wire = _anthropic_client(first.base_url, first.connect_timeout)
    rows = [row_of(i, r) for i, r in enumerate(requests)]
    try:
        async with client:
            batch = await client.messages.batches.create(requests=cast(Any, rows))
    except sdk_exceptions(anthropic) as exc:
        raise sdk_error(exc, anthropic, wire) from None
    return batch.id


async def status(batch_id: str, base_url: str | None) -> BatchStatus:
    """Where batch ``batch_id`` stands."""
    import anthropic

    client, wire = _anthropic_client(base_url, CONNECT_TIMEOUT)
    try:
        async with client:
            message_batch = await client.messages.batches.retrieve(batch_id)
    except sdk_exceptions(anthropic) as exc:
        raise sdk_error(exc, anthropic, wire) from None
    return _anthropic_status(message_batch)


def _anthropic_status(batch: Any) -> BatchStatus:
    counts = batch.request_counts
    processing = str(batch.processing_status)
    state: BatchState = "running"
    if processing == "canceling":
        state = "cancelling"
    elif processing == "ended":
        state = "ended"
        if batch.cancel_initiated_at is not None:
            state = "cancelled"
        elif counts.expired:
            state = "expired"
    total = counts.processing + counts.succeeded + counts.errored + counts.canceled + counts.expired
    return BatchStatus(
        state,
        processing,
        int(total),
        int(counts.succeeded),
        int(counts.errored),
        int(counts.canceled + counts.expired),
    )


async def cancel(batch_id: str, base_url: str | None) -> None:
    """Cancel batch ``batch_id``."""
    import anthropic

    client, wire = _anthropic_client(base_url, CONNECT_TIMEOUT)
    try:
        async with client:
            await client.messages.batches.cancel(batch_id)
    except sdk_exceptions(anthropic) as exc:
        raise sdk_error(exc, anthropic, wire) from None


async def results(batch_id: str, base_url: str | None) -> dict[str, BatchAnswer]:
    """The answers by ``custom_id``."""
    import anthropic

    client, wire = _anthropic_client(base_url, CONNECT_TIMEOUT)
    found: dict[str, BatchAnswer] = {}
    try:
        async with client:
            batch = await client.messages.batches.retrieve(batch_id)
            if batch.processing_status != "ended":
                raise still_running("Anthropic", batch_id, batch.processing_status)
            lines = await client.messages.batches.results(batch_id)
            async for item in lines:
                found[item.custom_id] = _anthropic_row(item.result, wire)
    except sdk_exceptions(anthropic) as exc:
        raise sdk_error(exc, anthropic, wire) from None
    return found


def _anthropic_row(result: Any, wire: Wire) -> BatchAnswer:
    """One Message Batch result (a tool call's input is the answer,
    as the streaming provider yields it)."""
    kind = getattr(result, "type", None)
    if kind == "canceled":
        return BatchAnswer("", finish_reason="cancelled")
    if kind == "expired":
        return failed(EXPIRED)
    if kind == "errored":
        error = getattr(getattr(result, "error", None), "error", None)
        err_type = str(getattr(error, "type", "") or "error")
        message = str(getattr(error, "message", "") or "no message")
        status_code = STATUS_OF_ERROR.get(err_type)
        if status_code is not None:
            return row_error(wire, status_code, message)
        return failed(str(wire.error(one_line(f"Anthropic: {err_type}: {message}"))))
    message_obj = getattr(result, "message", None)
    if kind != "succeeded" or message_obj is None:
        return failed(f"Anthropic sent an unknown batch result ({kind})")
    texts: list[str] = []
    tool_input: list[str] = []
    for block in message_obj.content or []:
        if block.type == "text":
            texts.append(block.text)
        elif block.type == "tool_use":
            tool_input.append(json.dumps(block.input, ensure_ascii=False))
    stop_reason = message_obj.stop_reason
    if stop_reason == "refusal":
        return failed("Anthropic stopped the answer: the model refused")
    usage = None
    if message_obj.usage is not None:
        read, write = cache_tokens(message_obj.usage.model_dump())
        usage = {
            "input_tokens": int(message_obj.usage.input_tokens or 0) + read + write,
            "output_tokens": int(message_obj.usage.output_tokens or 0),
        }
        if read:
            usage["cached_input_tokens"] = read
    text = "".join(tool_input) if tool_input else "".join(texts)
    finish = FINISH.get(stop_reason or "end_turn", "stop")
    return BatchAnswer(text, finish_reason=finish, usage=usage)
