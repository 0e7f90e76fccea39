"""The providers' batch services — OpenAI's Batch API and Anthropic's Message Batches — via
the official SDKs.

A batch answers within 24 hours instead of streaming, at about half the price.
:func:`submit` sends the requests (row ``i`` gets the ``custom_id`` ``row-i``) and returns
the provider's batch id; :func:`status` says how far it got; :func:`results` turns the
answers into :class:`~nbstream.response.Response` objects in row order (the services return
them in any order); :func:`cancel` stops it.

The request bodies are the streaming providers' own (``request_options`` of
:mod:`~nbstream.providers.openai_chat` and :mod:`~nbstream.providers.anthropic_messages`,
without the stream fields), so a row asks exactly what a streamed answer would; a schema
goes as ``response_format`` (OpenAI) or as one forced tool call whose input is the answer
(Anthropic). Keys, base URLs and error wording are the streaming providers' too
(``OPENAI_API_KEY`` / ``OPENAI_BASE_URL``, ``ANTHROPIC_API_KEY`` / ``ANTHROPIC_AUTH_TOKEN`` /
``ANTHROPIC_BASE_URL``; ``Request.base_url`` or ``base_url=`` override): a failed call raises
:class:`~nbstream.errors.ProviderError` with a one-line message that never holds a key, and
a failed row's ``Response.error`` is worded like a failed stream (``HTTP 429 from OpenAI:
…``). These are short control calls, so the SDKs' own retries (2) stay on.

Only ``openai`` and ``anthropic`` have a batch service (:data:`SUPPORTED`). A self-hosted
OpenAI-compatible cluster (vLLM …) has none: use it through ``--base-url`` with the normal
streaming mode.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, cast

from .errors import ProviderError
from .providers.anthropic_messages import FINISH as ANTHROPIC_FINISH
from .providers.anthropic_messages import _cache_tokens
from .providers.anthropic_messages import connection as anthropic_connection
from .providers.anthropic_messages import request_options as anthropic_options
from .providers.base import Request
from .providers.common import (
    Wire,
    http_client,
    http_error_message,
    one_line,
    sdk_error,
    sdk_exceptions,
    server_message,
)
from .providers.openai_chat import FINISH as OPENAI_FINISH
from .providers.openai_chat import connection as openai_connection
from .providers.openai_chat import request_options as openai_options
from .response import Response

if TYPE_CHECKING:
    import anthropic
    import openai

__all__ = ["SUPPORTED", "BatchState", "BatchStatus", "cancel", "results", "status", "submit"]

SUPPORTED = ("openai", "anthropic")
"""The providers with a batch service."""

BatchState = Literal["running", "ended", "cancelling", "cancelled", "expired", "failed"]
"""A batch's state, the same words for every provider."""

CONTROL_RETRIES = 2
"""The SDKs' own retries for the control calls (they are not streams)."""
CONTROL_READ_TIMEOUT = 120.0
"""Seconds to wait for a control call's answer (an upload or a results file may be big)."""
CONNECT_TIMEOUT = 10.0
"""Connect timeout of the calls that take no :class:`Request` (``Request``'s default)."""
EXPIRED = "expired before the batch service ran it"
ENDPOINT: Final = "/v1/chat/completions"
ENDED: frozenset[str] = frozenset({"ended", "cancelled", "expired", "failed"})
"""The states in which :func:`results` can be fetched."""

_OPENAI_STATES: dict[str, BatchState] = {
    "validating": "running",
    "in_progress": "running",
    "finalizing": "running",
    "completed": "ended",
    "cancelling": "cancelling",
    "cancelled": "cancelled",
    "expired": "expired",
    "failed": "failed",
}

_ANTHROPIC_STATUS = {
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


@dataclass(frozen=True)
class BatchStatus:
    """How far a batch got, the same way for every provider."""

    state: BatchState
    """``running`` (also while the provider validates or finalizes), ``ended`` (every row
    answered, with success or error), ``cancelling``, ``cancelled``, ``expired`` (the 24 h
    window passed) or ``failed`` (the provider rejected the batch as a whole: see ``error``).
    :func:`results` can be fetched once it is neither running nor cancelling."""
    provider_status: str
    """What the provider said, e.g. ``in_progress``, ``finalizing``, ``canceling``."""
    total: int
    succeeded: int
    failed: int
    """Rows that got an error (OpenAI counts its expired rows here too)."""
    cancelled: int
    """Rows cancelled or expired before they ran. Anthropic reports its row counts only once
    the batch has ended (``total`` is right from the start)."""
    error: str | None = None
    """Why the batch failed as a whole (OpenAI ``failed``: the input file's errors)."""


def _check(provider: str) -> None:
    if provider not in SUPPORTED:
        raise ValueError(
            f"no batch service for {provider!r}: only {' and '.join(SUPPORTED)} have one. "
            "A self-hosted OpenAI-compatible cluster (vLLM …) has no batch service: use it "
            "through --base-url with the normal streaming mode."
        )


# -- clients ---------------------------------------------------------------------------------


def _openai_client(
    base_url: str | None, connect_timeout: float
) -> tuple[openai.AsyncOpenAI, Wire, bool]:
    """The SDK client, the :class:`Wire` for error messages, and whether it is
    api.openai.com (which wants ``max_completion_tokens``)."""
    import openai

    base_url, api_key, wire = openai_connection(base_url)
    timeout = openai.Timeout(CONTROL_READ_TIMEOUT, connect=connect_timeout)
    client = openai.AsyncOpenAI(
        api_key=api_key,
        base_url=base_url,
        timeout=timeout,
        http_client=http_client(openai, timeout),
        max_retries=CONTROL_RETRIES,
    )
    return client, wire, base_url is None


def _anthropic_client(
    base_url: str | None, connect_timeout: float
) -> tuple[anthropic.AsyncAnthropic, Wire]:
    import anthropic

    base_url, api_key, auth_token, wire = anthropic_connection(base_url)
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


# -- submit ----------------------------------------------------------------------------------


def openai_line(index: int, request: Request, *, official: bool) -> dict[str, Any]:
    """Row ``index`` of an OpenAI batch input file: the streaming body without ``stream``."""
    body = openai_options(request, official=official)
    body.pop("stream", None)
    body.pop("stream_options", None)
    return {
        "custom_id": f"row-{index}",
        "method": "POST",
        "url": ENDPOINT,
        "body": {"model": request.model, **body},
    }


def anthropic_row(index: int, request: Request) -> dict[str, Any]:
    """Row ``index`` of an Anthropic Message Batch: the streaming body without ``stream``
    (the sampling fields the SDK keeps in ``extra_body`` go into the params)."""
    params = anthropic_options(request)
    params.pop("stream", None)
    params.update(params.pop("extra_body", None) or {})
    return {"custom_id": f"row-{index}", "params": {"model": request.model, **params}}


async def submit(
    provider: str, requests: Sequence[Request], *, metadata: dict[str, str] | None = None
) -> str:
    """Submit ``requests`` as one batch to ``provider``'s batch service; returns the
    provider's batch id.

    The custom_id of row ``i`` is ``f"row-{i}"``. Each row takes its model and options from
    its :class:`Request`; the base URL and the connect timeout come from ``requests[0]``.
    ``metadata`` is attached to an OpenAI batch (up to 16 string pairs); Anthropic's Message
    Batches have none, so it is not sent there. Raises ``ValueError`` for a provider without
    a batch service or no requests, :class:`~nbstream.errors.ProviderError` when the
    provider refuses.
    """
    _check(provider)
    if not requests:
        raise ValueError("a batch needs at least one request")
    first = requests[0]
    if provider == "openai":
        return await _openai_submit(requests, first, metadata)
    return await _anthropic_submit(requests, first)


async def _openai_submit(
    requests: Sequence[Request], first: Request, metadata: dict[str, str] | None
) -> str:
    import openai

    client, wire, official = _openai_client(first.base_url, first.connect_timeout)
    lines = [openai_line(i, r, official=official) for i, r in enumerate(requests)]
    data = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode()
    try:
        async with client:
            uploaded = await client.files.create(
                file=("nbstream-batch.jsonl", data, "application/jsonl"), purpose="batch"
            )
            batch = await client.batches.create(
                input_file_id=uploaded.id,
                endpoint=ENDPOINT,
                completion_window="24h",
                metadata=metadata,
            )
    except sdk_exceptions(openai) as exc:
        raise sdk_error(exc, openai, wire) from None
    return batch.id


async def _anthropic_submit(requests: Sequence[Request], first: Request) -> str:
    import anthropic

    client, wire = _anthropic_client(first.base_url, first.connect_timeout)
    rows = [anthropic_row(i, r) for i, r in enumerate(requests)]
    try:
        async with client:
            batch = await client.messages.batches.create(requests=cast(Any, rows))
    except sdk_exceptions(anthropic) as exc:
        raise sdk_error(exc, anthropic, wire) from None
    return batch.id


# -- status and cancel -----------------------------------------------------------------------


async def status(provider: str, batch_id: str, *, base_url: str | None = None) -> BatchStatus:
    """Where batch ``batch_id`` of ``provider`` stands (one control call)."""
    _check(provider)
    if provider == "openai":
        import openai

        client, wire, _ = _openai_client(base_url, CONNECT_TIMEOUT)
        try:
            async with client:
                batch = await client.batches.retrieve(batch_id)
        except sdk_exceptions(openai) as exc:
            raise sdk_error(exc, openai, wire) from None
        return _openai_status(batch, wire)

    import anthropic

    aclient, wire = _anthropic_client(base_url, CONNECT_TIMEOUT)
    try:
        async with aclient:
            message_batch = await aclient.messages.batches.retrieve(batch_id)
    except sdk_exceptions(anthropic) as exc:
        raise sdk_error(exc, anthropic, wire) from None
    return _anthropic_status(message_batch)


def _openai_status(batch: Any, wire: Wire) -> BatchStatus:
    state = _OPENAI_STATES.get(str(batch.status), "running")
    counts = batch.request_counts
    total = int(counts.total) if counts is not None else 0
    completed = int(counts.completed) if counts is not None else 0
    failed = int(counts.failed) if counts is not None else 0
    cancelled = max(0, total - completed - failed) if state in ("cancelled", "expired") else 0
    error = None
    if state == "failed":
        data = getattr(batch.errors, "data", None) or []
        parts = [
            (f"line {e.line}: " if getattr(e, "line", None) else "")
            + (e.message or e.code or "error")
            for e in data
        ]
        detail = "; ".join(parts) or "no reason given"
        error = str(wire.error(one_line(f"OpenAI rejected the batch: {detail}")))
    return BatchStatus(state, str(batch.status), total, completed, failed, cancelled, error)


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


async def cancel(provider: str, batch_id: str, *, base_url: str | None = None) -> None:
    """Ask ``provider`` to cancel batch ``batch_id``: rows not yet run are dropped, answered
    ones are kept (see :func:`results`). The batch goes through ``cancelling`` to
    ``cancelled``; cancelling a batch that has already ended does nothing."""
    _check(provider)
    if provider == "openai":
        import openai

        client, wire, _ = _openai_client(base_url, CONNECT_TIMEOUT)
        try:
            async with client:
                try:
                    await client.batches.cancel(batch_id)
                except openai.APIStatusError as exc:
                    if exc.status_code not in (400, 409):
                        raise
                    batch = await client.batches.retrieve(batch_id)  # already ended?
                    if _OPENAI_STATES.get(str(batch.status)) not in ENDED:
                        raise
        except sdk_exceptions(openai) as exc:
            raise sdk_error(exc, openai, wire) from None
        return

    import anthropic

    aclient, wire = _anthropic_client(base_url, CONNECT_TIMEOUT)
    try:
        async with aclient:
            await aclient.messages.batches.cancel(batch_id)
    except sdk_exceptions(anthropic) as exc:
        raise sdk_error(exc, anthropic, wire) from None


# -- results ---------------------------------------------------------------------------------


async def results(
    provider: str, batch_id: str, n: int, *, model_id: str, base_url: str | None = None
) -> list[Response]:
    """The answers of rows ``row-0`` … ``row-{n-1}`` of a batch that is no longer running,
    in row order, as :class:`~nbstream.response.Response` objects with ``model=model_id``.

    A row that succeeded has its text (with a schema: the answer's JSON), ``finish_reason``
    ``"stop"`` or ``"length"`` and ``usage``; a failed row is ``""`` with ``finish_reason
    "error"`` and the error in one line; a row cancelled before it ran (or missing) is ``""``
    with ``finish_reason "cancelled"``, one that expired ``"error"`` with error
    ``"expired before the batch service ran it"``. Raises
    :class:`~nbstream.errors.ProviderError` while the batch is still running or cancelling.
    """
    _check(provider)
    if provider == "openai":
        found = await _openai_results(batch_id, model_id, base_url)
    else:
        found = await _anthropic_results(batch_id, model_id, base_url)
    if isinstance(found, Response):  # the whole batch failed: every row says why
        return [_copy(found) for _ in range(n)]
    answers: list[Response] = []
    for i in range(n):
        answer = found.get(f"row-{i}")  # an empty Response is falsy: no `or` here
        if answer is None:  # cancelled before it ran (or never submitted)
            answer = Response("", finish_reason="cancelled", model=model_id)
        answers.append(answer)
    return answers


def _copy(response: Response) -> Response:
    return Response(
        response.text,
        finish_reason=response.finish_reason,
        error=response.error,
        model=response.model,
        usage=dict(response.usage) if response.usage is not None else None,
    )


def _still_running(label: str, batch_id: str, provider_status: str) -> ProviderError:
    return ProviderError(
        f"the {label} batch {batch_id} has no results yet: it is {provider_status}; "
        "wait until its status is no longer running or cancelling"
    )


def _failed(message: str, model_id: str) -> Response:
    return Response("", finish_reason="error", error=message, model=model_id)


def _row_error(wire: Wire, status: int, message: str, model_id: str) -> Response:
    text = http_error_message(status, message, label=wire.label, env=wire.env)
    return _failed(str(wire.error(text)), model_id)


async def _openai_results(
    batch_id: str, model_id: str, base_url: str | None
) -> dict[str, Response] | Response:
    import openai

    client, wire, _ = _openai_client(base_url, CONNECT_TIMEOUT)
    texts: list[str] = []
    try:
        async with client:
            batch = await client.batches.retrieve(batch_id)
            current = _openai_status(batch, wire)
            if current.state not in ENDED:
                raise _still_running("OpenAI", batch_id, str(batch.status))
            if current.state == "failed":
                return _failed(current.error or "OpenAI rejected the batch", model_id)
            for file_id in (batch.output_file_id, batch.error_file_id):
                if file_id:
                    content = await client.files.content(file_id)
                    texts.append(content.content.decode("utf-8"))
    except sdk_exceptions(openai) as exc:
        raise sdk_error(exc, openai, wire) from None
    found: dict[str, Response] = {}
    for text in texts:
        for raw in text.splitlines():
            if not raw.strip():
                continue
            line = json.loads(raw)
            if isinstance(line, dict) and isinstance(line.get("custom_id"), str):
                found[line["custom_id"]] = _openai_row(line, wire, model_id)
    return found


def _openai_row(line: Mapping[str, Any], wire: Wire, model_id: str) -> Response:
    """One line of an OpenAI batch output or error file as a :class:`Response`."""
    error = line.get("error")
    response = line.get("response")
    if isinstance(error, dict) or not isinstance(response, dict):
        error = error if isinstance(error, dict) else {}
        if error.get("code") == "batch_expired":
            return _failed(EXPIRED, model_id)
        detail = f"{error.get('code') or 'error'}: {error.get('message') or 'no message'}"
        return _failed(
            str(wire.error(f"OpenAI could not run this row: {one_line(detail)}")), model_id
        )
    status_code = int(response.get("status_code") or 0)
    body = response.get("body")
    if status_code != 200:
        reason = server_message(body) or f"status {status_code}"
        return _row_error(wire, status_code, reason, model_id)
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return _failed("OpenAI answered this row without a choice", model_id)
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    text = content if isinstance(content, str) else ""
    finish = str(choices[0].get("finish_reason") or "stop")
    if finish == "content_filter":
        return _failed(f"{wire.label} stopped the answer: content filter", model_id)
    usage = None
    raw_usage = body.get("usage") if isinstance(body, dict) else None
    if isinstance(raw_usage, dict):
        usage = {
            "input_tokens": int(raw_usage.get("prompt_tokens") or 0),
            "output_tokens": int(raw_usage.get("completion_tokens") or 0),
        }
        details = raw_usage.get("prompt_tokens_details")
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        if cached:  # part of prompt_tokens, billed at the cached price
            usage["cached_input_tokens"] = int(cached)
    return Response(
        text, finish_reason=OPENAI_FINISH.get(finish, "stop"), usage=usage, model=model_id
    )


async def _anthropic_results(
    batch_id: str, model_id: str, base_url: str | None
) -> dict[str, Response]:
    import anthropic

    client, wire = _anthropic_client(base_url, CONNECT_TIMEOUT)
    found: dict[str, Response] = {}
    try:
        async with client:
            batch = await client.messages.batches.retrieve(batch_id)
            if batch.processing_status != "ended":
                raise _still_running("Anthropic", batch_id, batch.processing_status)
            lines = await client.messages.batches.results(batch_id)
            async for item in lines:
                found[item.custom_id] = _anthropic_row(item.result, wire, model_id)
    except sdk_exceptions(anthropic) as exc:
        raise sdk_error(exc, anthropic, wire) from None
    return found


def _anthropic_row(result: Any, wire: Wire, model_id: str) -> Response:
    """One Message Batch result as a :class:`Response` (a tool call's input is the answer,
    as the streaming provider yields it)."""
    kind = getattr(result, "type", None)
    if kind == "canceled":
        return Response("", finish_reason="cancelled", model=model_id)
    if kind == "expired":
        return _failed(EXPIRED, model_id)
    if kind == "errored":
        error = getattr(getattr(result, "error", None), "error", None)
        err_type = str(getattr(error, "type", "") or "error")
        message = str(getattr(error, "message", "") or "no message")
        status_code = _ANTHROPIC_STATUS.get(err_type)
        if status_code is not None:
            return _row_error(wire, status_code, message, model_id)
        return _failed(str(wire.error(one_line(f"Anthropic: {err_type}: {message}"))), model_id)
    message_obj = getattr(result, "message", None)
    if kind != "succeeded" or message_obj is None:
        return _failed(f"Anthropic sent an unknown batch result ({kind})", model_id)
    texts: list[str] = []
    tool_input: list[str] = []
    for block in message_obj.content or []:
        if block.type == "text":
            texts.append(block.text)
        elif block.type == "tool_use":
            tool_input.append(json.dumps(block.input, ensure_ascii=False))
    stop_reason = message_obj.stop_reason
    if stop_reason == "refusal":
        return _failed("Anthropic stopped the answer: the model refused", model_id)
    usage = None
    if message_obj.usage is not None:
        read, write = _cache_tokens(message_obj.usage.model_dump())
        usage = {
            "input_tokens": int(message_obj.usage.input_tokens or 0) + read + write,
            "output_tokens": int(message_obj.usage.output_tokens or 0),
        }
        if read:
            usage["cached_input_tokens"] = read
    text = "".join(tool_input) if tool_input else "".join(texts)
    finish = ANTHROPIC_FINISH.get(stop_reason or "end_turn", "stop")
    return Response(text, finish_reason=finish, usage=usage, model=model_id)
