"""A provider batch of any size: the rows split into parts that each fit the service's
limits (rows and bytes), submitted, polled, cancelled and collected as one :class:`Job`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nbstream.providers.batches import BatchLimits, BatchStatus


@dataclass
class Part:
    """Rows ``submitted[start:stop]`` of a job, one provider batch (its row ``k`` has the
    ``custom_id`` ``row-k``)."""

    start: int
    stop: int
    id: str | None = None
    """The provider's batch id, once submitted."""
    status: BatchStatus | None = None
    """The last status polled."""
    collected: bool = False
    """Its results are placed in the job."""
    cancel_sent: bool = False
    error: str | None = None
    """Why it could not be submitted (its rows fail with it)."""

    def __len__(self) -> int:
        return self.stop - self.start

    def saved(self) -> list[Any]:
        """What the history file keeps of it."""
        return [self.id, self.start, self.stop]


def split(sizes: Sequence[int], limits: BatchLimits, label: str) -> list[Part]:
    """Consecutive parts of ``sizes`` (each row's encoded bytes), each with at most
    ``limits.rows`` rows and ``limits.bytes`` bytes, as few as that allows. A row bigger
    than a whole batch may be raises ``ValueError`` saying which."""
    parts: list[Part] = []
    start = 0
    total = 0
    for index, size in enumerate(sizes):
        if size > limits.bytes:
            raise ValueError(
                f"row {index} of the submitted rows takes {size:,} bytes, more than the "
                f"{limits.bytes:,} bytes one {label} batch may hold: shorten its prompt or "
                "send it with mode='stream'"
            )
        if index - start >= limits.rows or total + size > limits.bytes:
            parts.append(Part(start, index))
            start, total = index, 0
        total += size
    if start < len(sizes):
        parts.append(Part(start, len(sizes)))
    return parts


def restored(saved: Sequence[Sequence[Any]]) -> list[Part]:
    """The parts of a job from the history file (:meth:`Part.saved`)."""
    return [Part(int(start), int(stop), id=ident) for ident, start, stop in saved]
