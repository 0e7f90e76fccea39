"""Structured answers as records and as sanitized HTML: :func:`to_records`,
:func:`render_partial` and the incremental view of a streaming answer."""

from __future__ import annotations

import dataclasses
import html
import json
import math
from collections.abc import Mapping
from typing import Any

from nbstream.structured.expressions import _plain
from nbstream.structured.partial import PartialJSON
from nbstream.structured.schema import Schema, _decode, _deref, _is_map

# -- rendering ----------------------------------------------------------------------------------


def to_records(obj: Any) -> list[dict[str, Any]]:
    """Rows for ``pandas.DataFrame``: a list of records as they are, one record (model,
    dataclass, dict) as one row, a list of scalars as ``{"value": x}`` rows."""
    data = _plain(obj)
    if data is None:
        return []
    if isinstance(data, list):
        return [row if isinstance(row, dict) else {"value": row} for row in data]
    if isinstance(data, dict):
        return [data]
    return [{"value": data}]


_NESTED_LIMIT = 3


def _scalar_html(value: Any) -> str:
    if value is None:
        return '<span class="nbstream-null">null</span>'
    if isinstance(value, float) and not math.isfinite(value):
        return html.escape(str(value))
    return html.escape(str(value), quote=True)


def _value_html(value: Any, depth: int) -> str:
    if isinstance(value, (dict, list)):
        if depth >= _NESTED_LIMIT:
            return f"<code>{html.escape(json.dumps(value, ensure_ascii=False, default=str))}</code>"
        return _render(value, depth + 1)
    return _scalar_html(value)


def _records_frame(columns: list[str]) -> tuple[str, str]:
    """The HTML before and after the rows of a records table."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    return (
        f'<table class="nbstream-records"><thead><tr>{head}</tr></thead><tbody>',
        "</tbody></table>",
    )


def _row_html(row: Mapping[str, Any], columns: list[str], depth: int) -> str:
    cells = "".join(f"<td>{_value_html(row[c], depth) if c in row else ''}</td>" for c in columns)
    return f"<tr>{cells}</tr>"


def _render(data: Any, depth: int) -> str:
    if isinstance(data, list):
        if not data:
            return '<span class="nbstream-empty">(empty list)</span>'
        if all(isinstance(row, dict) for row in data):
            columns: dict[str, None] = {}
            for row in data:
                columns.update(dict.fromkeys(row))
            head, foot = _records_frame(list(columns))
            return head + "".join(_row_html(row, list(columns), depth) for row in data) + foot
        items = "".join(f"<li>{_value_html(v, depth)}</li>" for v in data)
        return f'<ol class="nbstream-list">{items}</ol>'
    if isinstance(data, dict):
        if not data:
            return '<span class="nbstream-empty">(empty object)</span>'
        rows = "".join(
            f"<tr><th>{html.escape(str(k))}</th><td>{_value_html(v, depth)}</td></tr>"
            for k, v in data.items()
        )
        return f'<table class="nbstream-record"><tbody>{rows}</tbody></table>'
    return _scalar_html(data)


def render_partial(obj: Any) -> str:
    """Sanitized HTML for a partial or final structured answer: a list of records is a
    table (columns: every key, in order of appearance) that grows row by row; one object
    is a field/value table; nested values nest (then compact JSON, deeper than 3); every
    text is escaped (the content is untrusted model output)."""
    if obj is None:
        return '<div class="nbstream-structured"></div>'
    return f'<div class="nbstream-structured">{_render(_plain(obj), 0)}</div>'


class IncrementalStructured:
    """Render a structured answer while it streams, at a cost per update proportional to
    the new text: the same duck-typed interface as
    :class:`nbstream.render.incremental.IncrementalMarkdown` (``update(text)`` with the whole
    text so far, ``finish()``, ``html``, ``frozen_html``, ``tail_html``), returning updates
    with ``frozen``, ``tail`` and ``reset``.

    Everything is sent as the tail (the live view puts frozen and tail HTML in separate
    elements, and a table cannot be split across them); the widget's diff against the
    previous tail then sends only what changed. When the answer (unwrapped) is a list of
    records, the rows of completed records are rendered once and cached, so an update
    re-renders only the open row (a column appearing later re-renders all rows, once).
    Other shapes are re-rendered whole on every update.

    ``value`` is the decoded partial value (:meth:`Schema.decode` applied per record);
    ``work`` counts the characters parsed plus those rendered afresh, for tests.
    """

    def __init__(self, schema: Schema | None = None) -> None:
        self.schema = schema
        self.parser = PartialJSON()
        self.work = 0
        self._consumed = 0
        self._columns: list[str] = []
        self._rows: list[str] = []  # HTML of completed records, for self._columns
        self._decoded: list[Any] = []  # decoded completed records
        self._html = render_partial(None)
        self.value: Any = None

    @property
    def html(self) -> str:
        return self._html

    @property
    def frozen_html(self) -> str:
        return ""

    @property
    def tail_html(self) -> str:
        return self._html

    def update(self, text: str) -> _StructuredUpdate:
        new = text[self._consumed :]
        self._consumed = len(text)
        before = self.parser.work
        self.parser.feed(new)
        self.work += self.parser.work - before
        self._render()
        return _StructuredUpdate("", self._html)

    def finish(self) -> _StructuredUpdate:
        self.parser.finish()
        self._render()
        return _StructuredUpdate("", self._html)

    def _records_allowed(self) -> bool:
        """The answer is declared as an array (not, e.g., a map written as pairs)."""
        if self.schema is None:
            return True
        top = _deref(self.schema.source_schema, self.schema.source_schema)
        return "items" in top and not _is_map(top)

    def _decode_item(self, item: Any) -> Any:
        schema = self.schema
        if schema is None or not schema._needs_decode:
            return item
        node = _deref(schema.source_schema, schema.source_schema)
        return _decode(item, node.get("items"), schema.source_schema)

    def _render(self) -> None:
        raw = self.parser.value
        unwrapped = self.schema.unwrap(raw) if self.schema is not None else raw
        if not (
            self._records_allowed()
            and isinstance(unwrapped, list)
            and all(isinstance(r, dict) for r in unwrapped)
        ):
            self.value = self.schema.partial(raw) if self.schema is not None else raw
            self._html = render_partial(self.value)
            self.work += len(self._html)
            self._rows, self._decoded, self._columns = [], [], []
            return
        items = unwrapped
        complete = len(items) - 1 if self.parser.is_open(items) else len(items)
        while len(self._decoded) < complete:
            self._decoded.append(self._decode_item(items[len(self._decoded)]))
        open_items = [self._decode_item(item) for item in items[complete:]]
        columns = dict.fromkeys(self._columns)
        for row in [*self._decoded[len(self._rows) :], *open_items]:
            columns.update(dict.fromkeys(row))
        if list(columns) != self._columns:  # a new column: every row gets its cell
            self._columns, self._rows = list(columns), []
        while len(self._rows) < complete:
            row = _row_html(self._decoded[len(self._rows)], self._columns, 0)
            self.work += len(row)
            self._rows.append(row)
        tail = "".join(_row_html(row, self._columns, 0) for row in open_items)
        self.work += len(tail)
        head, foot = _records_frame(self._columns)
        self._html = (
            '<div class="nbstream-structured">'
            + (head + "".join(self._rows) + tail + foot if items else _render([], 0))
            + "</div>"
        )
        self.value = [*self._decoded, *open_items]


@dataclasses.dataclass(frozen=True)
class _StructuredUpdate:
    frozen: str
    tail: str
    reset: bool = False
