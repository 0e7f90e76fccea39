"""nbstream: stream LLM answers into Jupyter notebooks.

``%load_ext nbstream`` registers ``%%llm``; ``await nbstream.ask(...)`` is the Python API.
Loading the extension imports no provider SDK: those load on first use.
"""

from __future__ import annotations

from typing import Any

from .response import Response

__version__ = "0.1.0"
__all__ = [
    "Response",
    "__version__",
    "ask",
    "ask_sync",
    "load_ipython_extension",
    "register_provider",
    "unload_ipython_extension",
]


def load_ipython_extension(shell: Any) -> None:
    from . import magics

    magics.load(shell)


def unload_ipython_extension(shell: Any) -> None:
    from . import magics

    magics.unload(shell)


def __getattr__(name: str) -> Any:  # lazy: keep `import nbstream` and %load_ext fast
    if name in ("ask", "ask_sync"):
        from . import api

        return getattr(api, name)
    if name == "register_provider":
        from .providers import register_provider

        return register_provider
    raise AttributeError(f"module 'nbstream' has no attribute {name!r}")
