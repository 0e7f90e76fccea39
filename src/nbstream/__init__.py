"""nbstream: stream LLM answers into Jupyter notebooks.

``%load_ext nbstream`` registers ``%%llm``; ``await nbstream.ask(...)`` is the Python API,
``await nbstream.map(rows, prompt)`` runs one prompt over many rows.
Loading the extension imports no provider SDK: those load on first use.

For provider authors: a provider is an async generator of ``str`` deltas and one
:class:`Final`, taking a :class:`Request` and raising :class:`ProviderError`
(see :mod:`nbstream.providers.base`); add it with :func:`register_provider`, declaring
what it can do with :class:`Capabilities` (nbstream's own providers register the same way).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nbstream.errors import (
    HistoryError,
    ModelIdError,
    NbstreamError,
    ProviderError,
    ResponseError,
    SchemaError,
    SchemaValidationError,
    SettingsError,
)
from nbstream.providers.base import Capabilities, Final, Request
from nbstream.response import Response
from nbstream.settings import UNSET

if TYPE_CHECKING:  # what the lazy exports below return, for editors and type checkers
    from nbstream import pricing  # noqa: F401 - nbstream.pricing, also reached lazily
    from nbstream.api import ask, ask_sync, history, thread
    from nbstream.background import Pending
    from nbstream.batch import Job, Quote, collect, map, map_sync, quote
    from nbstream.providers import register_provider
    from nbstream.tools import tool

from nbstream.version import __version__

__all__ = [
    "UNSET",
    "Capabilities",
    "Final",
    "HistoryError",
    "Job",
    "ModelIdError",
    "NbstreamError",
    "Pending",
    "ProviderError",
    "Quote",
    "Request",
    "Response",
    "ResponseError",
    "SchemaError",
    "SchemaValidationError",
    "SettingsError",
    "__version__",
    "ask",
    "ask_sync",
    "collect",
    "history",
    "load_ipython_extension",
    "map",
    "map_sync",
    "quote",
    "register_provider",
    "thread",
    "tool",
    "unload_ipython_extension",
]


def load_ipython_extension(shell: Any) -> None:
    from nbstream.notebook import magics

    magics.load(shell)


def unload_ipython_extension(shell: Any) -> None:
    from nbstream.notebook import magics

    magics.unload(shell)


def __getattr__(name: str) -> Any:  # lazy: keep `import nbstream` and %load_ext fast
    if name in ("ask", "ask_sync", "history", "thread"):
        from nbstream import api

        return getattr(api, name)
    if name in ("map", "map_sync", "collect", "Job", "quote", "Quote"):
        from nbstream import batch

        return getattr(batch, name)
    if name == "Pending":
        from nbstream.background import Pending

        return Pending
    if name == "pricing":  # nbstream.pricing.set_price(...) without importing it first
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    if name == "register_provider":
        from nbstream.providers import register_provider

        return register_provider
    if name == "tool":
        from nbstream.tools import tool

        return tool
    raise AttributeError(f"module 'nbstream' has no attribute {name!r}")
