"""Providers' batch services, one shape for all: a batch answers within 24 hours instead of
streaming, at about half the price.

A provider with a batch service names its module in ``Capabilities.batch``; the module
provides the four functions of :class:`BatchService` (``openai_batch``, ``anthropic_batch``
here). Row ``i`` of a batch has the ``custom_id`` ``row-i``. The batch layer
(:mod:`nbstream.batch.service`) turns the rows' :class:`~nbstream.providers.base.BatchAnswer`
into responses, in row order.

These are short control calls, so the SDKs' own retries (:data:`CONTROL_RETRIES`) stay on.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, cast

from nbstream.providers import capabilities, registered
from nbstream.providers.base import BatchAnswer, ProviderError, Request
from nbstream.providers.common import Wire, http_error_message

BatchState = Literal["running", "ended", "cancelling", "cancelled", "expired", "failed"]
"""A batch's state, the same words for every provider."""

CONTROL_RETRIES = 2
"""The SDKs' own retries for the control calls (they are not streams)."""
CONTROL_READ_TIMEOUT = 120.0
"""Seconds to wait for a control call's answer (an upload or a results file may be big)."""
CONNECT_TIMEOUT = 10.0
"""Connect timeout of the calls that take no :class:`Request` (``Request``'s default)."""
EXPIRED = "expired before the batch service ran it"
ENDED: frozenset[str] = frozenset({"ended", "cancelled", "expired", "failed"})
"""The states in which results can be fetched."""


@dataclass(frozen=True)
class BatchLimits:
    """The most one provider batch may hold; :func:`nbstream.map` splits bigger ones."""

    rows: int
    bytes: int
    """The encoded rows' size (OpenAI: the JSONL input file; Anthropic: the request body)."""


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


class BatchService(Protocol):
    """What a provider's batch-service module provides (``Capabilities.batch`` names it)."""

    LIMITS: BatchLimits
    """The service's own limits for one batch."""

    def sizes(self, requests: Sequence[Request], first: Request) -> list[int]:
        """Each row's encoded size in bytes, at least what :meth:`submit` sends for it
        (with the custom id of its position in ``requests``, the widest it can get)."""
        ...

    async def submit(
        self, requests: Sequence[Request], first: Request, metadata: dict[str, str] | None
    ) -> str:
        """Send ``requests`` as one batch (row ``i``: ``custom_id`` ``row-i``); the batch id.
        ``first`` says where (base URL, connect timeout)."""
        ...

    async def status(self, batch_id: str, base_url: str | None) -> BatchStatus:
        """Where the batch stands (one control call)."""
        ...

    async def cancel(self, batch_id: str, base_url: str | None) -> None:
        """Ask to cancel; cancelling a batch that has already ended does nothing."""
        ...

    async def results(
        self, batch_id: str, base_url: str | None
    ) -> dict[str, BatchAnswer] | BatchAnswer:
        """The answers by ``custom_id`` of a batch that is no longer running (one answer
        for all rows when the batch failed as a whole); raises :class:`ProviderError`
        while it is still running or cancelling."""
        ...


def with_batch_service() -> list[str]:
    """The providers that have a batch service."""
    return [name for name, caps in registered() if caps.batch]


def service(provider: str) -> BatchService:
    """``provider``'s batch service; ``ValueError`` saying which providers have one."""
    module = capabilities(provider).batch
    if not module:
        raise ValueError(
            f"no batch service for {provider!r}: only {' and '.join(with_batch_service())} "
            "have one. A self-hosted OpenAI-compatible cluster (vLLM …) has no batch service: "
            "use it through --base-url with the normal streaming mode."
        )
    return cast(BatchService, importlib.import_module(module))


def still_running(label: str, batch_id: str, provider_status: str) -> ProviderError:
    return ProviderError(
        f"the {label} batch {batch_id} has no results yet: it is {provider_status}; "
        "wait until its status is no longer running or cancelling"
    )


def failed(message: str) -> BatchAnswer:
    """A row (or a whole batch) that failed with ``message``."""
    return BatchAnswer("", finish_reason="error", error=message)


def row_error(wire: Wire, status: int, message: str) -> BatchAnswer:
    """A row the service answered with HTTP ``status``, worded like a failed stream."""
    text = http_error_message(status, message, label=wire.label, env=wire.env)
    return failed(str(wire.error(text)))
