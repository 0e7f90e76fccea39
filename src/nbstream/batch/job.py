"""A batch's :class:`Job`: its answers, progress and Stop, awaitable from any cell."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from nbstream.background import wait_blocking, wait_in_cell
from nbstream.batch.rows import (
    Rows,
    shape,
)
from nbstream.kernel import get_shell, in_kernel
from nbstream.response import Response

if TYPE_CHECKING:
    from nbstream.display.progress import Tally
    from nbstream.structured.schema import Schema


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
