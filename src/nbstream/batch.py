"""One prompt over many rows: :func:`map`, :func:`map_sync`, their :class:`Job`, :func:`collect`.

``await nbstream.map(df, "Classify: {review}", schema=Sentiment, concurrency=8)`` fills the
template per row (the brace rules of ``%%llm``: ``{review}`` names a column or a dict key,
then a variable of the caller; other braces stay) and returns the answers in input order:
a list of :class:`~nbstream.Response` for a list, a Series for a Series, and for a DataFrame
a new DataFrame with the answer (or the schema's fields) as columns next to the input.

How a batch runs (``mode="stream"``, the default):

* Rows run as ordinary streams (:func:`nbstream.run.make_stream`: same options, cost,
  history, schema validation and re-asks), ``concurrency`` at a time, on nbstream's
  background loop (:mod:`nbstream.background`), so the kernel stays free while they run.
* Politeness: optional ``rpm`` / ``tpm`` limits (sliding one-minute windows; tokens are
  estimated before a request — 4 characters a token plus ``max_tokens`` or the average
  answer so far — and corrected by the usage the provider reports). HTTP 429 / 5xx before
  the first token are retried by the engine with backoff and jitter, honouring
  ``Retry-After``; a 429 also holds back *new* requests for its wait. A row that still
  fails keeps its error in its Response and the batch goes on.
* Resumable: the replay cache is on (``cache="auto"``) unless configured otherwise
  (:data:`MAP_DEFAULTS`): a finished row is recorded, and re-running the same call after a
  Stop or a crash replays it at once instead of paying again.
* One progress display (:mod:`nbstream.progress`): a widget with counts, tokens/s, ETA,
  the answer streaming in a small pane and a Stop button that stops every stream in flight
  (each request is closed upstream) and returns what finished plus cancelled rows.

``mode="batch"`` submits the rows to the provider's own batch service instead (OpenAI Batch
API, Anthropic Message Batches: :mod:`nbstream.batch_service`) — half the price, runs for
hours on the provider's side. The call returns a :class:`Job` at once; its progress display
polls; ``await job`` gives the results in row order. The job id is recorded in the history
file, so ``nbstream.collect(job_id)`` picks the results up from another kernel.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from typing_extensions import Unpack

from . import cache
from .background import defaults as background_defaults
from .background import run_in_background, wait_blocking, wait_in_cell
from .call import judge
from .engine import Stream
from .errors import SettingsError
from .kernel import get_shell, in_kernel
from .limits import Limiter
from .progress import PANE_CHARS
from .providers import capabilities, parse_model_id, registered
from .providers.base import Final
from .providers.common import one_line, redact, shared_clients
from .response import Response
from .rows import (
    Missing,
    Rows,
    empty_rows,
    fill_prompts,
    shape,
    skipped_response,
    take_rows,
)
from .run import (
    caller_namespace,
    configured,
    make_request,
    make_stream,
    resolve_model,
    run_awaited,
)
from .settings import UNSET, Settings, resolve

if TYPE_CHECKING:
    from .api import Options
    from .progress import ProgressDisplay, Tally
    from .structured import Schema

MAP_DEFAULTS: dict[str, Any] = {"cache": "auto", "http_retries": 6}
"""Defaults of :func:`map` over the declared ones (below ``%config`` and the environment):
finished rows are cached (a re-run resumes), and a row retries 429 / 5xx up to 6 times
(a thousand rows meet rare events)."""

Mode = Literal["stream", "batch"]
MAX_CONCURRENCY = 256

POLL_FIRST = 1.0
POLL_MAX = 30.0
"""``mode="batch"``: seconds between status polls, growing ×1.5 from the first to the max."""


# -- the job ----------------------------------------------------------------------------------


class Job:
    """A batch that runs (or ran) in the background: ``await job`` or ``job.wait()`` gives the
    results in input order, ``job.stop()`` stops it (in-flight requests are closed upstream;
    a provider batch is cancelled), ``job.tally`` is its progress, ``job.responses`` the
    Responses so far (``None`` for rows not finished). ``job.id``: the provider's batch id
    (``mode="batch"``), for :func:`collect` from another kernel."""

    def __init__(self, tally: Tally, rows: Rows, column: str, schema: Schema | None) -> None:
        self.tally = tally
        self.id: str | None = None
        self.responses: list[Response | None] = [None] * len(rows.namespaces)
        self.rows = rows
        self._column = column
        self._schema = schema
        self._future: concurrent.futures.Future[Any] | None = None
        self._stopper: Callable[[], None] | None = None
        self.interrupted = False

    # -- control

    def stop(self) -> None:
        """Stop the batch (thread-safe; the Stop button calls it). Finished rows are kept."""
        if self._stopper is not None:
            self._stopper()

    @property
    def done(self) -> bool:
        return self._future is not None and self._future.done()

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the batch ends; the results (as :func:`map` returns them). Ctrl-C or
        a kernel interrupt stops the batch and returns (in a kernel: stores in ``_llm`` and
        raises KeyboardInterrupt) what finished plus the cancelled rows."""
        assert self._future is not None
        value = wait_blocking(
            self._future,
            timeout,
            still=lambda: f"the batch is still running: {self.tally.summary()}",
            on_interrupt=self._interrupted,
        )
        return self._result(value)

    def __await__(self) -> Any:
        return self._awaited().__await__()

    async def _awaited(self) -> Any:
        assert self._future is not None
        return self._result(await wait_in_cell(self._future, on_interrupt=self._interrupted))

    def _interrupted(self) -> None:
        """Ctrl-C or a kernel interrupt while waiting: stop, keep what finished."""
        self.interrupted = True
        self.stop()

    def _result(self, value: Any) -> Any:
        """The results; after an interrupt in a kernel, stored in ``_llm`` and the
        interrupt raised (once: a later ``await job`` returns them)."""
        if self.interrupted and in_kernel():
            self.interrupted = False
            shell = get_shell()
            if shell is not None:
                shell.user_ns["_llm"] = value
            raise KeyboardInterrupt
        return value

    def results(self) -> Any:
        """The results shaped like the input, from what has finished so far."""
        return shape(
            self.rows,
            [self._or_cancelled(i) for i in range(len(self.responses))],
            self._column,
            self._schema,
        )

    def _or_cancelled(self, i: int) -> Response:
        found = self.responses[i]
        return (
            found
            if found is not None
            else Response("", finish_reason="cancelled", model=self.tally.model)
        )

    def __repr__(self) -> str:
        state = "done" if self.done else "running"
        ident = f" {self.id}" if self.id else ""
        return f"<nbstream Job{ident} ({state}): {self.tally.summary()}>"


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


class StreamRunner:
    """Runs the rows as streams, ``concurrency`` at a time (the worker tasks pull rows in
    order), on the loop it is awaited on."""

    def __init__(
        self,
        job: Job,
        prompts: list[str],
        call: dict[str, Any],
        settings: Settings,
        concurrency: int,
        limiter: Limiter,
        display: ProgressDisplay,
        namespace: Mapping[str, Any],
    ) -> None:
        self.job = job
        self.prompts = prompts
        self.call = call
        self.settings = settings
        self.concurrency = concurrency
        self.limiter = limiter
        self.display = display
        self.namespace = namespace
        self.tally = job.tally
        self.streams: dict[int, Stream] = {}
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
        for stream in list(self.streams.values()):
            stream.stop()
        self.display.refresh()

    def delta(self, index: int, delta: str) -> None:
        tally = self.tally
        tally.output_tokens += 1
        if self.focus is None:
            self.focus = index
            tally.pane_title = f"row {self.job.rows.labels[index]!r}"
            tally.pane_text = ""
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
        todo = [i for i, found in enumerate(self.job.responses) if found is None]
        order = iter(todo)
        try:
            async with shared_clients():  # one SDK client (and its connections) for all rows
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
        stream = make_stream(
            prompt,
            self.call,
            sink=RowSink(self, index),
            defaults=MAP_DEFAULTS,
            namespace=self.namespace,
        )
        lookup = getattr(stream.on_response, "lookup", None)
        entry = None
        if lookup is None or not lookup.hit:  # a cached row costs nothing: no limits
            estimate = len(prompt) // 4 + int(self.settings.max_tokens or self.average_output)
            entry = await self.limiter.acquire(estimate, lambda: self.stopping)
            if entry is None:
                return self._cancelled(index)
        self.streams[index] = stream
        self.tally.running += 1
        self.display.refresh()
        try:
            response = await run_awaited(stream, pump=False)
        finally:
            del self.streams[index]
            self.tally.running -= 1
            if self.focus == index:
                self.focus = None
        if entry is not None and response.usage:
            used = sum(int(response.usage.get(k) or 0) for k in ("input_tokens", "output_tokens"))
            self.limiter.settle(entry, used)
        return response

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


# -- the front doors -------------------------------------------------------------------------


def _check(concurrency: int, rpm: int | None, tpm: int | None, mode: str) -> None:
    if (
        isinstance(concurrency, bool)
        or not isinstance(concurrency, int)
        or not (1 <= concurrency <= MAX_CONCURRENCY)
    ):
        raise ValueError(
            f"concurrency must be an int from 1 to {MAX_CONCURRENCY}, got {concurrency!r}"
        )
    for name, value in (("rpm", rpm), ("tpm", tpm)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ValueError(f"{name} must be a positive int (or None: no limit), got {value!r}")
    if mode not in ("stream", "batch"):
        raise ValueError(f"mode must be 'stream' or 'batch', got {mode!r}")


def _start(
    items: Any,
    prompt: str | Callable[[Any], str],
    concurrency: int,
    rpm: int | None,
    tpm: int | None,
    mode: str,
    background: bool,
    column: str,
    missing: Missing,
    options: dict[str, Any],
    namespace: Mapping[str, Any],
) -> Job:
    """Check everything, show the progress display (in the caller's thread: its output
    belongs to the running cell) and start the batch on the background loop."""
    from .progress import Tally, make_progress
    from .structured import resolve_schema

    _check(concurrency, rpm, tpm, mode)
    call = dict(options)
    unknown = [k for k in call if k not in Settings.model_fields]
    if unknown:
        raise TypeError(f"map() got unknown keyword argument(s): {', '.join(sorted(unknown))}")
    schema = None
    given = call.get("schema", UNSET)
    if given is not UNSET and given is not None:
        schema = resolve_schema(given, namespace)
        call["schema"] = schema
    try:
        defaults = {**MAP_DEFAULTS, **(background_defaults() or {})} if background else MAP_DEFAULTS
        settings = resolve({**call, "schema": UNSET}, configured(), defaults=defaults)
    except SettingsError as exc:
        raise SettingsError(exc.problems, call_name=str) from None
    if settings.chat:
        raise ValueError(
            "map() sends every row on its own; a conversation (chat=…) is one thread of "
            "turns: leave chat out"
        )
    if schema is None and settings.schema:
        schema = resolve_schema(settings.schema, namespace)
        call["schema"] = schema
    model_id, _ = resolve_model(settings)
    provider, name = parse_model_id(model_id)
    full_id = f"{provider}:{name}" if name else provider
    rows = take_rows(items)
    if missing not in ("skip", "send"):
        raise ValueError(f"missing must be 'skip' or 'send', got {missing!r}")
    skipped = empty_rows(prompt, rows) if missing == "skip" else []
    prompts = fill_prompts(
        prompt,
        rows,
        namespace,
        settings.context_budget,
        skip=skipped,
        blank_missing=missing == "send",
    )

    tally = Tally(total=len(prompts), mode=mode, model=full_id)
    job = Job(tally, rows, column, schema)
    for index in skipped:  # nothing is sent for them; the runners take the other rows
        empty = skipped_response(full_id)
        job.responses[index] = empty
        tally.record(empty)
    display = make_progress(settings.display, tally, on_stop=job.stop)

    if mode == "batch":
        if not capabilities(provider).batch:
            display.close()
            with_one = ", ".join(name for name, caps in registered() if caps.batch)
            raise ValueError(
                f"mode='batch' needs a provider with a batch service ({with_one}), "
                f"not {provider!r}; a self-hosted OpenAI-compatible cluster (vLLM) is used "
                "with base_url=… and the default mode='stream'"
            )
        runner_b = ServiceRunner(job, prompts, settings, provider, full_id, display, schema)
        job._stopper = runner_b.stop
        submitted = run_in_background(runner_b.submit)
        job.id = submitted.result()  # errors (no key, refused upload) raise here, in the cell
        job._future = run_in_background(runner_b.run)
        return job

    runner = StreamRunner(
        job, prompts, call, settings, concurrency, Limiter(rpm, tpm), display, namespace
    )
    job._stopper = runner.stop
    job._future = run_in_background(runner.run)
    return job


async def map(  # nbstream.map, as users name it (shadows the builtin in this module)
    items: Any,
    prompt: str | Callable[[Any], str],
    *,
    concurrency: int = 8,
    rpm: int | None = None,
    tpm: int | None = None,
    mode: Mode = "stream",
    background: bool = False,
    column: str = "answer",
    missing: Missing = "skip",
    **options: Unpack[Options],
) -> Any:
    """Ask ``prompt`` once per row of ``items`` and return the answers in input order.

    ``items``: a list (of strings, dicts or objects), a pandas Series or a DataFrame.
    ``prompt``: a template filled per row with the rules of ``%%llm`` — ``{review}`` is
    the row's column or key ``review`` (else a variable of yours), ``{item}`` the whole row,
    ``{index}`` its index; other braces stay — or a function of the row returning the prompt.
    Every ``%%llm`` option is a keyword (``model=``, ``system=``, ``schema=``, …).

    Returns a list of :class:`~nbstream.Response` for a list, a Series of them for a
    Series, and for a DataFrame a new DataFrame: the input plus an ``answer`` column (named
    by ``column``), or with ``schema=`` the schema's fields as columns; an ``error`` column
    appears when some row failed, was stopped or was skipped.

    ``missing``: a row whose prompt would use a None/NaN value (a column, key or ``{item}``
    the template names) is not sent (``"skip"``: its ``error`` is "empty input", the summary
    counts it) or is sent with the value as an empty string (``"send"``).

    ``concurrency``: streams at once (1–256). ``rpm`` / ``tpm``: requests / tokens per
    minute at most. ``background=True``: return a :class:`Job` at once (``await job``,
    ``job.wait()``, ``job.stop()``) while the kernel stays free. ``mode="batch"``: submit
    to the provider's batch service (OpenAI, Anthropic; half the price, hours on their side)
    and return its :class:`Job` (``job.id`` for :func:`collect`).

    Stop (the progress view's button, ``job.stop()``, or a kernel interrupt) closes every
    request in flight and returns what finished plus cancelled rows (after an interrupt
    they are in ``_llm``). Re-running the same call resumes: finished rows are replayed
    from the replay cache (``cache="auto"`` here unless configured) at no cost.
    """
    knobs = (concurrency, rpm, tpm, mode, background, column, missing)
    job = _start(items, prompt, *knobs, dict(options), caller_namespace())
    if background or mode == "batch":
        return job
    return await job


def map_sync(
    items: Any,
    prompt: str | Callable[[Any], str],
    *,
    concurrency: int = 8,
    rpm: int | None = None,
    tpm: int | None = None,
    mode: Mode = "stream",
    background: bool = False,
    column: str = "answer",
    missing: Missing = "skip",
    **options: Unpack[Options],
) -> Any:
    """Blocking :func:`map` for scripts and plain functions (same arguments). Ctrl-C stops
    the batch and returns what finished plus cancelled rows (in a kernel: stores them in
    ``_llm`` and raises KeyboardInterrupt)."""
    knobs = (concurrency, rpm, tpm, mode, background, column, missing)
    job = _start(items, prompt, *knobs, dict(options), caller_namespace())
    if background or mode == "batch":
        return job
    return job.wait()


# -- provider batch services ---------------------------------------------------------------


class ServiceRunner:
    """``mode="batch"``: submit the rows to the provider's batch service, poll it, map the
    results back to rows. Rows already in the replay cache are not submitted; finished
    rows are recorded in it."""

    def __init__(
        self,
        job: Job,
        prompts: list[str],
        settings: Settings,
        provider: str,
        model_id: str,
        display: ProgressDisplay,
        schema: Schema | None,
        batch_id: str | None = None,
    ) -> None:
        self.job = job
        self.prompts = prompts
        self.settings = settings
        self.provider = provider
        self.model_id = model_id
        self.display = display
        self.schema = schema
        self.batch_id = batch_id
        self.submitted: list[int] = list(range(len(prompts)))
        self.stopping = False
        self.cancel_sent = False
        self.requests: list[Any] = []

    def stop(self) -> None:
        self.stopping = True
        self.job.tally.note = "cancelling…"
        self.display.refresh()

    def _requests(self) -> list[Any]:
        name = self.model_id.partition(":")[2]
        return [make_request(self.settings, p, name, schema=self.schema) for p in self.prompts]

    async def submit(self) -> str:
        """Send the rows that are not cached; return the job id ``provider:batch id``."""
        from . import batch_service
        from . import store as records

        self.requests = self._requests()
        tally = self.job.tally
        cached: dict[int, Response] = {}
        for i, request in enumerate(self.requests):
            if self.job.responses[i] is not None:  # skipped as empty input
                continue
            entry = cache.recorded(self.provider, request, self.settings)
            if entry is not None:
                cached[i] = Response(
                    "".join(entry.deltas),
                    finish_reason=entry.finish_reason,  # type: ignore[arg-type]
                    model=self.model_id,
                    usage=entry.usage,
                    prompt=self.prompts[i],
                    cost=0.0,
                    cached=True,
                )
        for i, response in cached.items():
            self.job.responses[i] = self._validate(response)
            tally.done += 1
            tally.cached += 1
        self.submitted = [i for i, found in enumerate(self.job.responses) if found is None]
        if not self.submitted:
            self.job.id = f"{self.provider}:(all {len(cached)} rows cached)"
            return self.job.id
        if self.settings.cache == "replay":
            raise ValueError(
                f"{len(self.submitted)} rows have no recorded answer and the cache is in replay "
                "mode, so nothing was submitted; record them with cache='auto' first"
            )
        tally.note = f"submitting {len(self.submitted)} rows…"
        self.display.refresh()
        provider_id = await batch_service.submit(
            self.provider,
            [self.requests[i] for i in self.submitted],
            metadata={"nbstream": "map"},
        )
        self.batch_id = provider_id
        job_id = f"{self.provider}:{provider_id}"
        path = records.history_path(self.settings.history)
        if path is not None:
            from .providers.common import mask_url

            base_url = self.requests[0].base_url
            if base_url and mask_url(base_url) != base_url:
                base_url = None  # never stored with credentials: collect() uses the option
            records.save_batch(
                path,
                {
                    "id": job_id,
                    "model": self.model_id,
                    "base_url": base_url,
                    "rows": len(self.prompts),
                    "prompts": self.prompts,
                    "options": {
                        "submitted": self.submitted,
                        "schema": self.schema.label if self.schema else None,
                    },
                    "notebook": records.front_end_context().get("notebook"),
                },
            )
        tally.note = f"{job_id}: submitted"
        self.display.refresh()
        return job_id

    async def run(self) -> Any:
        """Poll until the provider's batch ends, then fetch and place the results."""
        from . import batch_service
        from .pricing import BATCH_DISCOUNT, add_to_session, cost

        tally = self.job.tally
        try:
            if self.batch_id is not None:
                base_url = self.requests[0].base_url if self.requests else self.settings.base_url
                wait = POLL_FIRST
                while True:
                    if self.stopping and not self.cancel_sent:
                        self.cancel_sent = True
                        await batch_service.cancel(self.provider, self.batch_id, base_url=base_url)
                    status = await batch_service.status(
                        self.provider, self.batch_id, base_url=base_url
                    )
                    before = tally.cached
                    tally.done = before + status.succeeded
                    tally.failed = status.failed
                    tally.cancelled = status.cancelled
                    tally.running = max(
                        0, status.total - status.succeeded - status.failed - status.cancelled
                    )
                    tally.note = f"{self.provider} batch {status.provider_status}"
                    if status.error:
                        tally.note += f": {status.error}"
                    self.display.refresh()
                    if status.state not in ("running", "cancelling"):
                        break
                    await _nap(wait, lambda: self.stopping and not self.cancel_sent)
                    wait = min(POLL_MAX, wait * 1.5)
                answers = await batch_service.results(
                    self.provider,
                    self.batch_id,
                    len(self.submitted),
                    model_id=self.model_id,
                    base_url=base_url,
                )
                for i, response in zip(self.submitted, answers, strict=True):
                    response.prompt = self.prompts[i]
                    price = cost(response.model, response.usage, prices_file=self.settings.prices)
                    response.cost = None if price is None else price * BATCH_DISCOUNT
                    add_to_session(response)  # %llm cost
                    final = self._validate(response)
                    self._record(i, response)  # the provider's form, as a stream records it
                    self.job.responses[i] = final
            tally.done = tally.failed = tally.cancelled = tally.cached = tally.skipped = 0
            tally.output_tokens = 0
            tally.cost = 0.0
            for row in self.job.responses:  # counted again from what came back
                if row is not None:
                    tally.record(row)
            tally.running = 0
        finally:
            tally.ended = time.monotonic()
            self.display.close()
        return self.job.results()

    def _validate(self, response: Response) -> Response:
        """As a stream's answer is judged (:meth:`nbstream.call.Call.check`, without
        re-asks): ``data`` and the type's own JSON as text, or an error."""
        if self.schema is None:
            return response
        response, error = judge(self.schema, response)
        if error is not None:
            response.finish_reason = "error"
            response.error = str(error)
        return response

    def _record(self, index: int, response: Response) -> None:
        """A finished row goes into the replay cache (when it records)."""
        if response.cached or response.finish_reason not in ("stop", "length"):
            return
        final = Final("length" if response.finish_reason == "length" else "stop", response.usage)
        cache.keep(
            self.provider, self.model_id, self.requests[index], self.settings, final, response.text
        )


async def _nap(seconds: float, wake: Callable[[], bool]) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end and not wake():
        await asyncio.sleep(0.05)


def collect(
    batch_id: str,
    items: Any = None,
    *,
    column: str = "answer",
    display: str | None = None,
    history: str | None = None,
) -> Job:
    """The :class:`Job` of a provider batch submitted earlier (``mode="batch"``), from any
    kernel: ``await nbstream.collect(job_id)`` (or ``.wait()``) gives the results in row
    order — shaped like ``items`` when you pass the same input again (a DataFrame gets its
    answer columns), else a list of Responses. Polls until the provider's batch ends.
    ``batch_id`` is ``job.id`` (``"openai:batch_…"``); the rows' prompts and model come from
    the history file where the submission was recorded."""
    from . import store as records
    from .progress import Tally, make_progress

    provider, sep, provider_id = batch_id.partition(":")
    if not sep or not provider_id:
        raise ValueError(
            f"{batch_id!r} is not an nbstream batch id: use job.id, e.g. 'openai:batch_abc123'"
        )
    call: dict[str, Any] = {}
    if display is not None:
        call["display"] = display
    if history is not None:
        call["history"] = history
    settings = resolve(call, configured(), defaults=MAP_DEFAULTS)
    path = records.history_path(settings.history)
    found = records.find_batch(path, batch_id) if path is not None else None
    if found is None:
        raise ValueError(
            f"batch {batch_id} is not in the history file {path}: collect() reads the rows' "
            "prompts from the history of the kernel that submitted it (history option)"
        )
    prompts: list[str] = list(found.get("prompts") or [])
    submitted = list((found.get("options") or {}).get("submitted") or range(len(prompts)))
    rows = take_rows(items if items is not None else prompts)
    if len(rows.namespaces) != len(prompts):
        raise ValueError(
            f"batch {batch_id} has {len(prompts)} rows but items has {len(rows.namespaces)}: "
            "pass the same input as when it was submitted (or none)"
        )
    model_id = str(found["model"])
    schema = None
    label = (found.get("options") or {}).get("schema")
    if label:
        from .structured import resolve_schema

        with contextlib.suppress(Exception):
            schema = resolve_schema(label, caller_namespace())
    tally = Tally(total=len(prompts), mode="batch", model=model_id)
    job = Job(tally, rows, column, schema)
    job.id = batch_id
    settings_b = settings
    if found.get("base_url"):
        settings_b = settings.model_copy(update={"base_url": found["base_url"]})
    display_view = make_progress(settings.display, tally, on_stop=job.stop)
    runner = ServiceRunner(
        job, prompts, settings_b, provider, model_id, display_view, schema, batch_id=provider_id
    )
    runner.submitted = submitted
    runner.requests = runner._requests()
    job._stopper = runner.stop
    job._future = run_in_background(runner.run)
    return job


__all__ = ["MAP_DEFAULTS", "Job", "collect", "map", "map_sync"]
