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
import contextvars
import importlib.metadata
import threading
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


def widgets_available() -> bool:
    """ipywidgets and anywidget import (nbstream's live views need both)."""
    try:
        import anywidget  # noqa: F401
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


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


def update_display(obj: Any, **kwargs: Any) -> None:
    """``IPython.display.update_display``, attributed to the cell the kernel runs now when
    called from another thread (a background answer or batch that ends while other cells
    run). Front ends route a display update by its display id to the cell that shows it
    (JupyterLab, Notebook 7, and nbclient across cells), but nbclient reads only the
    messages of the cell it is executing: from the background, with the parent message of
    the cell that started it (ipykernel 7 keeps one per context), a headless run would
    drop the final answer. ipykernel < 7 attributes every message to the current cell."""
    from IPython.display import update_display as publish

    shell = get_shell()
    kernel: Any = getattr(shell, "kernel", None)
    context = getattr(kernel, "_shell_context", None)  # ipykernel 7: the latest request's
    if threading.current_thread() is threading.main_thread() or not isinstance(
        context, contextvars.Context
    ):
        publish(obj, **kwargs)
        return

    def in_current_cell() -> None:
        # The display publisher keeps its own parent (a context variable set after the
        # kernel's): point it at the request the kernel runs now, in this copy only.
        parent = kernel.get_parent("shell")
        publisher: Any = getattr(shell, "display_pub", None)
        if parent and hasattr(publisher, "set_parent"):
            publisher.set_parent(parent)
        publish(obj, **kwargs)

    context.copy().run(in_current_cell)
