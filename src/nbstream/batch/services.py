"""Rows through a provider's batch service (``mode="batch"``): submit, poll, collect the
results in row order; :func:`collect` picks up a recorded batch from a new kernel."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nbstream import cache
from nbstream.background import run_in_background
from nbstream.batch.rows import (
    take_rows,
)
from nbstream.call import judge
from nbstream.providers.base import Final
from nbstream.response import Response
from nbstream.run import (
    caller_namespace,
    make_request,
)
from nbstream.settings import Settings, configured, resolve

if TYPE_CHECKING:
    from nbstream.display.progress import ProgressDisplay
    from nbstream.structured.schema import Schema

from nbstream import store as records
from nbstream.batch import service as batch_service
from nbstream.batch.job import MAP_DEFAULTS, POLL_FIRST, POLL_MAX, Job
from nbstream.display.progress import Tally, make_progress
from nbstream.pricing import BATCH_DISCOUNT, add_to_session, cost
from nbstream.providers.common import mask_url
from nbstream.structured.schema import resolve_schema

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
