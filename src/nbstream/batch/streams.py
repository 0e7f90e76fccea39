"""Rows as streams (``mode="stream"``): each row an ordinary stream on nbstream's background
loop, ``concurrency`` at a time, within the rpm / tpm limits."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

from nbstream import cache
from nbstream.display.progress import PANE_CHARS
from nbstream.engine import Stream, estimate_input_tokens
from nbstream.limits import Limiter
from nbstream.pricing import price_of
from nbstream.providers.common import one_line, redact, shared_clients
from nbstream.response import Response
from nbstream.run import (
    Plan,
    make_stream,
    run_awaited,
    stop_call,
)

if TYPE_CHECKING:
    from nbstream.display.progress import ProgressDisplay

from nbstream.batch.job import Job

# -- running rows as streams ------------------------------------------------------------------


class RowSink:
    """A row's stream reports to the batch (a :class:`~nbstream.engine.Sink`)."""

    pumps_widget_messages = False

    def __init__(self, runner: StreamRunner, index: int) -> None:
        self.runner = runner
        self.index = index

    def on_start(self, stream: Stream) -> None:
        pass

    def on_delta(self, stream: Stream, delta: str) -> None:
        if stream.chunks == 1:
            self.runner.limiter.answered(False)
        self.runner.delta(self.index, delta)

    def on_status(self, stream: Stream) -> None:
        if stream.state == "retrying" and stream.retry is not None:
            status, wait = stream.retry
            if status == 429:
                self.runner.throttled += 1
                if self.runner.limiter.answered(True, wait):
                    self.runner.note(f"rate limited (HTTP 429): new requests wait {wait:.1f} s")
                else:
                    self.runner.note(f"HTTP 429 on {self.runner.throttled} requests: retried")

    def on_end(self, stream: Stream, response: Response) -> None:
        pass


GC_THRESHOLD = 20_000
"""The collector's first threshold while a map runs (Python's default: 700)."""
_relaxed = 0
_saved: tuple[int, int, int] | None = None


@contextlib.asynccontextmanager
async def relaxed_gc() -> AsyncIterator[None]:
    """Collect young objects less often while rows run. A row leaves a few objects that
    live on (its Response) and some that only the cyclic collector frees; with Python's
    default thresholds the collector's work grew with the rows done: 0.36 → 0.75 ms of CPU
    a row over 100,000 rows, against a flat 0.28–0.39 with this (``docs/design.md``,
    bench/results-map-100k.md). Restored when the last running map ends."""
    global _relaxed, _saved
    if _relaxed == 0:
        _saved = gc.get_threshold()
        gc.set_threshold(max(GC_THRESHOLD, _saved[0]), *_saved[1:])
    _relaxed += 1
    try:
        yield
    finally:
        _relaxed -= 1
        if _relaxed == 0 and _saved is not None:
            gc.set_threshold(*_saved)


class StreamRunner:
    """Runs the rows as streams, ``concurrency`` at a time (the worker tasks pull rows in
    order), on the loop it is awaited on."""

    def __init__(
        self,
        job: Job,
        prompts: list[str],
        decided: Plan,
        concurrency: int,
        limiter: Limiter,
        display: ProgressDisplay,
        budget: float | None = None,
        pack: cache.Pack | None = None,
    ) -> None:
        self.job = job
        self.pack = pack
        """Where the rows are recorded and resumed from (one file), unless ``None``: the
        replay cache's own files."""
        self.budget = budget
        """USD: no row starts when what was spent, what is in flight and its own estimate
        would pass it."""
        self.spent = 0.0
        self.in_flight = 0.0
        self.not_started = 0
        self._price = price_of(decided.model_id, decided.settings.prices)
        self.prompts = prompts
        self.plan = decided
        self.settings = decided.settings
        self.concurrency = concurrency
        self.limiter = limiter
        self.display = display
        self.tally = job.tally
        self.streams: dict[int, list[Stream]] = {}
        """Running rows: each row's stream running now (a row with tools runs several)."""
        self.stopping = False
        self.focus: int | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.average_output = 256.0
        self.throttled = 0

    def stop(self) -> None:
        """Thread-safe: no new row starts; every running stream stops."""
        self.stopping = True
        loop = self.loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._stop_streams)

    def _stop_streams(self) -> None:
        self.tally.note = "stopping…"
        for current in list(self.streams.values()):
            stop_call(current)
        self.display.refresh()

    def delta(self, index: int, delta: str) -> None:
        tally = self.tally
        tally.output_tokens += 1
        if self.focus == index:
            text = tally.pane_text + delta  # kept short: the display sends its last PANE_CHARS
            tally.pane_text = text if len(text) < 2 * PANE_CHARS else text[-PANE_CHARS:]
        self.display.refresh()

    def note(self, text: str) -> None:
        self.tally.note = text
        self.display.refresh()

    async def run(self) -> Any:
        self.loop = asyncio.get_running_loop()
        cache.REPLAY_PACE.set(0.0)  # resumed rows are there at once (copied into the workers)
        cache.PACK.set(self.pack)  # the rows record into (and resume from) one file
        todo = [i for i, found in enumerate(self.job.responses) if found is None]
        order = iter(todo)
        try:
            async with shared_clients(), relaxed_gc():  # one SDK client for all rows
                workers = [
                    asyncio.ensure_future(self._worker(order))
                    for _ in range(min(self.concurrency, len(todo)))
                ]
                await asyncio.gather(*workers)
        finally:
            self.tally.ended = time.monotonic()
            self.tally.running = 0
            if self.tally.note == "stopping…":
                self.tally.note = "stopped"
            self.display.close()
        return self.job.results()

    async def _worker(self, order: Iterable[int]) -> None:
        for index in order:
            try:
                response = await self._row(index)
            except Exception as exc:  # a row that cannot even start: its error, the batch goes on
                response = Response(
                    "",
                    finish_reason="error",
                    error=redact(one_line(f"{type(exc).__name__}: {exc}")),
                    model=self.tally.model,
                    prompt=self.prompts[index],
                )
            self.job.responses[index] = response
            self._count(index, response)

    async def _row(self, index: int) -> Response:
        prompt = self.prompts[index]
        if self.stopping:
            return self._cancelled(index)
        # One row at a time streams into the pane; the others are asked whole where the
        # provider can (one response to parse, not a chunk per token: bench_batch.py).
        whole = self.focus is not None or self.settings.display == "none"
        stream = make_stream(prompt, self.plan, sink=RowSink(self, index), whole=whole)
        lookup = getattr(stream.on_response, "lookup", None)
        entry = None
        if lookup is None or not lookup.hit:  # a cached row costs nothing: no limits
            estimate = len(prompt) // 4 + int(self.settings.max_tokens or self.average_output)
            entry = await self.limiter.acquire(estimate, lambda: self.stopping)
            if entry is None:
                return self._cancelled(index)
        guess = self._estimate(stream)
        if self.budget is not None and self.spent + self.in_flight + guess > self.budget:
            if entry is not None:
                self.limiter.settle(entry, 0)
            return self._over_budget(index)
        self.in_flight += guess
        if not whole:
            self.focus = index
            self.tally.pane_title = f"row {self.job.rows.labels[index]!r}"
            self.tally.pane_text = ""
        current = self.streams[index] = [stream]
        self.tally.running += 1
        self.display.refresh()
        try:
            response = await run_awaited(stream, pump=False, current=current)
        finally:
            del self.streams[index]
            self.tally.running -= 1
            self.in_flight -= guess
            if self.focus == index:
                self.focus = None
        self.spent += response.cost if response.cost is not None else guess
        if entry is not None and response.usage:
            used = sum(int(response.usage.get(k) or 0) for k in ("input_tokens", "output_tokens"))
            self.limiter.settle(entry, used)
        return response

    def _estimate(self, stream: Stream) -> float:
        """A row's cost before it runs: its request (the engine's characters ÷ 4), and
        max_tokens or the output of the rows finished so far (256 tokens before any)."""
        if self._price is None:
            return 0.0
        tokens_in = estimate_input_tokens(stream.request)
        tokens_out = int(self.settings.max_tokens or self.average_output)
        return self._price.cost({"input_tokens": tokens_in, "output_tokens": tokens_out})

    def _over_budget(self, index: int) -> Response:
        """A row not started: the budget would pass (the summary counts them)."""
        self.not_started += 1
        self.tally.note = f"budget ${self.budget:g} reached: {self.not_started} rows not started"
        return Response(
            "",
            finish_reason="cancelled",
            error=f"not started: the budget of ${self.budget:g} would be passed",
            model=self.tally.model,
            prompt=self.prompts[index],
        )

    def _cancelled(self, index: int) -> Response:
        return Response(
            "", finish_reason="cancelled", model=self.tally.model, prompt=self.prompts[index]
        )

    def _count(self, index: int, response: Response) -> None:
        tally = self.tally
        tally.output_tokens -= response.chunks  # counted live, a delta each: now the reported
        tally.record(response)
        paid = tally.done - tally.cached
        if response.finish_reason in ("stop", "length") and not response.cached and paid:
            self.average_output += (response.output_tokens - self.average_output) / paid
        if self.focus is None and response.text:  # the pane shows the last finished answer
            tally.pane_title = f"row {self.job.rows.labels[index]!r} · {response.ending}"
            tally.pane_text = response.text[-PANE_CHARS:]
        self.display.refresh()
