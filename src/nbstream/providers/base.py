"""The contract every provider honours.

A provider is one async generator function::

    async def stream(request: Request) -> AsyncIterator[str | Final]

It yields text deltas (``str``) as they arrive and then exactly one :class:`Final`.
It knows its wire format and nothing else: no display, no timing, no variables.

* A stream that ends without a ``Final`` was cut short (dropped connection, crash):
  the engine reports it as an error. Providers must *not* invent a ``Final`` when the
  wire format's terminal event (``finish_reason`` / ``message_stop``) never came.
* Anything that goes wrong is raised as :class:`ProviderError` with a one-line,
  actionable message that never contains a secret.
* Cancellation (``asyncio.CancelledError``) may arrive at any ``await``; providers use
  ``async with`` / ``try/finally`` so that the upstream HTTP response is closed at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Literal

FinishReason = Literal["stop", "length", "cancelled", "error"]


@dataclass(frozen=True)
class Request:
    """What the user asked for, independent of any wire format."""

    prompt: str
    model: str
    """Model name *without* the provider prefix, e.g. ``gpt-4o-mini``."""
    system: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    base_url: str | None = None
    timeout: float = 60.0
    """Idle timeout in seconds (also used as the HTTP read timeout hint)."""
    extra: dict = field(default_factory=dict)
    """Provider-specific options, passed through untouched."""


@dataclass(frozen=True)
class Final:
    """The terminal event of a stream that completed on the wire."""

    finish_reason: Literal["stop", "length"]
    usage: dict | None = None
    """``{"input_tokens": int, "output_tokens": int}`` when the provider reports it."""


class ProviderError(Exception):
    """A failure with a one-line message meant for the user (no secrets, no traceback)."""


Provider = Callable[[Request], AsyncIterator["str | Final"]]
