"""The stream engine: runs one provider stream and decides how it ended.

It owns everything that is not a wire format and not a display:

* accumulation of the text (the partial text is always kept),
* the idle timeout (no delta for ``request.timeout`` seconds),
* cancellation: :meth:`Stream.stop` (thread-safe, for a Stop button) and
  cancellation of the awaiting task (kernel interrupt),
* the verdict: a stream that ends without the provider's terminal event is an error,
  never a success.

A *sink* (see :class:`Sink`) is told about each delta and about the end; sinks do their
own throttling. The engine never knows about widgets or terminals.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from typing import Protocol

from .providers.base import Final, Provider, ProviderError, Request
from .providers.common import one_line, redact
from .response import Response

TRUNCATED = (
    "the stream ended without its completion event (connection dropped?); "
    "the answer may be incomplete"
)


class Sink(Protocol):
    """Where a stream's progress goes (widget, terminal, nothing)."""

    def on_start(self, stream: Stream) -> None: ...

    def on_delta(self, stream: Stream, delta: str) -> None: ...

    def on_end(self, stream: Stream, response: Response) -> None: ...


class NullSink:
    """Shows nothing (``display="none"``)."""

    def on_start(self, stream: Stream) -> None:
        pass

    def on_delta(self, stream: Stream, delta: str) -> None:
        pass

    def on_end(self, stream: Stream, response: Response) -> None:
        pass


class Stream:
    """One run of one provider stream. Create it, then ``await stream.run()``."""

    def __init__(
        self,
        provider: Provider,
        request: Request,
        *,
        model_id: str,
        sink: Sink | None = None,
        note: str | None = None,
    ) -> None:
        self.provider = provider
        self.request = request
        self.model_id = model_id
        self.note = note
        self.sink: Sink = sink or NullSink()
        self.parts: list[str] = []
        self.chunks = 0
        self.state = "waiting"  # waiting → streaming → done | stopped | error
        self.started: float | None = None
        self.first_token_at: float | None = None
        self.interrupted = False
        self._last_activity = 0.0
        self._final: Final | None = None
        self._error: str | None = None
        self._cancel_reason: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop_requested = threading.Event()

    # -- control -------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the stream to stop. Safe to call from any thread, any number of times."""
        self._stop_requested.set()
        self.call_in_loop(lambda: self._cancel("stopped"))

    def call_in_loop(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` on the stream's event loop, from any thread (e.g. a widget
        handler on a kernel subshell thread). Does nothing once the loop is gone."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            # RuntimeError: the loop closed between the check and the call.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(callback)

    def interrupt(self) -> None:
        """Like :meth:`stop`, but records that the user interrupted the kernel."""
        self.interrupted = True
        self.stop()

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def elapsed(self) -> float:
        return 0.0 if self.started is None else time.monotonic() - self.started

    # -- running -------------------------------------------------------------------------

    async def run(self) -> Response:
        """Run to the end and return the :class:`Response`. Never raises for stream
        failures; if the awaiting task is cancelled (kernel interrupt) the stream is
        cleaned up, ``self.interrupted`` is set and the partial response returned."""
        self._loop = asyncio.get_running_loop()
        self.started = self._last_activity = time.monotonic()
        self.sink.on_start(self)
        self._task = asyncio.ensure_future(self._consume())
        if self._stop_requested.is_set():  # stop() before run(): honour it
            self._cancel("stopped")
        watchdog = self._loop.call_later(self.request.timeout, self._check_idle)
        try:
            await asyncio.wait({self._task})
        except asyncio.CancelledError:
            # The cell itself was cancelled (kernel interrupt): clean up, keep the text.
            self.interrupted = True
            self._cancel("stopped")
            await _wait_uncancellable(self._task)
        finally:
            watchdog.cancel()
        response = self._response()
        self.state = {"stop": "done", "length": "done", "cancelled": "stopped"}.get(
            response.finish_reason, "error"
        )
        self.sink.on_end(self, response)
        return response

    async def _consume(self) -> None:
        stream = self.provider(self.request)
        try:
            async for item in stream:
                if isinstance(item, Final):
                    self._final = item
                    break
                if not item:
                    continue
                now = time.monotonic()
                self._last_activity = now
                if self.first_token_at is None:
                    self.first_token_at = now
                    self.state = "streaming"
                self.parts.append(item)
                self.chunks += 1
                self.sink.on_delta(self, item)
        except ProviderError as exc:
            self._error = str(exc)
        except asyncio.CancelledError:
            if self._cancel_reason is None:  # not ours: propagate
                raise
        except Exception as exc:  # a bug or an SDK surprise: keep the text, say what it was
            self._error = redact(one_line(f"{type(exc).__name__}: {exc}"))
        finally:
            await _aclose(stream)

    def _cancel(self, reason: str) -> None:
        if self._task is None or self._task.done() or self._cancel_reason is not None:
            return
        self._cancel_reason = reason
        self._task.cancel()

    def _check_idle(self) -> None:
        if self._task is None or self._task.done():
            return
        assert self._loop is not None
        idle = time.monotonic() - self._last_activity
        if idle >= self.request.timeout:
            self._cancel("timeout")
        else:
            self._loop.call_later(self.request.timeout - idle, self._check_idle)

    def _response(self) -> Response:
        usage = None
        error = None
        if self._final is not None:
            finish = self._final.finish_reason
            usage = self._final.usage
        elif self._cancel_reason == "stopped":
            finish = "cancelled"
        else:
            finish = "error"
            if self._cancel_reason == "timeout":
                wait = "the first token" if self.first_token_at is None else "the next token"
                error = (
                    f"no data for {self.request.timeout:g} s while waiting for {wait} "
                    "(idle timeout); raise it with --timeout"
                )
            else:
                error = self._error or TRUNCATED
        assert self.started is not None
        return Response(
            self.text,
            finish_reason=finish,
            error=error,
            model=self.model_id,
            usage=usage,
            ttft=None if self.first_token_at is None else self.first_token_at - self.started,
            elapsed=time.monotonic() - self.started,
            prompt=self.request.prompt,
            chunks=self.chunks,
        )


async def _aclose(stream: object) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await aclose()


async def _wait_uncancellable(task: asyncio.Task[None]) -> None:
    """Wait for ``task`` even if we are cancelled again meanwhile (cleanup must finish)."""
    while not task.done():
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:
            continue
