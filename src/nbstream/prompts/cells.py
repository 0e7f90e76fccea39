"""What the notebook has run: the cells of this kernel (sources, text outputs, errors) and the
last image any cell displayed, as prompt context (``--cells N``, ``{last_figure}``,
``%llm fix``).

The records are filled by :mod:`nbstream.notebook.watch` (IPython's ``pre_run_cell`` /
``post_run_cell`` events, the display publisher and the output streams) and read here; this
module knows nothing of IPython. Outputs are kept short per cell (:data:`OUTPUT_KEEP`
characters, head and tail), and at most :data:`KEEP_CELLS` cells are remembered.
"""

from __future__ import annotations

import collections
import itertools
import threading
from dataclasses import dataclass, field

from nbstream.prompts.media import make
from nbstream.providers.base import Attachment

KEEP_CELLS = 100
OUTPUT_KEEP = 2_000
"""Characters of a cell's text output kept (the first and last halves)."""
CELL_OUTPUT_SHOWN = 800
"""Characters of a cell's output put into a ``--cells`` prompt (head and tail)."""


@dataclass
class CellError:
    """The exception a cell ended with."""

    type: str
    message: str
    traceback: str = ""
    """The frames of the user's own cells (and files), newest last, as text."""
    line: int | None = None
    """The failing line's number in the failing cell (1-based)."""
    code: str = ""
    """The failing line's text."""
    variables: dict[str, str] = field(default_factory=dict)
    """The failing line's names in the namespace, described (type, shape, dtypes)."""

    def summary(self) -> str:
        return f"{self.type}: {self.message}" if self.message else self.type


@dataclass
class CellRecord:
    """One executed cell."""

    count: int | None
    source: str
    cell_id: str | None = None
    output: list[str] = field(default_factory=list)
    error: CellError | None = None
    seq: int = 0
    """This kernel's run number of the record (set by :func:`begin`)."""
    _size: int = 0

    def add_output(self, text: str) -> None:
        """Keep the first :data:`OUTPUT_KEEP` // 2 characters and a rolling tail."""
        self.output.append(text)
        self._size += len(text)
        if self._size > OUTPUT_KEEP * 2:
            joined = "".join(self.output)
            half = OUTPUT_KEEP // 2
            self.output = [joined[:half], "\n…\n", joined[-half:]]
            self._size = sum(len(p) for p in self.output)

    @property
    def text_output(self) -> str:
        return "".join(self.output)

    @property
    def key(self) -> str:
        """``cell:ID`` (the front end's cell id: a re-run of the cell is the same input);
        without one ``cell:run-N`` (this run only): an input of answers that read it
        (``--cells``)."""
        return f"cell:{self.cell_id}" if self.cell_id else f"cell:run-{self.seq}"

    def state(self) -> str:
        """What an answer read of it: source, output and error."""
        error = self.error.summary() if self.error is not None else ""
        return f"{self.source}\x00{self.text_output}\x00{error}"


_lock = threading.Lock()
RECORDS: collections.deque[CellRecord] = collections.deque(maxlen=KEEP_CELLS)
"""The executed cells of this kernel, oldest first (the running cell is the last one until
it ends: :data:`RUNNING`)."""
RUNNING: list[CellRecord] = []
"""The cell running now (``[]`` between cells)."""
_last_image: list[tuple[bytes, str]] = []


_runs = itertools.count(1)


def begin(record: CellRecord) -> None:
    with _lock:
        record.seq = next(_runs)
        RUNNING[:] = [record]


def end(record: CellRecord) -> None:
    with _lock:
        RUNNING[:] = []
        if record.source.strip():
            RECORDS.append(record)


def output(text: str) -> None:
    """Text the running cell wrote or displayed (from any thread)."""
    with _lock:
        if RUNNING:
            RUNNING[0].add_output(text)


def saw_image(data: bytes, label: str = "last_figure") -> None:
    """An image a cell displayed (PNG or JPEG bytes)."""
    with _lock:
        _last_image[:] = [(data, label)]


def last_image() -> Attachment | None:
    """The most recent image any cell displayed, as an attachment (``None``: none yet)."""
    with _lock:
        found = _last_image[0] if _last_image else None
    return make(found[0], found[1]) if found is not None else None


def executed(n: int) -> list[CellRecord]:
    """The last ``n`` executed cells (not the running one), oldest first."""
    with _lock:
        return list(RECORDS)[-n:] if n > 0 else []


def latest(key: str) -> CellRecord | None:
    """The latest execution of the cell with :attr:`CellRecord.key` ``key``."""
    with _lock:
        records = list(RECORDS)
    return next((r for r in reversed(records) if r.key == key), None)


def last_error() -> CellRecord | None:
    """The last executed cell, if it ended with an exception (cells that ask a model,
    ``%llm`` / ``%%llm``, are skipped: asking twice finds the same failed cell)."""
    with _lock:
        records = list(RECORDS)
    for record in reversed(records):
        if record.source.lstrip().startswith("%llm") or record.source.lstrip().startswith("%%llm"):
            continue
        return record if record.error is not None else None
    return None


def _fit(text: str, budget: int) -> str:
    if len(text) <= budget:
        return text
    half = max(budget // 2 - 20, 10)
    return f"{text[:half]}\n… [{len(text) - 2 * half:,} characters left out] …\n{text[-half:]}"


def render_cell(record: CellRecord, source_budget: int) -> str:
    """One cell for a prompt: its number, source, output and error."""
    label = f"In [{record.count}]" if record.count is not None else "A cell"
    lines = [f"{label}:", "```python", _fit(record.source.rstrip(), source_budget), "```"]
    shown = record.text_output.strip()
    if shown:
        lines += ["Output:", "```", _fit(shown, CELL_OUTPUT_SHOWN), "```"]
    if record.error is not None:
        lines.append(f"Error: {record.error.summary()}")
    return "\n".join(lines)


def cells_block(n: int, budget: int) -> tuple[str, list[CellRecord]]:
    """The last ``n`` executed cells as a prompt block (newest last) within ``budget``
    characters, and the cells it includes. Older cells are left out first when they do not
    fit; the block says how many."""
    chosen = executed(n)
    if not chosen:
        return "(No cells have run in this kernel yet.)", []
    rendered: list[str] = []
    used = 0
    kept: list[CellRecord] = []
    for record in reversed(chosen):
        text = render_cell(record, max(budget // 2, 200))
        if kept and used + len(text) > budget:
            break
        rendered.append(text)
        kept.append(record)
        used += len(text) + 2
    rendered.reverse()
    kept.reverse()
    head = f"The last {len(kept)} executed cells of the notebook (oldest first):"
    left_out = len(chosen) - len(kept)
    if left_out:
        head += f" ({left_out} older cell{'s' if left_out != 1 else ''} left out: budget)"
    return head + "\n\n" + "\n\n".join(rendered), kept


def reset() -> None:
    """Forget every record (tests)."""
    with _lock:
        RECORDS.clear()
        RUNNING[:] = []
        _last_image[:] = []


__all__ = [
    "RECORDS",
    "CellError",
    "CellRecord",
    "begin",
    "cells_block",
    "end",
    "executed",
    "last_error",
    "last_image",
    "latest",
    "output",
    "reset",
    "saw_image",
]
