"""Every exception nbstream raises, in one place.

::

    NbstreamError
    ├── ProviderError        a provider failed (HTTP status, connection, malformed event …);
    │                        becomes Response.error, never escapes a stream
    ├── ModelIdError         a malformed or unknown "provider:model" id  (also a ValueError)
    ├── SettingsError        rejected option values, naming each one     (also a ValueError)
    ├── SchemaError          a schema spec that names no usable type or JSON schema
    │                        (unknown name, unsafe expression …)          (also a ValueError)
    ├── SchemaValidationError  a structured answer that is not JSON or does not match its
    │                        schema; becomes Response.error (the validator's one line),
    │                        never escapes a stream                      (also a ValueError)
    └── ResponseError        Response.raise_for_error() on a failed answer

Messages are one line, say what was wrong and how to fix it, and never contain a secret.
Errors below the front doors name options neutrally ("the idle_timeout option"); the
``%%llm`` magic rewords them as flags, ``ask()`` as keyword arguments.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "HistoryError",
    "ModelIdError",
    "NbstreamError",
    "Problem",
    "ProviderError",
    "ResponseError",
    "SchemaError",
    "SchemaValidationError",
    "SettingsError",
    "warn_once",
]


_said: set[str] = set()


def warn_once(subject: str, message: str, *, stacklevel: int = 3) -> None:
    """Warn ``message`` once per process for ``subject`` (a damaged file, a folder that
    cannot be written): a fault that repeats with every answer is said once, in the cell
    where it first shows."""
    if subject in _said:
        return
    _said.add(subject)
    warnings.warn(message, RuntimeWarning, stacklevel=stacklevel + 1)


class NbstreamError(Exception):
    """Base class of nbstream's own errors."""


class ProviderError(NbstreamError):
    """A provider failed. ``str(exc)`` is a one-line message meant for the user.

    ``status``: the HTTP status, if any. ``retry_after``: seconds the server asked to wait.
    ``retryable``: the engine may retry it *before the first token* (429, 5xx, connection
    errors). ``option``: the option the user can change to fix it, if one fits.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        retryable: bool = False,
        option: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.retryable = retryable
        self.option = option


class ModelIdError(NbstreamError, ValueError):
    """A malformed or unknown ``provider:model`` id."""


@dataclass(frozen=True)
class Problem:
    """One rejected option value: which option, where it came from, what was wrong."""

    name: str
    value: Any
    message: str
    source: Literal["call", "config", "env"]


class SettingsError(NbstreamError, ValueError):
    """One or more option values were rejected. ``str()`` names options neutrally; a front
    door rewords them with :meth:`describe` (a flag for ``%%llm``, a keyword for ``ask``)."""

    def __init__(
        self, problems: list[Problem], call_name: Callable[[str], str] | None = None
    ) -> None:
        self.problems = problems
        super().__init__(self.describe(call_name or (lambda name: f"the {name} option")))

    def describe(self, call_name: Callable[[str], str]) -> str:
        """The message, naming options given in the call by ``call_name(option)``."""
        parts = []
        for p in self.problems:
            where = {
                "call": call_name(p.name),
                "config": f"%config LLMMagics.{p.name}",
                "env": f"$NBSTREAM_{p.name.upper()}",
            }[p.source]
            shown = repr(p.value)
            if len(shown) > 60:
                shown = shown[:59] + "…"
            parts.append(f"{where}: {p.message}, got {shown}")
        return "; ".join(parts)


class SchemaError(NbstreamError, ValueError):
    """A schema spec could not be turned into a schema (unknown name, unsafe expression,
    a type pydantic cannot describe). Raised before anything is sent; ``%%llm`` shows it
    as a usage error."""


class SchemaValidationError(NbstreamError, ValueError):
    """The answer is not JSON or does not match the schema. ``str()`` is one line;
    ``field`` is the path of the first problem (``"[2].population"``, ``""`` for the whole
    answer, ``None`` when the answer is not JSON); ``errors`` lists every problem found
    as ``(path, message)``."""

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        errors: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.field = field
        self.errors = errors or []


class HistoryError(NbstreamError, ValueError):
    """The history file cannot be read (damaged, locked by another process for longer than
    :data:`nbstream.store.KERNEL_WAIT`, unreadable). The message says which file, what is
    wrong and how to fix it. Answers are never lost to it: writing the history only warns."""


class ResponseError(NbstreamError):
    """Raised by :meth:`nbstream.Response.raise_for_error` for an answer that failed.

    ``response`` is the :class:`~nbstream.Response` (its partial text is kept)."""

    def __init__(self, message: str, response: Any) -> None:
        super().__init__(message)
        self.response = response
