"""How a Python value is rendered when it is interpolated into a prompt.

``to_prompt(value, budget)`` returns text for a model, never longer than ``budget``
characters (budgets below ``MIN_BUDGET`` count as ``MIN_BUDGET``), and says so whenever it
leaves something out. The rules:

* **Short values are unchanged.** Numbers, strings and objects whose ``str()`` fits the
  budget give exactly ``str(value)`` (``3`` stays ``3``).
* **pandas DataFrame**: ``DataFrame: 1,000 rows × 5 columns``, an ``index:`` line when the
  index is not the default ``RangeIndex``, a ``columns: name (dtype), …`` line (at most a
  quarter of the budget: else the first and last columns around ``… 133 more …``, plus a
  ``dtypes: float64 ×150, str ×50`` line), then a compact GitHub-Markdown table of the
  first and last rows with a ``…`` row between them. The index is a column of the table
  unless it is the default one; cells are shortened to ``MAX_CELL`` characters with ``…``
  (``|`` and newlines escaped); floats are compact (``0.1``, ``3.14159``, ``NaN``); naive
  timestamps that are all at midnight show as dates. As many rows as the budget allows are
  shown (then ``(showing 10 of 1,000 rows: first 5 and last 5)``); when the columns do not
  fit next to six rows, the first and last ones are shown around a ``…`` column (then
  ``(showing 8 of 200 columns: first 4 and last 4; 192 omitted)``). MultiIndex rows become
  one table column per level; MultiIndex column labels are joined with `` / ``.
* **pandas Series**: ``Series 'price': 1,000 values, dtype float64`` then the same table
  with a single column.
* **NumPy ndarray**: ``ndarray shape=(3, 4) dtype=float64`` then NumPy's own text, in full
  when it fits, else summarised (``threshold=0``, ``edgeitems=3``, fewer if needed).
* **dict / list**: one-line JSON (``ensure_ascii=False``) when the value is plain JSON data
  (str keys, str/int/float/bool/None, finite floats), otherwise ``repr``. **tuple / set**:
  ``repr`` (JSON would turn ``(1000, 5)`` into ``[1000, 5]``; tuples nested in JSON data
  become arrays). Too long: the head, then ``… (truncated: showing 3,950 of 80,000
  characters)``; containers with more items than the budget has characters are sliced first
  (the note then gives the item count, not the full length).
* **str and anything else** (``str(value)``) longer than the budget: head, then
  ``\\n… [truncated: N of M characters omitted] …\\n``, then tail.

pandas and NumPy are never imported here: a value can only be a DataFrame or an ndarray if
its library is already in ``sys.modules``.
"""

from __future__ import annotations

import itertools
import json
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["DEFAULT_BUDGET", "MAX_CELL", "MIN_BUDGET", "to_prompt"]

DEFAULT_BUDGET = 4000
MIN_BUDGET = 200  # smaller budgets are raised to this: a shape line and a note must fit
MAX_CELL = 40  # characters per table cell / column label before it is shortened with "…"
_PROBE_ROWS = 6  # rows that must fit next to the chosen columns (3 first + 3 last)
_JSON_DEPTH = 100


def to_prompt(value: Any, budget: int = DEFAULT_BUDGET) -> str:
    """Render ``value`` for a prompt in at most ``max(budget, MIN_BUDGET)`` characters."""
    budget = max(int(budget), MIN_BUDGET)
    pd = _loaded("pandas", "DataFrame", "Series")
    if pd is not None and isinstance(value, pd.DataFrame):
        return _fit_head(_frame(value, budget), budget)
    if pd is not None and isinstance(value, pd.Series):
        return _fit_head(_series(value, budget), budget)
    np = _loaded("numpy", "ndarray")
    if np is not None and isinstance(value, np.ndarray):
        return _fit_head(_ndarray(np, value, budget), budget)
    if isinstance(value, (dict, list, tuple, set, frozenset)):
        return _container(value, budget)
    return _fit_middle(value if isinstance(value, str) else str(value), budget)


def _loaded(module: str, *names: str) -> Any:
    """The module if it is already imported and complete enough to test against, else None."""
    mod = sys.modules.get(module)
    if mod is None or not all(isinstance(getattr(mod, n, None), type) for n in names):
        return None
    return mod


# -- plain text -----------------------------------------------------------------------------


def _fit_middle(text: str, budget: int) -> str:
    """``text``, or its head and tail around a note saying how much was left out."""
    total = len(text)
    if total <= budget:
        return text
    keep = budget - len(_middle_note(total, total))  # the note only gets shorter with `keep`
    head = (keep + 1) // 2
    tail = keep - head
    return text[:head] + _middle_note(total - keep, total) + (text[total - tail :] if tail else "")


def _middle_note(omitted: int, total: int) -> str:
    return f"\n… [truncated: {omitted:,} of {total:,} characters omitted] …\n"


def _fit_head(text: str, budget: int, whole: str | None = None) -> str:
    """``text``, or its head and ``… (truncated: showing K of M characters)``.

    ``whole`` describes a value that was sliced before it was rendered (``list of 80,000
    items``): the note is then always added, since ``text`` is not the whole value.
    """
    if whole is None:
        if len(text) <= budget:
            return text
        template = "… (truncated: showing {:,} of " + f"{len(text):,}" + " characters)"
    else:
        template = "… (truncated: showing {:,} characters of a " + whole + ")"
    keep = min(len(text), max(0, budget - len(template.format(len(text)))))
    return text[:keep] + template.format(keep)


# -- dict / list / tuple / set -------------------------------------------------------------


def _container(value: Any, budget: int) -> str:
    kind = type(value).__name__
    size = len(value)
    sliced = value
    if size > budget:  # every item costs at least one character: the text cannot fit
        if isinstance(value, dict):
            sliced = dict(itertools.islice(value.items(), budget))
        elif isinstance(value, (list, tuple)):
            sliced = value[:budget]
        else:
            sliced = set(itertools.islice(value, budget))
    text = _json(sliced) if isinstance(value, (dict, list)) else None
    if text is None:
        text = repr(sliced)
    if sliced is not value:
        return _fit_head(text, budget, whole=f"{kind} of {size:,} items")
    return _fit_head(text, budget)


def _json(value: Any) -> str | None:
    """Compact one-line JSON when ``value`` is plain JSON data, else None."""
    if not _is_json(value, set(), _JSON_DEPTH):
        return None
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return None


def _is_json(value: Any, active: set[int], depth: int) -> bool:
    """Exact JSON types only: ``{1: "a"}`` would silently become ``{"1": "a"}``."""
    if value is None or type(value) in (str, bool, int):
        return True
    if type(value) is float:
        return math.isfinite(value)
    if type(value) not in (list, tuple, dict) or depth <= 0 or id(value) in active:
        return False  # other types, too deep, or a cycle: repr shows cycles as [...]
    active.add(id(value))
    try:
        if type(value) is dict:
            return all(type(k) is str and _is_json(v, active, depth - 1) for k, v in value.items())
        return all(_is_json(v, active, depth - 1) for v in value)
    finally:
        active.discard(id(value))


# -- numpy ------------------------------------------------------------------------------------


def _ndarray(np: Any, arr: Any, budget: int) -> str:
    head = f"{type(arr).__name__} shape={arr.shape} dtype={arr.dtype}"
    room = budget - len(head) - 1
    text = ""
    if arr.size <= room:  # each element needs at least one character
        with np.printoptions(threshold=sys.maxsize):
            text = str(arr)
        if len(text) <= room:
            return f"{head}\n{text}"
    for edge in (3, 2, 1):
        with np.printoptions(threshold=0, edgeitems=edge):
            text = str(arr)
        if len(text) <= room:
            break
    return f"{head}\n{text}"


# -- pandas -------------------------------------------------------------------------------------


def _frame(df: Any, budget: int) -> str:
    nrows, ncols = df.shape
    lines = [f"DataFrame: {nrows:,} {_plural(nrows, 'row')} × {ncols:,} {_plural(ncols, 'column')}"]
    index_shown = not _default_index(df.index)
    if index_shown:
        lines.append(_index_line(df.index))
    labels = [_label(c) for c in df.columns]
    dtypes = [str(t) for t in df.dtypes]
    if ncols:
        lines.extend(_columns_lines(labels, dtypes, budget))
    if not ncols or not nrows:
        return "\n".join(lines)
    table = _Table(
        nrows=nrows,
        labels=labels,
        column=lambda j, rows: _column(df.iloc[rows, j].tolist()),
        index_labels=_index_labels(df.index) if index_shown else [],
        index=lambda rows: _index_cells(df.index, rows),
    )
    preamble = "\n".join(lines)
    return preamble + "\n" + table.render(budget - len(preamble) - 1, "rows")


def _series(s: Any, budget: int) -> str:
    n = len(s)
    name = "" if s.name is None else f" {_label(s.name)!r}"
    lines = [f"Series{name}: {n:,} {_plural(n, 'value')}, dtype {s.dtype}"]
    index_shown = not _default_index(s.index)
    if index_shown:
        lines.append(_index_line(s.index))
    if not n:
        return "\n".join(lines)
    table = _Table(
        nrows=n,
        labels=["value" if s.name is None else _label(s.name)],
        column=lambda _j, rows: _column(s.iloc[rows].tolist()),
        index_labels=_index_labels(s.index) if index_shown else [],
        index=lambda rows: _index_cells(s.index, rows),
    )
    preamble = "\n".join(lines)
    return preamble + "\n" + table.render(budget - len(preamble) - 1, "values")


def _plural(n: int, word: str) -> str:
    return word if n == 1 else word + "s"


def _default_index(index: Any) -> bool:
    pd = sys.modules["pandas"]
    return (
        isinstance(index, pd.RangeIndex)
        and index.start == 0
        and index.step == 1
        and index.name is None
    )


def _index_labels(index: Any) -> list[str]:
    return [_escape(_short("" if n is None else _label(n))) for n in index.names]


def _index_line(index: Any) -> str:
    if index.nlevels == 1:
        if index.name is None:
            return f"index: {index.dtype}"
        return f"index: {_label(index.name)} ({index.dtype})"
    levels = [
        f"{'level ' + str(i) if n is None else _label(n)} ({index.levels[i].dtype})"
        for i, n in enumerate(index.names)
    ]
    return "index: " + ", ".join(levels)


def _index_cells(index: Any, rows: list[int]) -> list[list[str]]:
    """One list of cell texts per index level."""
    part = index[rows]
    if index.nlevels == 1:
        return [_column(part.tolist())]
    return [_column(part.get_level_values(i).tolist()) for i in range(index.nlevels)]


def _label(label: Any) -> str:
    if isinstance(label, tuple):
        return " / ".join(str(p) for p in label)
    return str(label)


def _columns_lines(labels: list[str], dtypes: list[str], budget: int) -> list[str]:
    """``columns: a (int64), …``, listing only the first and last when they are many."""
    entries = [f"{_short(lab)} ({dt})" for lab, dt in zip(labels, dtypes, strict=True)]
    share = budget // 4
    line = "columns: " + ", ".join(entries)
    if len(line) <= share or len(entries) <= 2:  # a quarter of the budget at most
        return [line]
    counts: dict[str, int] = {}
    for dt in dtypes:
        counts[dt] = counts.get(dt, 0) + 1
    summary = "dtypes: " + ", ".join(f"{dt} ×{k:,}" for dt, k in counts.items())
    summary = _fit_head(summary, max(share // 3, 60))
    used = len(f"columns: , … {len(entries):,} more …")
    k = 0
    for j in _order(len(entries), len(entries)):  # first, last, second, second to last, …
        used += len(entries[j]) + 2
        if used > share:
            break
        k += 1
    first, last = (max(k, 2) + 1) // 2, max(k, 2) // 2
    middle = f"… {len(entries) - first - last:,} more …"
    line = "columns: " + ", ".join([*entries[:first], middle, *entries[len(entries) - last :]])
    return [line, summary]


def _column(values: list[Any]) -> list[str]:
    """Cell texts; timestamps that are all at midnight (naive) show as dates, as in pandas."""
    pd = sys.modules["pandas"]
    stamps = [v for v in values if v is not pd.NaT]
    if stamps and all(
        isinstance(v, pd.Timestamp) and v.tz is None and v == v.normalize() for v in stamps
    ):
        return ["NaT" if v is pd.NaT else str(v.date()) for v in values]
    return [_cell(v) for v in values]


def _cell(value: Any) -> str:
    if isinstance(value, float) or type(value).__name__.startswith("float"):
        try:
            x = float(value)
        except (TypeError, ValueError):
            x = None
        if x is not None:
            if math.isnan(x):
                return "NaN"
            text = repr(x)
            return _escape(text if len(text) <= 10 else format(x, ".6g"))
    return _escape(_short(str(value)))


def _short(text: str) -> str:
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", "\\r").replace("\n", "\\n")


class _Table:
    """A Markdown table of the first and last rows that fits a character budget.

    Lines are not padded (``| a | bb |``), so a line costs ``1 + Σ (len(cell) + 3)``
    characters and the cost of any choice of rows and columns is known before rendering.
    """

    def __init__(
        self,
        nrows: int,
        labels: list[str],
        column: Callable[[int, list[int]], list[str]],
        index_labels: list[str],
        index: Callable[[list[int]], list[list[str]]],
    ) -> None:
        self.nrows = nrows
        self.labels = [_escape(_short(lab)) for lab in labels]
        self.column = column
        self.index_labels = index_labels
        self.index = index

    def render(self, room: int, unit: str) -> str:
        ncols = len(self.labels)
        probe = _order(self.nrows, _PROBE_ROWS)
        probe_rows = sorted(probe)
        cols = self._choose_columns(probe_rows, room - 120)
        if cols is None:
            return f"(table omitted: {self.nrows:,} {unit} do not fit in the budget)"
        omitted_cols = ncols - len(cols)
        col_note = ""
        if omitted_cols:
            first = (len(cols) + 1) // 2
            col_note = (
                f"(showing {len(cols):,} of {ncols:,} columns: first {first:,} and last "
                f"{len(cols) - first:,}; {omitted_cols:,} omitted)"
            )
        # Candidate rows: as many as could possibly fit (each row line costs at least
        # 1 + 4 × columns characters), taken alternately from the top and the bottom.
        width = len(cols) + bool(omitted_cols) + len(self.index_labels)
        cap = min(self.nrows, max(1, room // (2 + 4 * width)), 2000)
        order = _order(self.nrows, cap)
        positions = sorted(order)
        cells = self._cells(positions, cols, bool(omitted_cols))
        by_pos = dict(zip(positions, cells, strict=True))
        header = self._header(cols, bool(omitted_cols))
        fixed = sum(len(line) + 1 for line in header) + len(col_note) + 1
        gap = _line(["…"] * width)
        chosen: list[int] = []
        used = fixed
        for pos in order:
            cost = len(by_pos[pos]) + 1
            more = len(chosen) + 1 < self.nrows
            row_note = _row_note(len(chosen) + 1, self.nrows, unit) if more else ""
            extra = (len(gap) + 1 + len(row_note) + 1) if more else 0
            if used + cost + extra > room:
                break
            chosen.append(pos)
            used += cost
        if not chosen:
            return f"(table omitted: {self.nrows:,} {unit} do not fit in the budget)"
        chosen.sort()
        body = list(header)
        for i, pos in enumerate(chosen):
            if i and pos != chosen[i - 1] + 1:
                body.append(gap)
            body.append(by_pos[pos])
        if chosen[-1] != self.nrows - 1:  # only the first row fitted
            body.append(gap)
        notes = [n for n in (_row_note(len(chosen), self.nrows, unit), col_note) if n]
        return "\n".join(body + notes)

    def _choose_columns(self, probe: list[int], room: int) -> list[int] | None:
        """Most columns (first and last, alternately) whose probe rows fit in ``room``."""
        ncols = len(self.labels)
        # a column costs at least 4 characters on each line ("| x " or "---|")
        order = _order(ncols, max(1, room // (4 * (len(probe) + 2))))
        base = 2 + 2 + len(probe) * 2  # "|" and a newline on each line
        if self.index_labels:
            index_cells = self.index(probe)
            base += len(_line(self.index_labels)) - 1 + 4 * len(self.index_labels)
            base += sum(len(_line([c[r] for c in index_cells])) - 1 for r in range(len(probe)))
        widths: list[int] = []  # cost of each column over header, separator and probe rows
        for j in order:
            values = self.column(j, probe)
            widths.append(len(self.labels[j]) + 3 + 4 + sum(len(v) + 3 for v in values))
        gap = (1 + 3) * (len(probe) + 2)  # a "…" column
        total = base + sum(widths)
        k = len(order)
        while k > 0 and total + (gap if k < ncols else 0) > room:
            k -= 1
            total -= widths[k]
        if k == 0:
            return None
        return sorted(order[:k])

    def _header(self, cols: list[int], gap: bool) -> list[str]:
        names = list(self.index_labels)
        split = _split(cols)
        for i, j in enumerate(cols):
            if gap and i == split:
                names.append("…")
            names.append(self.labels[j])
        return [_line(names), "|" + "---|" * len(names)]

    def _cells(self, positions: list[int], cols: list[int], gap: bool) -> list[str]:
        split = _split(cols)
        columns = [self.column(j, positions) for j in cols]
        if gap:
            columns.insert(split, ["…"] * len(positions))
        if self.index_labels:
            columns = self.index(positions) + columns
        return [_line([c[r] for c in columns]) for r in range(len(positions))]


def _split(cols: list[int]) -> int:
    """Where the ``…`` column goes: after the leading run of shown columns."""
    for i, j in enumerate(cols):
        if j != i:
            return i
    return len(cols)


def _order(n: int, k: int) -> list[int]:
    """The first ``k`` of 0, n-1, 1, n-2, … (the head gets the extra one)."""
    out: list[int] = []
    lo, hi = 0, n - 1
    while lo <= hi and len(out) < k:
        out.append(lo)
        lo += 1
        if lo <= hi and len(out) < k:
            out.append(hi)
            hi -= 1
    return out


def _line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _row_note(shown: int, total: int, unit: str) -> str:
    if shown >= total:
        return ""
    first = (shown + 1) // 2
    return f"(showing {shown:,} of {total:,} {unit}: first {first:,} and last {shown - first:,})"
