"""The providers' batch services, from the batch layer's side: submit, status, cancel and
results for any provider that declares one (``Capabilities.batch``: OpenAI's Batch API and
Anthropic's Message Batches are built in, :mod:`nbstream.providers.openai_batch` and
:mod:`nbstream.providers.anthropic_batch`).

A batch answers within 24 hours instead of streaming, at about half the price.
:func:`submit` sends the requests (row ``i`` gets the ``custom_id`` ``row-i``) and returns
the provider's batch id; :func:`status` says how far it got; :func:`results` turns the
answers into :class:`~nbstream.response.Response` objects in row order (the services return
them in any order); :func:`cancel` stops it.

A row asks exactly what a streamed answer would (the provider's own request body), with the
streaming provider's keys, base URLs and error wording: a failed call raises
:class:`~nbstream.errors.ProviderError` with a one-line message that never holds a key, and
a failed row's ``Response.error`` is worded like a failed stream (``HTTP 429 from OpenAI:
…``). A self-hosted OpenAI-compatible cluster (vLLM …) has no batch service: use it through
``--base-url`` with the normal streaming mode.
"""

from __future__ import annotations

from collections.abc import Sequence

from nbstream.providers.base import BatchAnswer, Request
from nbstream.providers.batches import (
    ENDED,
    BatchLimits,
    BatchState,
    BatchStatus,
    service,
    with_batch_service,
)
from nbstream.response import Response

__all__ = [
    "ENDED",
    "BatchLimits",
    "BatchState",
    "BatchStatus",
    "cancel",
    "limits",
    "results",
    "sizes",
    "status",
    "submit",
    "with_batch_service",
]


def limits(provider: str) -> BatchLimits:
    """The most one batch of ``provider``'s service may hold (rows and bytes)."""
    return service(provider).LIMITS


def sizes(provider: str, requests: Sequence[Request]) -> list[int]:
    """Each request's encoded size in a batch of ``provider`` (bytes, at least what
    :func:`submit` sends for it)."""
    return service(provider).sizes(requests, requests[0]) if requests else []


async def submit(
    provider: str, requests: Sequence[Request], *, metadata: dict[str, str] | None = None
) -> str:
    """Submit ``requests`` as one batch to ``provider``'s batch service; returns the
    provider's batch id.

    The custom_id of row ``i`` is ``f"row-{i}"``. Each row takes its model and options from
    its :class:`Request`; the base URL and the connect timeout come from ``requests[0]``.
    ``metadata`` is attached where the service keeps it (OpenAI: up to 16 string pairs;
    Anthropic's Message Batches have none). Raises ``ValueError`` for a provider without
    a batch service or no requests, :class:`~nbstream.errors.ProviderError` when the
    provider refuses.
    """
    batches = service(provider)
    if not requests:
        raise ValueError("a batch needs at least one request")
    return await batches.submit(requests, requests[0], metadata)


async def status(provider: str, batch_id: str, *, base_url: str | None = None) -> BatchStatus:
    """Where batch ``batch_id`` of ``provider`` stands (one control call)."""
    return await service(provider).status(batch_id, base_url)


async def cancel(provider: str, batch_id: str, *, base_url: str | None = None) -> None:
    """Ask ``provider`` to cancel batch ``batch_id``: rows not yet run are dropped, answered
    ones are kept (see :func:`results`). The batch goes through ``cancelling`` to
    ``cancelled``; cancelling a batch that has already ended does nothing."""
    await service(provider).cancel(batch_id, base_url)


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
    found = await service(provider).results(batch_id, base_url)
    if isinstance(found, BatchAnswer):  # the whole batch failed: every row says why
        return [_response(found, model_id) for _ in range(n)]
    missing = BatchAnswer("", finish_reason="cancelled")  # cancelled before it ran
    return [_response(found.get(f"row-{i}", missing), model_id) for i in range(n)]


def _response(answer: BatchAnswer, model_id: str) -> Response:
    return Response(
        answer.text,
        finish_reason=answer.finish_reason,
        error=answer.error,
        model=model_id,
        usage=dict(answer.usage) if answer.usage is not None else None,
    )
