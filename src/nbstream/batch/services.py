"""Rows through a provider's batch service (``mode="batch"``): submit, poll, collect the
results in row order; :func:`collect` picks up a recorded batch from a new kernel."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nbstream import cache
from nbstream.background import run_in_background
from nbstream.batch.rows import (
    take_rows,
)
from nbstream.call import judge
from nbstream.providers.base import Final, ProviderError
from nbstream.providers.batches import ENDED, BatchLimits
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
from nbstream.batch.parts import Part, restored, split
from nbstream.display.progress import Tally, make_progress
from nbstream.pricing import BATCH_DISCOUNT, add_to_session, cost
from nbstream.providers.common import mask_url
from nbstream.structured.schema import resolve_schema

# -- provider batch services ---------------------------------------------------------------


class ServiceRunner:
    """``mode="batch"``: submit the rows to the provider's batch service in as many parts
    as its limits need (:mod:`nbstream.batch.parts`), poll them, map the results back to
    rows. Rows already recorded (the map's pack, or the replay cache) are not submitted;
    finished rows are recorded. A re-run of the same call finds a job that did not finish
    (the history file, by the rows' requests) and goes on with it: parts already submitted
    are polled, not paid for again."""

    def __init__(
        self,
        job: Job,
        prompts: list[str],
        settings: Settings,
        provider: str,
        model_id: str,
        display: ProgressDisplay,
        schema: Schema | None,
        *,
        limits: BatchLimits | None = None,
        pack: cache.Pack | None = None,
    ) -> None:
        self.job = job
        self.prompts = prompts
        self.settings = settings
        self.provider = provider
        self.model_id = model_id
        self.display = display
        self.schema = schema
        self.limits = limits
        self.pack = pack
        self.submitted: list[int] = list(range(len(prompts)))
        self.parts: list[Part] = []
        self.stopping = False
        self.requests: list[Any] = []
        self.key: str | None = None
        self.created: str | None = None
        self.resumed = False
        self.send_more = True
        """Parts not yet sent are sent (not by :func:`collect`: it lacks the call's options)."""

    def stop(self) -> None:
        self.stopping = True
        self.job.tally.note = "cancelling…"
        self.display.refresh()

    def _requests(self) -> list[Any]:
        name = self.model_id.partition(":")[2]
        return [make_request(self.settings, p, name, schema=self.schema) for p in self.prompts]

    @property
    def base_url(self) -> str | None:
        return self.requests[0].base_url if self.requests else self.settings.base_url

    async def submit(self) -> str:
        """Find the rows to send and send the first part (errors raise in the cell); the
        others go in :meth:`run`. Returns the job id (``provider:batch id`` for one part,
        ``provider:nbjob_…`` for several)."""

        cache.PACK.set(self.pack)
        self.requests = self._requests()
        tally = self.job.tally
        for i, request in enumerate(self.requests):
            if self.job.responses[i] is not None:  # skipped as empty input
                continue
            entry = cache.recorded(self.provider, request, self.settings)
            if entry is not None:
                self.job.responses[i] = self._validate(
                    Response(
                        "".join(entry.deltas),
                        finish_reason=entry.finish_reason,  # type: ignore[arg-type]
                        model=self.model_id,
                        usage=entry.usage,
                        prompt=self.prompts[i],
                        cost=0.0,
                        cached=True,
                    )
                )
                tally.done += 1
                tally.cached += 1
        self.submitted = [i for i, found in enumerate(self.job.responses) if found is None]
        if not self.submitted:
            self.job.id = f"{self.provider}:(all {tally.cached} rows cached)"
            return self.job.id
        if self.settings.cache == "replay":
            raise ValueError(
                f"{len(self.submitted)} rows have no recorded answer and the cache is in replay "
                "mode, so nothing was submitted; record them with cache='auto' first"
            )
        digest = hashlib.sha256(self.model_id.encode())
        for request in self.requests:
            digest.update(cache.request_key(self.provider, request).encode())
        self.key = digest.hexdigest()
        if self._resume():
            return str(self.job.id)
        label = {"openai": "OpenAI"}.get(self.provider, self.provider.capitalize())
        found = batch_service.sizes(self.provider, [self.requests[i] for i in self.submitted])
        self.parts = split(found, self.limits or batch_service.limits(self.provider), label)
        if len(self.parts) > 1:
            self.job.id = f"{self.provider}:nbjob_{self.key[:20]}"
        await self._send(self.parts[0])
        return str(self.job.id)

    def _resume(self) -> bool:
        """A job for the same rows that did not finish (a kernel restart): go on with it."""
        path = records.history_path(self.settings.history)
        if path is None or self.settings.cache == "off" or self.key is None:
            return False
        found = records.find_batch(path, "", key=self.key)
        options = (found or {}).get("options") or {}
        if found is None or options.get("done") or not options.get("parts"):
            return False
        self.submitted = list(options["submitted"])
        self.parts = restored(options["parts"])
        self.created = found.get("created")
        self.job.id = str(found["id"])
        self.resumed = True
        for part in self.parts:  # rows recorded before the restart: nothing to fetch
            rows = self.submitted[part.start : part.stop]
            part.collected = all(self.job.responses[i] is not None for i in rows)
        sent = sum(part.id is not None for part in self.parts)
        self.job.tally.note = f"{self.job.id}: resumed, {sent} of {len(self.parts)} parts sent"
        self.display.refresh()
        return True

    async def _send(self, part: Part) -> None:
        """Submit one part and record the job (so that a new kernel finds it)."""
        tally = self.job.tally
        several = f" (part {self.parts.index(part) + 1} of {len(self.parts)})"
        tally.note = f"submitting {len(part)} rows{several if len(self.parts) > 1 else ''}…"
        self.display.refresh()
        rows = self.submitted[part.start : part.stop]
        part.id = await batch_service.submit(
            self.provider, [self.requests[i] for i in rows], metadata={"nbstream": "map"}
        )
        if self.job.id is None:
            self.job.id = f"{self.provider}:{part.id}"
        self._save()
        tally.note = f"{self.job.id}: submitted{several if len(self.parts) > 1 else ''}"
        self.display.refresh()

    def _save(self, *, done: bool = False) -> None:
        path = records.history_path(self.settings.history)
        if path is None:
            return
        base_url = self.base_url
        if base_url and mask_url(base_url) != base_url:
            base_url = None  # never stored with credentials: collect() uses the option
        row = {
            "id": self.job.id,
            "model": self.model_id,
            "base_url": base_url,
            "rows": len(self.prompts),
            "prompts": self.prompts,
            "key": self.key,
            "options": {
                "submitted": self.submitted,
                "schema": self.schema.label if self.schema else None,
                "parts": [part.saved() for part in self.parts],
                "done": done,
            },
            "notebook": records.front_end_context().get("notebook"),
        }
        if self.created is not None:
            row["created"] = self.created
        records.save_batch(path, row)

    async def run(self) -> Any:
        """Send the other parts, poll until every part ends, place the results as each
        part ends."""

        cache.PACK.set(self.pack)
        tally = self.job.tally
        try:
            wait = POLL_FIRST
            while self.parts:
                unsent = [part for part in self.parts if part.id is None and part.error is None]
                if unsent and not self.stopping and self.send_more:
                    await self._send_or_fail(unsent[0])
                    continue  # the next part at once; polling waits
                for part in self.parts:
                    if part.id is not None and not part.collected:
                        await self._poll(part)
                self._count()
                if all(part.collected or part.id is None for part in self.parts):
                    break
                await _nap(wait, lambda: self.stopping and self._cancel_due())
                wait = min(POLL_MAX, wait * 1.5)
            for part in self.parts:
                if part.id is None:
                    self._unsent(part)
            if self.parts:  # (all rows cached: there is no job to record)
                self._save(done=self.send_more or all(part.id for part in self.parts))
            self._recount()
            tally.running = 0
        finally:
            tally.ended = time.monotonic()
            self.display.close()
        return self.job.results()

    def _cancel_due(self) -> bool:
        return any(p.id is not None and not p.collected and not p.cancel_sent for p in self.parts)

    async def _send_or_fail(self, part: Part) -> None:
        """A part after the first: a refusal fails its rows, the others go on."""
        try:
            await self._send(part)
        except (ProviderError, ValueError) as exc:
            part.error = str(exc)
            for i in self.submitted[part.start : part.stop]:
                self.job.responses[i] = Response(
                    "", finish_reason="error", error=part.error, model=self.model_id,
                    prompt=self.prompts[i],
                )  # fmt: skip

    def _unsent(self, part: Part) -> None:
        """A part never submitted (Stop came first, or its submission failed)."""
        for i in self.submitted[part.start : part.stop]:
            if self.job.responses[i] is None:
                self.job.responses[i] = Response(
                    "", finish_reason="cancelled", model=self.model_id, prompt=self.prompts[i],
                    error=part.error or (
                        "not submitted: the batch was stopped before this part was sent"
                        if self.send_more
                        else "not submitted yet: re-run the map() call that started this job "
                        "to send it (the parts already sent are not sent again)"
                    ),
                )  # fmt: skip

    async def _poll(self, part: Part) -> None:
        assert part.id is not None
        if self.stopping and not part.cancel_sent:
            part.cancel_sent = True
            await batch_service.cancel(self.provider, part.id, base_url=self.base_url)
        part.status = await batch_service.status(self.provider, part.id, base_url=self.base_url)
        if part.status.state in ENDED:
            await self._collect(part)

    def _recount(self) -> None:
        """The tally counted again from the rows placed so far (``Tally.record``: a row
        skipped as empty input counts as skipped, not failed)."""
        tally = self.job.tally
        tally.done = tally.failed = tally.cancelled = tally.cached = tally.skipped = 0
        tally.output_tokens = 0
        tally.cost = 0.0
        for row in self.job.responses:
            if row is not None:
                tally.record(row)

    def _count(self) -> None:
        """The tally from the parts' last statuses."""
        tally = self.job.tally
        statuses = [part.status for part in self.parts if part.status is not None]
        collected = [part for part in self.parts if part.collected]
        self._recount()
        live = [p.status for p in self.parts if p.status is not None and not p.collected]
        tally.done += sum(s.succeeded for s in live)
        tally.failed += sum(s.failed for s in live)
        tally.cancelled += sum(s.cancelled for s in live)
        tally.running = len(self.job.responses) - tally.done - tally.failed - tally.cancelled
        tally.running -= tally.skipped
        if len(self.parts) == 1 and statuses:
            last = statuses[0]
            tally.note = f"{self.provider} batch {last.provider_status}"
            if last.error:
                tally.note += f": {last.error}"
        elif self.parts:
            sent = sum(part.id is not None for part in self.parts)
            tally.note = f"{self.provider}: {len(collected)} of {len(self.parts)} batches ended" + (
                f", {sent} sent" if sent < len(self.parts) else ""
            )
        self.display.refresh()

    async def _collect(self, part: Part) -> None:
        """Fetch an ended part's results and place them in row order."""
        assert part.id is not None
        rows = self.submitted[part.start : part.stop]
        answers = await batch_service.results(
            self.provider, part.id, len(rows), model_id=self.model_id, base_url=self.base_url
        )
        for i, response in zip(rows, answers, strict=True):
            response.prompt = self.prompts[i]
            price = cost(response.model, response.usage, prices_file=self.settings.prices)
            response.cost = None if price is None else price * BATCH_DISCOUNT
            add_to_session(response)  # %llm cost
            final = self._validate(response)
            self._record(i, response)  # the provider's form, as a stream records it
            self.job.responses[i] = final
        part.collected = True

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
        """A finished row is recorded (the map's pack, or the replay cache)."""
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
    ``batch_id`` is ``job.id`` (``"openai:batch_…"``, or ``"openai:nbjob_…"`` for a job of
    several provider batches); the rows' prompts and model come from the history file where
    the submission was recorded."""

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
    runner = ServiceRunner(job, prompts, settings_b, provider, model_id, display_view, schema)
    runner.submitted = submitted
    options = found.get("options") or {}
    runner.parts = restored(options.get("parts") or [[provider_id, 0, len(submitted)]])
    runner.key, runner.created, runner.send_more = found.get("key"), found.get("created"), False
    runner.requests = runner._requests()
    job._stopper = runner.stop
    job._future = run_in_background(runner.run)
    return job
