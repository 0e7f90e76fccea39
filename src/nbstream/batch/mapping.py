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
* One progress display (:mod:`nbstream.display.progress`): a widget with counts, tokens/s, ETA,
  the answer streaming in a small pane and a Stop button that stops every stream in flight
  (each request is closed upstream) and returns what finished plus cancelled rows.

``mode="batch"`` submits the rows to the provider's own batch service instead (OpenAI Batch
API, Anthropic Message Batches: :mod:`nbstream.batch.service`) — half the price, runs for
hours on the provider's side. The call returns a :class:`Job` at once; its progress display
polls; ``await job`` gives the results in row order. The job id is recorded in the history
file, so ``nbstream.collect(job_id)`` picks the results up from another kernel.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from typing_extensions import Unpack

from nbstream.background import defaults as background_defaults
from nbstream.background import run_in_background
from nbstream.batch.rows import (
    Missing,
    empty_rows,
    fill_prompts,
    skipped_response,
    take_rows,
)
from nbstream.cache import Pack, pack_path
from nbstream.errors import SettingsError
from nbstream.limits import Limiter
from nbstream.pricing import format_cost
from nbstream.providers import capabilities, registered
from nbstream.run import (
    caller_namespace,
    plan,
)
from nbstream.settings import UNSET, Settings, configured, resolve

if TYPE_CHECKING:
    from nbstream.api import Options

from nbstream.batch import service as batch_service
from nbstream.batch.estimate import estimate, quote_in
from nbstream.batch.job import MAP_DEFAULTS, MAX_CONCURRENCY, Job, Mode
from nbstream.batch.services import ServiceRunner
from nbstream.batch.streams import StreamRunner
from nbstream.display.progress import Tally, make_progress
from nbstream.providers.batches import BatchLimits

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
    budget: float | None = None,
    batch_limits: tuple[int | None, int | None] = (None, None),
) -> Job:
    """Check everything, show the progress display (in the caller's thread: its output
    belongs to the running cell) and start the batch on the background loop."""

    _check(concurrency, rpm, tpm, mode)
    if budget is not None and (isinstance(budget, bool) or not budget > 0):
        raise ValueError(f"budget must be a positive number of USD, got {budget!r}")
    call = dict(options)
    unknown = [k for k in call if k not in Settings.model_fields]
    if unknown:
        raise TypeError(f"map() got unknown keyword argument(s): {', '.join(sorted(unknown))}")
    defaults = {**MAP_DEFAULTS, **(background_defaults() or {})} if background else MAP_DEFAULTS
    try:
        decided = plan(call, namespace=namespace, defaults=defaults)  # once for every row
    except SettingsError as exc:
        raise SettingsError(exc.problems, call_name=str) from None
    settings, schema = decided.settings, decided.schema
    if settings.chat:
        raise ValueError(
            "map() sends every row on its own; a conversation (chat=…) is one thread of "
            "turns: leave chat out"
        )
    provider, full_id = decided.provider_name, decided.model_id
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
    rows.namespaces = []  # the prompts are filled: ~400 bytes a row less while it runs
    for index in skipped:  # nothing is sent for them; the runners take the other rows
        empty = skipped_response(full_id)
        job.responses[index] = empty
        tally.record(empty)
    display = make_progress(settings.display, tally, on_stop=job.stop)

    if mode == "batch" and budget is not None:
        priced = estimate(
            list(prompts), full_id, system=settings.system, max_tokens=settings.max_tokens,
            prices_file=settings.prices,
        )  # fmt: skip
        if priced.batch is None or priced.batch > budget:
            display.close()
            raise ValueError(
                f"the provider batch is estimated at {format_cost(priced.batch)}, over the "
                f"budget of ${budget:g} (a batch cannot stop halfway at a price): raise "
                "budget=, send fewer rows, or use mode='stream', which stops at the budget"
            )
    if mode == "batch":
        if not capabilities(provider).batch:
            display.close()
            with_one = ", ".join(name for name, caps in registered() if caps.batch)
            raise ValueError(
                f"mode='batch' needs a provider with a batch service ({with_one}), "
                f"not {provider!r}; a self-hosted OpenAI-compatible cluster (vLLM) is used "
                "with base_url=… and the default mode='stream'"
            )
        limits = _limits(provider, *batch_limits)
        runner_b = ServiceRunner(
            job, prompts, settings, provider, full_id, display, schema, limits=limits,
            pack=_pack(settings, call, full_id, prompts),
        )  # fmt: skip
        job._stopper = runner_b.stop
        submitted = run_in_background(runner_b.submit)
        job.id = submitted.result()  # errors (no key, refused upload) raise here, in the cell
        job._future = run_in_background(runner_b.run)
        return job

    pack = _pack(settings, call, full_id, prompts)
    runner = StreamRunner(
        job, prompts, decided, concurrency, Limiter(rpm, tpm), display, budget=budget, pack=pack
    )
    job._stopper = runner.stop
    job._future = run_in_background(runner.run)
    return job


def _pack(settings: Settings, call: dict[str, Any], model: str, prompts: list[str]) -> Pack | None:
    """The one file a map's finished rows are recorded in, unless the replay cache was
    chosen (``cache=``, ``%config``, the environment): then one committable file each."""
    explicit = resolve({"cache": call.get("cache", UNSET)}, configured()).cache
    if settings.cache == "auto" and explicit == "off":  # map's own default
        return Pack(pack_path(settings.cache_dir, model, prompts))
    return None


def _limits(provider: str, rows: int | None, size: int | None) -> BatchLimits | None:
    """``batch_rows`` / ``batch_bytes`` below the service's own limits (``None``: those)."""
    if rows is None and size is None:
        return None
    own = batch_service.limits(provider)
    for name, value, most in (("batch_rows", rows, own.rows), ("batch_bytes", size, own.bytes)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most
        ):
            raise ValueError(
                f"{name} must be an int from 1 to {most:,} ({provider}'s own limit), got {value!r}"
            )
    return BatchLimits(rows or own.rows, size or own.bytes)


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
    budget: float | None = None,
    dry_run: bool = False,
    batch_rows: int | None = None,
    batch_bytes: int | None = None,
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

    ``budget`` (USD): no row starts once what was spent, what is in flight and the row's
    own estimate would pass it (rows that finished are kept; the summary says how many were
    not started; with ``mode="batch"``, a batch estimated over it is not submitted).
    ``dry_run=True``: send nothing and return :func:`quote`'s estimate.

    ``mode="batch"`` splits the rows into as many provider batches as the service's limits
    need (OpenAI 50,000 requests / 200 MB, Anthropic 100,000 / 256 MB): one :class:`Job`,
    one id, results in row order. ``batch_rows`` / ``batch_bytes`` set lower limits per
    provider batch (smaller parts finish, and are collected, sooner).

    Stop (the progress view's button, ``job.stop()``, or a kernel interrupt) closes every
    request in flight and returns what finished plus cancelled rows (after an interrupt
    they are in ``_llm``). Re-running the same call resumes: finished rows are replayed
    from the replay cache (``cache="auto"`` here unless configured) at no cost.
    """
    knobs = (concurrency, rpm, tpm, mode, background, column, missing)
    if dry_run:
        return quote_in(items, prompt, missing, dict(options), caller_namespace())
    parts = (batch_rows, batch_bytes)
    job = _start(items, prompt, *knobs, dict(options), caller_namespace(), budget, parts)
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
    budget: float | None = None,
    dry_run: bool = False,
    batch_rows: int | None = None,
    batch_bytes: int | None = None,
    **options: Unpack[Options],
) -> Any:
    """Blocking :func:`map` for scripts and plain functions (same arguments). Ctrl-C stops
    the batch and returns what finished plus cancelled rows (in a kernel: stores them in
    ``_llm`` and raises KeyboardInterrupt)."""
    knobs = (concurrency, rpm, tpm, mode, background, column, missing)
    if dry_run:
        return quote_in(items, prompt, missing, dict(options), caller_namespace())
    parts = (batch_rows, batch_bytes)
    job = _start(items, prompt, *knobs, dict(options), caller_namespace(), budget, parts)
    if background or mode == "batch":
        return job
    return job.wait()
