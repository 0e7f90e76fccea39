"""OpenAI's Batch API (``openai:``) via the official SDK: a JSONL file upload, ``/v1/batches``,
the output and error files mapped back by ``custom_id``.

The rows' bodies are the streaming provider's own (:func:`~.openai_chat.request_options`
without the stream fields), so a row asks exactly what a streamed answer would; keys, base
URLs and error wording are the streaming provider's too (:func:`~.openai_chat.connection`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from nbstream.providers.base import BatchAnswer, Request
from nbstream.providers.batches import (
    CONNECT_TIMEOUT,
    CONTROL_READ_TIMEOUT,
    CONTROL_RETRIES,
    ENDED,
    EXPIRED,
    BatchLimits,
    BatchState,
    BatchStatus,
    failed,
    row_error,
    still_running,
)
from nbstream.providers.common import (
    Wire,
    http_client,
    one_line,
    sdk_error,
    sdk_exceptions,
    server_message,
)
from nbstream.providers.openai_chat import FINISH, connection, request_options

if TYPE_CHECKING:
    import openai

ENDPOINT: Final = "/v1/chat/completions"
LIMITS: Final = BatchLimits(rows=50_000, bytes=200 * 1024 * 1024)
"""The Batch API's limits: 50,000 requests and a 200 MB input file per batch."""

STATES: dict[str, BatchState] = {
    "validating": "running",
    "in_progress": "running",
    "finalizing": "running",
    "completed": "ended",
    "cancelling": "cancelling",
    "cancelled": "cancelled",
    "expired": "expired",
    "failed": "failed",
}


def _openai_client(
    base_url: str | None, connect_timeout: float
) -> tuple[openai.AsyncOpenAI, Wire, bool]:
    """The SDK client, the :class:`Wire` for error messages, and whether it is
    api.openai.com (which wants ``max_completion_tokens``)."""
    import openai

    base_url, api_key, wire = connection(base_url)
    timeout = openai.Timeout(CONTROL_READ_TIMEOUT, connect=connect_timeout)
    client = openai.AsyncOpenAI(
        api_key=api_key,
        base_url=base_url,
        timeout=timeout,
        http_client=http_client(openai, timeout),
        max_retries=CONTROL_RETRIES,
    )
    return client, wire, base_url is None


def line_of(index: int, request: Request, *, official: bool) -> dict[str, Any]:
    """Row ``index`` of an OpenAI batch input file: the streaming body without ``stream``."""
    body = request_options(request, official=official)
    body.pop("stream", None)
    body.pop("stream_options", None)
    return {
        "custom_id": f"row-{index}",
        "method": "POST",
        "url": ENDPOINT,
        "body": {"model": request.model, **body},
    }


def _encoded(index: int, request: Request, official: bool) -> bytes:
    line = line_of(index, request, official=official)
    return (json.dumps(line, ensure_ascii=False) + "\n").encode()


def sizes(requests: Sequence[Request], first: Request) -> list[int]:
    """Each row's bytes in the input file (exactly what :func:`submit` uploads)."""
    official = not (first.base_url or os.environ.get("OPENAI_BASE_URL"))  # as connection()
    return [len(_encoded(i, r, official)) for i, r in enumerate(requests)]


async def submit(
    requests: Sequence[Request], first: Request, metadata: dict[str, str] | None
) -> str:
    """Upload the rows as a JSONL file and create the batch; its id."""
    import openai

    client, wire, official = _openai_client(first.base_url, first.connect_timeout)
    data = b"".join(_encoded(i, r, official) for i, r in enumerate(requests))
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


async def status(batch_id: str, base_url: str | None) -> BatchStatus:
    """Where batch ``batch_id`` stands."""
    import openai

    client, wire, _ = _openai_client(base_url, CONNECT_TIMEOUT)
    try:
        async with client:
            batch = await client.batches.retrieve(batch_id)
    except sdk_exceptions(openai) as exc:
        raise sdk_error(exc, openai, wire) from None
    return _openai_status(batch, wire)


def _openai_status(batch: Any, wire: Wire) -> BatchStatus:
    state = STATES.get(str(batch.status), "running")
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


async def cancel(batch_id: str, base_url: str | None) -> None:
    """Cancel batch ``batch_id`` (nothing if it has already ended)."""
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
                if STATES.get(str(batch.status)) not in ENDED:
                    raise
    except sdk_exceptions(openai) as exc:
        raise sdk_error(exc, openai, wire) from None


async def results(batch_id: str, base_url: str | None) -> dict[str, BatchAnswer] | BatchAnswer:
    """The answers by ``custom_id`` (from the output and error files)."""
    import openai

    client, wire, _ = _openai_client(base_url, CONNECT_TIMEOUT)
    texts: list[str] = []
    try:
        async with client:
            batch = await client.batches.retrieve(batch_id)
            current = _openai_status(batch, wire)
            if current.state not in ENDED:
                raise still_running("OpenAI", batch_id, str(batch.status))
            if current.state == "failed":
                return failed(current.error or "OpenAI rejected the batch")
            for file_id in (batch.output_file_id, batch.error_file_id):
                if file_id:
                    content = await client.files.content(file_id)
                    texts.append(content.content.decode("utf-8"))
    except sdk_exceptions(openai) as exc:
        raise sdk_error(exc, openai, wire) from None
    found: dict[str, BatchAnswer] = {}
    for text in texts:
        for raw in text.splitlines():
            if not raw.strip():
                continue
            line = json.loads(raw)
            if isinstance(line, dict) and isinstance(line.get("custom_id"), str):
                found[line["custom_id"]] = _openai_row(line, wire)
    return found


def _openai_row(line: Mapping[str, Any], wire: Wire) -> BatchAnswer:
    """One line of an OpenAI batch output or error file."""
    error = line.get("error")
    response = line.get("response")
    if isinstance(error, dict) or not isinstance(response, dict):
        error = error if isinstance(error, dict) else {}
        if error.get("code") == "batch_expired":
            return failed(EXPIRED)
        detail = f"{error.get('code') or 'error'}: {error.get('message') or 'no message'}"
        return failed(str(wire.error(f"OpenAI could not run this row: {one_line(detail)}")))
    status_code = int(response.get("status_code") or 0)
    body = response.get("body")
    if status_code != 200:
        reason = server_message(body) or f"status {status_code}"
        return row_error(wire, status_code, reason)
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return failed("OpenAI answered this row without a choice")
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    text = content if isinstance(content, str) else ""
    finish = str(choices[0].get("finish_reason") or "stop")
    if finish == "content_filter":
        return failed(f"{wire.label} stopped the answer: content filter")
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
    return BatchAnswer(text, finish_reason=FINISH.get(finish, "stop"), usage=usage)
