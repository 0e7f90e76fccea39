"""Answers that stream in the background: ``%%llm --bg``, ``ask(..., background=True)``.

A background answer returns at once as a :class:`Pending` handle (a
:class:`~nbstream.Response` is an immutable ``str``, so it cannot fill in as it streams);
the stream goes on while other cells run, in its own live view with its own Stop button.

**Where the streams run.** On one shared daemon thread, ``nbstream-background``, that runs
its own asyncio loop for the life of the process (:func:`background_loop`, started on first
use); :func:`run_in_background` runs a coroutine there, in a copy of the caller's
``contextvars`` context (a kernel's per-cell state — the parent message that outputs belong
to — follows it, as in :func:`nbstream.run._run_in_thread`). Not the kernel's own loop:
``x.wait()`` in a cell blocks that loop, which would deadlock a stream running on it, and
the kernel stays responsive to other cells while streams run. Several streams share the
thread (each its own task).

**The live view.** Each stream runs with :func:`nbstream.run.run_awaited` and
``pump=False``: widget messages are never pumped from the background (no cell awaits the
stream; between cells the kernel dispatches comm messages itself, on every ipykernel
version), so the view's Stop button works (the sink is made stoppable). The front door does
not return before the view is displayed (:meth:`Pending.shown` / :meth:`Pending.wait_shown`):
on ipykernel < 7 the parent message of an output is the kernel's current one, not the
context's, so a display made after the cell ended would land in whatever cell runs then.
Everything later is routed by comm id (the view's messages) and by display id (the
``update_display`` that replaces it with the static answer), which front ends apply to the
cell that shows the display; that update is sent as part of the cell the kernel runs then
(:func:`nbstream.kernel.update_display`), so a headless run (nbclient reads only the running
cell's messages) keeps the final answer too.

**Interrupts** (■, Ctrl-C) reach the foreground only: background streams go on until they
end, their view's Stop is clicked or :meth:`Pending.stop` is called.

**Outside a kernel** (terminal IPython, scripts) a background answer shows nothing while it
streams (``display`` defaults to ``"none"`` there: tokens printed over the prompt would be
unusable; an explicit ``display`` still wins): ``x.wait()`` / ``print(x)`` afterwards.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import os
import threading
import time
from collections.abc import Callable, Coroutine, Generator, Iterable, MutableMapping
from typing import Any, TypeVar

from nbstream.call import Relay, call_of
from nbstream.engine import Sink, Stream
from nbstream.kernel import get_shell, in_kernel, widget_messages_pumped
from nbstream.response import LABELS, Response
from nbstream.run import run_awaited

T = TypeVar("T")

THREAD_NAME = "nbstream-background"
"""The name of the thread that runs every background stream."""

SHOW_TIMEOUT = 5.0
"""Seconds the front door waits at most for a background stream's display to exist."""

_REPR_TEXT_LIMIT = 40

_lock = threading.Lock()
_tasks: set[asyncio.Task[Any]] = set()
"""The running tasks (the loop itself keeps only weak references to them)."""
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_pid = 0


def background_loop() -> asyncio.AbstractEventLoop:
    """The event loop of the ``nbstream-background`` thread, started on first use (and
    again in a forked child, where the thread does not exist)."""
    global _loop, _thread, _pid
    with _lock:
        if _loop is None or _thread is None or not _thread.is_alive() or _pid != os.getpid():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=_serve, args=(loop,), name=THREAD_NAME, daemon=True)
            thread.start()
            _loop, _thread, _pid = loop, thread, os.getpid()
        return _loop


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    loop.run_forever()


def in_background_thread() -> bool:
    """True on the ``nbstream-background`` thread (where blocking on a stream deadlocks)."""
    return _thread is not None and threading.current_thread() is _thread


def run_in_background(
    make_coro: Callable[[], Coroutine[Any, Any, T]],
) -> concurrent.futures.Future[T]:
    """Run ``make_coro()`` on the background loop, in a copy of the caller's context, and
    return at once. The future has the coroutine's result or exception; cancelling the
    future cancels the coroutine (its task). ``make_coro`` is called on the loop's thread
    (so it may use ``asyncio.get_running_loop()``); an exception it raises goes into the
    future."""
    loop = background_loop()
    context = contextvars.copy_context()
    future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def start() -> None:  # on the loop, in `context`
        if future.cancelled():
            return
        try:
            task = loop.create_task(make_coro())  # the task runs in a copy of `context`
        except BaseException as exc:
            if future.set_running_or_notify_cancel():
                future.set_exception(exc)
            return

        def settle(done: asyncio.Task[T]) -> None:
            if future.cancelled():
                return
            if done.cancelled():
                future.cancel()
                return
            if not future.set_running_or_notify_cancel():
                return  # cancelled meanwhile, from another thread
            error = done.exception()
            if error is None:
                future.set_result(done.result())
            else:
                future.set_exception(error)

        def cancel_task(f: concurrent.futures.Future[T]) -> None:
            if f.cancelled():
                with contextlib.suppress(RuntimeError):  # the loop is gone
                    loop.call_soon_threadsafe(task.cancel)

        _tasks.add(task)
        task.add_done_callback(_tasks.discard)
        task.add_done_callback(settle)
        future.add_done_callback(cancel_task)

    loop.call_soon_threadsafe(start, context=context)
    return future


WAIT_STEP = 0.1
"""Seconds between the checks of a wait for a background future (see :func:`wait_in_cell`)."""


def wait_blocking(
    future: concurrent.futures.Future[T],
    timeout: float | None,
    *,
    still: Callable[[], str],
    on_interrupt: Callable[[], None] | None = None,
) -> T:
    """Block until ``future`` (of the background loop) is done, in short steps so Ctrl-C or
    a kernel interrupt is seen at once: ``on_interrupt`` runs then and the wait goes on
    (a batch stops and returns what finished), or without one the interrupt ends the wait.
    ``TimeoutError(still())`` after ``timeout`` seconds (the work goes on)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            return future.result(timeout=0.05)
        except concurrent.futures.TimeoutError:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(still()) from None
        except KeyboardInterrupt:
            if on_interrupt is None:
                raise
            on_interrupt()


async def wait_in_cell(
    future: concurrent.futures.Future[T], *, on_interrupt: Callable[[], None] | None = None
) -> T:
    """Await ``future`` (of the background loop) from another loop, e.g. a cell's, without
    ever cancelling it. The wait goes in :data:`WAIT_STEP` steps: the kernel's loop must
    wake up to see an interrupt (``docs/design.md#batches-and-background-streams``;
    awaiting the future alone, an interrupt on ipykernel 7 was seen only when it ended). A
    cell pumps widget messages meanwhile on ipykernel < 7.4 (the Stop buttons). On an
    interrupt ``on_interrupt`` runs and the wait goes on, or without one the wait ends with
    KeyboardInterrupt (the work goes on)."""
    wrapped = asyncio.wrap_future(future)
    pumped = contextlib.nullcontext() if in_background_thread() else widget_messages_pumped()
    async with pumped:
        while not wrapped.done():
            try:
                await asyncio.wait({wrapped}, timeout=WAIT_STEP)
            except asyncio.CancelledError:
                if on_interrupt is None:
                    raise KeyboardInterrupt from None
                on_interrupt()
    return wrapped.result()


def defaults() -> dict[str, Any] | None:
    """The front door's defaults for a background answer (below ``%config`` and the
    environment): outside a kernel nothing is displayed while it streams."""
    return None if in_kernel() else {"display": "none"}


class _Watch:
    """Passes everything on to ``sink``; notes which stream runs (a validation re-ask is a
    new stream) and when the display exists (:attr:`shown`)."""

    def __init__(self, sink: Sink, stream: Stream) -> None:
        self.sink = sink
        self.pumps_widget_messages = sink.pumps_widget_messages
        self.current = stream
        self.shown = threading.Event()

    def on_start(self, stream: Stream) -> None:
        self.current = stream
        try:
            self.sink.on_start(stream)
        finally:
            self.shown.set()

    def on_delta(self, stream: Stream, delta: str) -> None:
        self.current = stream
        self.sink.on_delta(stream, delta)

    def on_status(self, stream: Stream) -> None:
        self.current = stream
        self.sink.on_status(stream)

    def on_end(self, stream: Stream, response: Response) -> None:
        self.current = stream
        self.sink.on_end(stream, response)

    def __getattr__(self, name: str) -> Any:  # what a sink has besides the protocol
        if name == "sink":  # not set yet (a copy being made): no recursion
            raise AttributeError(name)
        value = getattr(self.sink, name)
        if name == "on_restart":  # Relay: a re-ask continues the display

            def on_restart(stream: Stream) -> None:
                self.current = stream
                value(stream)

            return on_restart
        return value


def _watch(stream: Stream) -> _Watch:
    """Put a :class:`_Watch` in front of the display of ``stream`` (inside a
    :class:`~nbstream.call.Relay`, so it sees the re-asks' streams too)."""
    sink = stream.sink
    if isinstance(sink, Relay):
        watch = _Watch(sink.sink, stream)
        sink.sink = watch
    else:
        watch = _Watch(sink, stream)
        stream.sink = watch
    return watch


ENDINGS = frozenset({"stop", "length", "cancelled", "error"})
"""The states of a stream that has ended (its finish reasons)."""


class Pending:
    """An answer that is still streaming in the background (``%%llm --bg``,
    ``ask(..., background=True)``, ``ask_sync(..., background=True)``).

    ``text`` (and ``str(x)``)
        The text so far, live.
    ``state``
        ``waiting`` (→ ``retrying`` …) → ``streaming`` → the finish reason.
    ``done`` / ``finish_reason`` / ``response``
        Whether it ended; its finish reason and final :class:`~nbstream.Response`
        (``None`` while it runs).
    ``stop()``
        Stop it (what its view's Stop button does); thread-safe, any number of times. The
        answer ends as ``"cancelled"`` with the partial text.
    ``wait(timeout=None)`` / ``await x``
        The final :class:`~nbstream.Response`, once it ends. ``wait`` blocks (also in a
        kernel cell; a kernel interrupt ends the wait, not the stream); ``await x`` lets
        the kernel handle other messages meanwhile (e.g. a Stop click).

    **Variables are rebound when it ends**: the variables the front door bound to it in the
    user's namespace — ``_llm`` and the ``-o`` variable of ``%%llm --bg`` (``ask`` binds
    ``_llm`` only) — are bound to the final ``Response`` instead, if they still refer to
    this handle (one reassigned meanwhile is left alone), before ``wait()`` / ``await``
    return. Other references (``x = ask_sync(..., background=True)``, a copy in a list)
    stay handles: ``.response``, ``.wait()`` and ``await`` keep working on them.
    """

    def __init__(
        self,
        stream: Stream,
        *,
        namespace: MutableMapping[str, Any] | None = None,
        names: Iterable[str] = (),
    ) -> None:
        self._stream = stream
        self._watch = _watch(stream)
        self._namespace = namespace
        self._names = tuple(names)
        self._response: Response | None = None
        self._future: concurrent.futures.Future[Response] | None = None

    def _start(self) -> None:
        self._future = run_in_background(self._run)

    async def _run(self) -> Response:
        try:
            response = await run_awaited(self._stream, pump=False)
        finally:
            self._watch.shown.set()  # never keep a front door waiting
        self._response = response
        self._rebind(response)
        return response

    def _bind(self) -> None:
        if self._namespace is not None:
            for name in self._names:
                self._namespace[name] = self

    def _rebind(self, response: Response) -> None:
        if self._namespace is not None:
            for name in self._names:
                if self._namespace.get(name) is self:  # not reassigned meanwhile
                    self._namespace[name] = response

    # -- what the user sees ----------------------------------------------------------------

    @property
    def text(self) -> str:
        """The text so far (the final text once it ended)."""
        if self._response is not None:
            return self._response.text
        return self._watch.current.text

    @property
    def state(self) -> str:
        """``waiting``, ``retrying``, ``streaming``, then the finish reason; ``stopping``
        from :meth:`stop` until the stream has closed (then ``cancelled``)."""
        if self._response is not None:
            return self._response.finish_reason
        current = self._watch.current
        if current.stop_requested and current.state not in ENDINGS:
            return "stopping"
        return current.state

    @property
    def model(self) -> str:
        """``provider:name``."""
        return self._stream.model_id

    @property
    def done(self) -> bool:
        """True once the stream ended (also when it failed)."""
        return self._response is not None or (self._future is not None and self._future.done())

    @property
    def finish_reason(self) -> str | None:
        """``stop``, ``length``, ``cancelled`` or ``error`` once it ended; ``None`` before."""
        return None if self._response is None else self._response.finish_reason

    @property
    def response(self) -> Response | None:
        """The final :class:`~nbstream.Response`, or ``None`` while it streams."""
        return self._response

    def stop(self) -> None:
        """Stop the stream, as its view's Stop button does (thread-safe; no effect once it
        ended). The answer ends as ``"cancelled"`` with the text so far."""
        stream = self._watch.current
        call = call_of(stream)
        if call is not None:
            call.halted = True  # no validation re-ask after it
        stream.stop()

    def wait(self, timeout: float | None = None) -> Response:
        """Block until the stream ends and return its :class:`~nbstream.Response`.
        ``TimeoutError`` after ``timeout`` seconds (the stream goes on)."""
        future = self._started()
        if in_background_thread() and not future.done():
            raise RuntimeError(
                "Pending.wait() would block nbstream's background loop: use `await` there"
            )
        return wait_blocking(
            future, timeout, still=lambda: f"the answer from {self.model} is still {self.state}"
        )

    def __await__(self) -> Generator[Any, None, Response]:
        return self._wait_async().__await__()

    async def _wait_async(self) -> Response:
        # an interrupt ends the wait (KeyboardInterrupt), not the stream
        return await wait_in_cell(self._started())

    def _started(self) -> concurrent.futures.Future[Response]:
        if self._future is None:
            raise RuntimeError("this answer was never started")
        return self._future

    # -- the front doors wait for the display ----------------------------------------------

    def wait_shown(self, timeout: float = SHOW_TIMEOUT) -> None:
        """Block until the stream's display exists (at most ``timeout`` s); re-raise if the
        stream failed before that."""
        future = self._started()
        deadline = time.monotonic() + timeout
        while not (self._watch.shown.is_set() or future.done()):
            if time.monotonic() >= deadline:
                return
            self._watch.shown.wait(0.01)
        self._raise_early_failure()

    async def shown(self, timeout: float = SHOW_TIMEOUT) -> None:
        """:meth:`wait_shown` for a coroutine (the kernel's loop keeps running)."""
        future = self._started()
        deadline = time.monotonic() + timeout
        while not (self._watch.shown.is_set() or future.done()):
            if time.monotonic() >= deadline:
                return
            await asyncio.sleep(0.005)
        self._raise_early_failure()

    def _raise_early_failure(self) -> None:
        future = self._started()
        if future.done() and not future.cancelled():
            error = future.exception()
            if error is not None:
                raise error

    # -- representations -------------------------------------------------------------------

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        text = self.text
        shown = text if len(text) <= _REPR_TEXT_LIMIT else text[:_REPR_TEXT_LIMIT] + "…"
        return f"Pending({shown!r}, state={self.state!r}, model={self.model!r}, chars={len(text)})"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))

    def _repr_markdown_(self) -> str:
        """A snapshot: the text so far and a status line (the live view is in the cell
        that started it)."""
        text = self.text
        if self.done:
            words = LABELS.get(self.state, self.state)
        else:
            words = f"{LABELS.get(self.state, self.state)} in the background"
        status = f"*nbstream: {self.model} · {words} · {len(text)} characters*"
        return f"{text}\n\n{status}" if text else status


def start(
    stream: Stream,
    *,
    names: Iterable[str | None] = ("_llm",),
    namespace: MutableMapping[str, Any] | None = None,
) -> Pending:
    """Start ``stream`` (from :func:`nbstream.run.make_stream`, stoppable) in the background
    and return its handle, bound to ``names`` in ``namespace`` (default: the IPython user
    namespace, if any) until it ends, then rebound to the Response (see :class:`Pending`).
    Then wait for its display with :meth:`Pending.shown` / :meth:`Pending.wait_shown`
    before the cell ends."""
    if namespace is None:
        shell = get_shell()
        user_ns = getattr(shell, "user_ns", None)
        namespace = user_ns if isinstance(user_ns, MutableMapping) else None
    pending = Pending(stream, namespace=namespace, names=[n for n in names if n])
    pending._bind()
    pending._start()
    return pending


__all__ = [
    "SHOW_TIMEOUT",
    "THREAD_NAME",
    "Pending",
    "background_loop",
    "defaults",
    "in_background_thread",
    "run_in_background",
    "start",
    "wait_blocking",
    "wait_in_cell",
]
