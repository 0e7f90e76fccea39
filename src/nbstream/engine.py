"""The stream engine: runs one provider stream and decides how it ended.

It owns everything that is not a wire format and not a display:

* accumulation of the text (the partial text is always kept; deltas are cleaned so that a
  surrogate pair split across two deltas is joined and a lone surrogate becomes U+FFFD),
* the retry policy: HTTP 429, 5xx and connection errors *before the first token* are
  retried with exponential backoff and jitter, honouring ``Retry-After`` up to
  ``retry_max_wait``; nothing is retried once text has arrived (no duplicated text),
* the timeouts: no first token within ``first_token_timeout`` of sending the request, or
  no delta for ``idle_timeout`` once streaming (waiting before a retry is neither),
* cancellation: :meth:`Stream.stop` (thread-safe, for a Stop button) and cancellation of
  the awaiting task (kernel interrupt); a 0.1 s tick keeps the event loop waking up, so an
  interrupt is seen even while the server sends nothing (``docs/design.md#stop-while-a-cell-runs``),
* the verdict: a stream that ends without the provider's terminal event is an error,
  never a success (``docs/design.md#sdks-hide-dropped-connections``).

A *sink* (see :class:`Sink`) is told about the start, each delta, each status change and
the end; sinks do their own throttling. The engine never knows about widgets or terminals.
Messages name options neutrally through ``describe_option`` (the front door's wording).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any, Protocol

from nbstream.errors import ProviderError
from nbstream.pricing import price_of
from nbstream.providers import capabilities
from nbstream.providers.base import (
    NOTES,
    Final,
    FinishReason,
    Price,
    Provider,
    Request,
    ThinkingDelta,
    ToolCall,
    ToolCallDelta,
)
from nbstream.providers.common import one_line, redact
from nbstream.response import LABELS, Response
from nbstream.settings import Settings

TICK = 0.1
"""Seconds between the engine's timer ticks (timeouts are checked, the loop wakes up)."""

TRUNCATED = (
    "the stream ended without its completion event (connection dropped?); "
    "the answer may be incomplete"
)
EMPTY = (
    "the server ended the stream before sending anything (no text, no completion event): "
    "the prompt may be longer than the model's context, or the model failed to load; "
    "check the server's log"
)


class Sink(Protocol):
    """Where a stream's progress goes (widget, terminal, nothing)."""

    pumps_widget_messages: bool
    """True if widget messages (the Stop button) must be pumped while the stream runs
    (ipykernel < 7.4, see :mod:`nbstream.kernel`)."""

    def on_start(self, stream: Stream) -> None: ...

    def on_delta(self, stream: Stream, delta: str) -> None: ...

    def on_status(self, stream: Stream) -> None: ...

    def on_end(self, stream: Stream, response: Response) -> None: ...


class NullSink:
    """Shows nothing (``display="none"``)."""

    pumps_widget_messages = False

    def on_start(self, stream: Stream) -> None:
        pass

    def on_delta(self, stream: Stream, delta: str) -> None:
        pass

    def on_status(self, stream: Stream) -> None:
        pass

    def on_end(self, stream: Stream, response: Response) -> None:
        pass


def neutral(option: str) -> str:
    """How errors below the front doors name an option."""
    return f"the {option} option"


class Stream:
    """One run of one provider stream. Create it, then ``await stream.run()``.

    ``state`` goes ``waiting`` (→ ``retrying`` → ``waiting`` …) → ``streaming`` → the
    finish reason (``stop``, ``length``, ``cancelled``, ``error``); ``status_note`` says
    more while retrying.
    """

    def __init__(
        self,
        provider: Provider,
        request: Request,
        *,
        model_id: str,
        settings: Settings | None = None,
        sink: Sink | None = None,
        note: str | None = None,
        describe_option: Callable[[str], str] = neutral,
        on_response: Callable[[Stream, Response], Response | None] | None = None,
        prefix: str = "",
    ) -> None:
        self.provider = provider
        self.request = request
        self.model_id = model_id
        self.settings = settings or Settings()
        self.note = note
        self.describe_option = describe_option
        self.on_response = on_response
        self.sink: Sink = sink or NullSink()
        self.prefix = prefix
        """What earlier rounds of the same answer said (after tool calls): the text starts
        with it."""
        self.parts: list[str] = [prefix] if prefix else []
        self.chunks = 0
        self.state = "waiting"
        self.status_note = ""
        self.attempts = 0
        self.started: float | None = None
        self.first_token_at: float | None = None
        self.interrupted = False
        self.retry: tuple[int | None, float] | None = None
        """While ``retrying``: the HTTP status that is retried (``None``: a connection
        error) and the seconds of the wait (a batch slows down on a 429)."""
        self._attempt_started = 0.0
        self._last_activity = 0.0
        self._high_surrogate = ""
        self._final: Final | None = None
        self.thinking_parts: list[str] = []
        """The model's thinking so far (``ThinkingDelta``), apart from the answer."""
        self.thinking_chunks = 0
        self.first_thinking_at: float | None = None
        self.thinking_ended_at: float | None = None
        """When the answer (or a tool call) started after the thinking."""
        self.calls: dict[int, list[str]] = {}
        """The tool calls streaming in: index → [name, arguments so far] (for the status)."""
        self._price: Price | None = None
        self._input_estimate = 0
        if self.settings.max_cost is not None:
            self._price = price_of(model_id, self.settings.prices)
            self._input_estimate = estimate_input_tokens(request)
        self._error: str | None = None
        self._cancel_reason: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._stop_requested = threading.Event()

    # -- control -------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the stream to stop. Safe to call from any thread, any number of times."""
        self._stop_requested.set()
        self.call_in_loop(lambda: self._cancel("stopped"))

    @property
    def stop_requested(self) -> bool:
        """:meth:`stop` was called (the stream may still be closing)."""
        return self._stop_requested.is_set()

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

    def add_note(self, text: str) -> None:
        """Add a remark to :attr:`note` (the status line shows it) and tell the sink. For
        providers, through :func:`nbstream.providers.base.note`; call it on the loop."""
        parts = [p for p in (self.note or "").split(" · ") if p]
        if text and text not in parts:
            parts.append(text)
            self.note = " · ".join(parts)
            self.sink.on_status(self)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def label(self) -> str:
        """The status words for the current state (the one table: ``response.LABELS``)."""
        return self.status_note or LABELS.get(self.state, self.state)

    @property
    def elapsed(self) -> float:
        return 0.0 if self.started is None else time.monotonic() - self.started

    # -- running -------------------------------------------------------------------------

    async def run(self) -> Response:
        """Run to the end and return the :class:`Response`. Never raises for stream
        failures; if the awaiting task is cancelled (kernel interrupt) the stream is
        cleaned up, ``self.interrupted`` is set and the partial response returned."""
        self._loop = asyncio.get_running_loop()
        self.started = time.monotonic()
        self.sink.on_start(self)
        notes = NOTES.set(self.add_note)  # the provider's task sees it (providers.base.note)
        try:
            self._task = asyncio.ensure_future(self._consume())
        finally:
            NOTES.reset(notes)
        if self._stop_requested.is_set():  # stop() before run(): honour it
            self._cancel("stopped")
        self._tick_handle = self._loop.call_later(TICK, self._tick)
        try:
            await asyncio.wait({self._task})
        except asyncio.CancelledError:
            # The cell itself was cancelled (kernel interrupt): clean up, keep the text.
            self.interrupted = True
            self._cancel("stopped")
            await _wait_uncancellable(self._task)
        finally:
            if self._tick_handle is not None:
                self._tick_handle.cancel()
        response = self._response()
        self.state = response.finish_reason
        self.status_note = ""
        if self.on_response is not None:
            # The front door's bookkeeping (cost, history): before the sink shows the end,
            # also after an interrupt. It must not cost the user the answer. It may give
            # the answer in its final form (a validated structured answer's own JSON).
            try:
                response = self.on_response(self, response) or response
            except Exception as exc:
                warnings.warn(
                    f"nbstream: recording the answer failed: {type(exc).__name__}: {exc}",
                    RuntimeWarning,
                    stacklevel=2,
                )
        self.sink.on_end(self, response)
        return response

    async def _consume(self) -> None:
        try:
            while True:
                try:
                    await self._attempt()
                    return
                except ProviderError as exc:
                    wait, refusal = self._retry_wait(exc)
                    if wait is None:
                        self._error = self._word(exc, refusal)
                        return
                    await self._wait_for_retry(exc, wait)
        except asyncio.CancelledError:
            if self._cancel_reason is None:  # not ours: propagate
                raise
        except Exception as exc:  # a bug or an SDK surprise: keep the text, say what it was
            self._error = redact(one_line(f"{type(exc).__name__}: {exc}"))

    async def _attempt(self) -> None:
        self.attempts += 1
        self._attempt_started = self._last_activity = time.monotonic()
        stream = self.provider(self.request)
        try:
            async for item in stream:
                if isinstance(item, Final):
                    self._final = item
                    break
                if isinstance(item, ToolCallDelta):
                    self._tool_delta(item)
                    continue
                if isinstance(item, ThinkingDelta):
                    self._thinking_delta(item)
                    continue
                delta = self._clean(item)
                if not delta:
                    continue
                now = time.monotonic()
                self._last_activity = now
                if self.first_token_at is None:
                    self.first_token_at = now
                    if self.first_thinking_at is not None:
                        self.thinking_ended_at = now
                    self._set_state("streaming")
                self.parts.append(delta)
                self.chunks += 1
                self.sink.on_delta(self, delta)
                if self._price is not None:
                    self._check_cost()
        finally:
            await _aclose(stream)
        if self._high_surrogate:  # a high surrogate with nothing after it
            self._high_surrogate = ""
            self.parts.append("\ufffd")

    def _thinking_delta(self, item: ThinkingDelta) -> None:
        """Thinking streaming in: progress for the timeouts (a model that thinks for minutes
        is not silent), kept apart from the answer, shown by sinks that can."""
        text = self._clean(item.text) if item.text else ""
        if not text:
            return
        now = time.monotonic()
        self._last_activity = now
        if self.first_thinking_at is None:
            self.first_thinking_at = now
        self.thinking_parts.append(text)
        self.thinking_chunks += 1
        if self._price is not None:
            self._check_cost()
        if self.state in ("waiting", "retrying"):
            self._set_state("thinking")
        show = getattr(self.sink, "on_thinking", None)
        if show is not None:
            show(self, text)

    @property
    def thinking(self) -> str:
        return "".join(self.thinking_parts)

    def running_cost(self) -> float:
        """The estimated cost so far: the prompt (characters ÷ 4) and every token out."""
        assert self._price is not None
        out = self.chunks + self.thinking_chunks
        return self._price.cost({"input_tokens": self._input_estimate, "output_tokens": out})

    def _check_cost(self) -> None:
        cap = self.settings.max_cost
        if cap is not None and self.running_cost() > cap:
            self.add_note(f"ended at the cost cap {self.describe_option('max_cost')}: ${cap:g}")
            self._cancel("max_cost")

    def _tool_delta(self, item: ToolCallDelta) -> None:
        """A tool call streaming in: activity (timeouts), and the status says which."""
        now = time.monotonic()
        self._last_activity = now
        if self.first_token_at is None:
            self.first_token_at = now
            self._set_state("streaming")
        if self.first_thinking_at is not None and self.thinking_ended_at is None:
            self.thinking_ended_at = now
        call = self.calls.setdefault(item.index, ["", ""])
        if item.name:
            call[0] = item.name
        call[1] += item.arguments
        self.status_note = f"calling {call[0] or 'a tool'}…"
        self.sink.on_status(self)

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        """The calls the model asked for, once the stream completed (else none)."""
        return self._final.tool_calls if self._final is not None else ()

    @property
    def thinking_blocks(self) -> tuple[Any, ...]:
        """The provider's thinking blocks to send back (a tool loop), once completed."""
        return self._final.thinking_blocks if self._final is not None else ()

    def _clean(self, delta: str) -> str:
        """Join a surrogate pair split across deltas; replace lone surrogates by U+FFFD."""
        if not isinstance(delta, str):
            raise TypeError(f"a provider yielded {type(delta).__name__}, not str or Final")
        if self._high_surrogate:
            delta, self._high_surrogate = self._high_surrogate + delta, ""
        if delta and "\ud800" <= delta[-1] <= "\udbff":
            delta, self._high_surrogate = delta[:-1], delta[-1]
        try:
            delta.encode("utf-8")
        except UnicodeEncodeError:
            delta = delta.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
        return delta

    # -- retries ---------------------------------------------------------------------------

    def _retry_wait(self, exc: ProviderError) -> tuple[float | None, str]:
        """Seconds to wait before retrying ``exc``, or ``None``: do not retry; and, when a
        retry is refused for a reason the user can change, that reason (else ``""``)."""
        retries = self.settings.http_retries
        began = self.first_token_at is not None or self.first_thinking_at is not None
        if not exc.retryable or began or self.attempts > retries:
            return None, ""
        cap = self.settings.retry_max_wait
        if exc.retry_after is not None:
            if exc.retry_after > cap:
                return None, (
                    f" (the server asked to retry after {exc.retry_after:g} s, longer "
                    f"than {self.describe_option('retry_max_wait')}: {cap:g} s)"
                )
            return exc.retry_after, ""
        backoff = min(cap, 0.5 * 2.0 ** (self.attempts - 1))
        return backoff * random.uniform(0.5, 1.0), ""  # jitter: clients do not retry in step

    async def _wait_for_retry(self, exc: ProviderError, wait: float) -> None:
        cause = f"HTTP {exc.status}" if exc.status else "failed"
        retry = f"{self.attempts}/{self.settings.http_retries}"
        self.status_note = f"{cause} — retrying in {wait:.0f} s ({retry})"
        if wait < 1:
            self.status_note = f"{cause} — retrying ({retry})"
        self.retry = (exc.status, wait)
        self._set_state("retrying")
        await asyncio.sleep(wait)  # Stop cancels the task: the wait ends at once
        self.status_note = ""
        self.retry = None
        self._set_state("waiting")

    def _word(self, exc: ProviderError, detail: str = "") -> str:
        message = str(exc) + detail
        if self.attempts > 1:
            message += f" (after {self.attempts - 1} {_plural(self.attempts - 1, 'retry')})"
        if exc.option:
            message += f"; change {self.describe_option(exc.option)}"
        return message

    # -- timers ----------------------------------------------------------------------------

    def _tick(self) -> None:
        task = self._task
        if task is None or task.done():
            return
        now = time.monotonic()
        s = self.settings
        waits = s.first_token_timeout + (s.idle_timeout if self.request.whole else 0.0)
        if self.state == "waiting" and now - self._attempt_started >= waits:
            self._cancel("first_token_timeout")  # a whole answer: the first token is all of it
        elif (
            self.state in ("streaming", "thinking") and now - self._last_activity >= s.idle_timeout
        ):
            self._cancel("idle_timeout")
        assert self._loop is not None
        self._tick_handle = self._loop.call_later(TICK, self._tick)

    def _cancel(self, reason: str) -> None:
        if self._task is None or self._task.done() or self._cancel_reason is not None:
            return
        self._cancel_reason = reason
        self._task.cancel()

    def _set_state(self, state: str) -> None:
        self.state = state
        self.sink.on_status(self)

    # -- the verdict -----------------------------------------------------------------------

    def empty_stream_hint(self) -> str:
        """The provider's words for a stream that ended before sending anything."""
        hint = capabilities(self.model_id.partition(":")[0]).empty_stream_hint
        return hint(self.request) if hint is not None else ""

    def _response(self) -> Response:
        usage = None
        error = None
        finish: FinishReason
        reason = self._cancel_reason
        if self._final is not None:
            finish = self._final.finish_reason
            usage = self._final.usage
        elif reason == "stopped":
            finish = "cancelled"
        elif reason == "max_cost":
            finish = "length"  # cut by a limit the user set, like max_tokens
        else:
            finish = "error"
            s = self.settings
            if reason == "first_token_timeout" and self.request.whole:
                error = (
                    f"no answer {s.first_token_timeout + s.idle_timeout:g} s after the request "
                    "was sent (asked whole: first-token + idle timeout); raise "
                    f"{self.describe_option('first_token_timeout')}"
                )
            elif reason == "first_token_timeout":
                error = (
                    f"no first token {s.first_token_timeout:g} s after the request was sent "
                    f"(first-token timeout); raise {self.describe_option('first_token_timeout')}"
                )
            elif reason == "idle_timeout":
                error = (
                    f"no data for {s.idle_timeout:g} s after {self.chunks} "
                    f"{_plural(self.chunks, 'token')} (idle timeout); "
                    f"raise {self.describe_option('idle_timeout')}"
                )
            elif self._error:
                error = self._error
            else:
                error = TRUNCATED if self.parts else EMPTY
                if not self.parts:
                    error += self.empty_stream_hint()
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
            thinking=self.thinking or None,
            time_to_thinking=(
                None if self.first_thinking_at is None else self.first_thinking_at - self.started
            ),
            thinking_seconds=self._thinking_seconds(),
            thinking_chunks=self.thinking_chunks,
        )

    def _thinking_seconds(self) -> float | None:
        if self.first_thinking_at is None:
            return None
        end = self.thinking_ended_at or self.first_token_at or time.monotonic()
        return max(end - self.first_thinking_at, 0.0)


def estimate_input_tokens(request: Request) -> int:
    """The prompt's tokens, roughly: its characters (system, earlier turns, prompt) ÷ 4."""
    chars = len(request.prompt) + len(request.system or "")
    chars += sum(len(str(m.get("content") or "")) for m in request.messages)
    return chars // 4


def _plural(n: int, word: str) -> str:
    if n == 1:
        return word
    return word[:-1] + "ies" if word.endswith("y") else word + "s"


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
