"""What we need to know about (and do for) the running IPython kernel.

A widget click is a ``comm_msg`` on the shell channel
(``docs/design.md#stop-while-a-cell-runs``). On ipykernel ≥ 7.4 it is handled while a cell
*awaits*; below 7.4 something must pump shell messages while the cell
awaits — jupyter-ui-poll's async poll, from a side task. Never pump on 7.4+ (it breaks the
kernel), and never use nest_asyncio for this.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
from collections.abc import AsyncIterator
from typing import Any


def get_shell() -> Any | None:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return None
    return get_ipython()


def in_kernel(shell: Any | None = None) -> bool:
    """True inside a Jupyter kernel (a front end that can show widgets may be attached)."""
    shell = shell if shell is not None else get_shell()
    return shell is not None and getattr(shell, "kernel", None) is not None


def ipykernel_version() -> tuple[int, ...]:
    try:
        version = importlib.metadata.version("ipykernel")
    except importlib.metadata.PackageNotFoundError:
        return ()
    parts = []
    for piece in version.split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def needs_pump() -> bool:
    """ipykernel < 7.4 queues widget messages behind an awaiting cell: pump them."""
    version = ipykernel_version()
    return bool(version) and version < (7, 4)


@contextlib.asynccontextmanager
async def widget_messages_pumped(interval: float = 0.02) -> AsyncIterator[None]:
    """While the body runs, let widget clicks through on ipykernel < 7.4 (no-op otherwise)."""
    if not (in_kernel() and needs_pump()):
        yield
        return
    from jupyter_ui_poll import ui_events

    async def pump() -> None:
        async with ui_events() as poll:
            while True:
                await poll(10)
                await asyncio.sleep(interval)

    task = asyncio.ensure_future(pump())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
