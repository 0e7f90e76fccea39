"""``{variable}`` interpolation in prompts. It looks values up; it never runs code.

A field is filled in only when it is exactly one of these forms, with no spaces:

* ``{name}``: a variable from the user's namespace (the first name must exist there);
* ``{name.attr}``, chains too (``{df.columns}``, ``{a.b.c}``); an attribute that starts
  with ``_`` is never looked up;
* ``{name[0]}``, ``{name[-1]}``, ``{name["key"]}``, ``{name['key']}``: literal int or string
  keys only (a quoted key may contain spaces); mixed chains work: ``{cfg["db"].host}``;
* any of the above followed by a conversion ``!r`` / ``!s`` and/or a format spec, in
  Python's order: ``{x:.2f}``, ``{n:,}``, ``{x!r}``, ``{x!r:>12}``.

Values are found with ``getattr`` and ``[]`` only, never ``eval``, and nothing is called
(a property or ``__getitem__`` may still run, as when you look at the value yourself). A
plain field is rendered by :func:`nbstream.prompts.context.to_prompt` (DataFrames as a shape line,
dtypes and a Markdown table; long values truncated with a note) within ``budget``
characters; a field with a conversion or spec gives ``format(value, spec)``, and only a
result longer than ``budget`` is truncated.

Everything else is left exactly as written: calls and expressions (``{data.pop()}``,
``{len(rows)}``, ``{x + 1}``), JSON and set literals (``{"a": 1}``), code blocks, ``{}``,
``{ name }`` (spaces mean code), braces spanning lines, and any field whose lookup or
formatting fails (unknown name, missing attribute or key, bad format spec).

``{{`` gives ``{``. ``}}`` gives ``}`` when it closes such an escaped brace (``{{x}}`` gives
``{x}``); any other ``}}`` stays as written, so nested JSON or code closing two blocks at
once survives, and a text without ``{`` is never changed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nbstream.prompts.context import DEFAULT_BUDGET, to_prompt
from nbstream.prompts.media import attachment_of
from nbstream.providers.base import Attachment

__all__ = ["Composed", "compose", "field_names", "interpolate", "lookup"]


@dataclass(frozen=True)
class Composed:
    """A prompt filled in by :func:`compose`: its text (images and PDFs as labels such as
    ``[image: fig: PNG 800×600, 41 KB]``), the same prompt as parts with the attachments in
    place (empty when there are none), and every value a field looked up (by field path,
    for the answer's fingerprints)."""

    text: str
    parts: tuple[str | Attachment, ...] = ()
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def attachments(self) -> list[Attachment]:
        return [p for p in self.parts if isinstance(p, Attachment)]


_NAME = r"[^\W\d]\w*"
_KEY = r"""\[(?:-?[0-9]+|"[^"\\\n]*"|'[^'\\\n]*')\]"""
_PATH = rf"{_NAME}(?:\.{_NAME}|{_KEY})*"
_TOKEN = re.compile(
    r"\{\{|\}\}"
    rf"|\{{(?P<path>{_PATH})(?:!(?P<conv>[rs]))?(?::(?P<spec>[^{{}}\s]*))?\}}"
)
_HEAD = re.compile(_NAME)
_STEP = re.compile(rf"""\.({_NAME})|\[(-?[0-9]+)\]|\["([^"]*)"\]|\['([^']*)'\]""")


def interpolate(
    template: str, namespace: Mapping[str, Any], *, budget: int = DEFAULT_BUDGET
) -> str:
    """Fill ``{name}``-style fields from ``namespace``; leave everything else as written
    (an image or PDF becomes its label: :func:`compose` keeps it as an attachment)."""
    return compose(template, namespace, budget=budget).text


_MARK = "\x00nbstream-attachment-{}\x00"
_MARKS = re.compile("\x00nbstream-attachment-([0-9]+)\x00")


def compose(
    template: str, namespace: Mapping[str, Any], *, budget: int = DEFAULT_BUDGET
) -> Composed:
    """Fill ``{name}``-style fields from ``namespace`` like :func:`interpolate`; a plain field
    whose value is an image or a PDF (:mod:`nbstream.prompts.media`) becomes an attachment
    in its place."""
    escaped = 0  # "{{" seen and not yet closed by "}}"
    found: list[Attachment] = []
    values: dict[str, Any] = {}

    def replace(match: re.Match[str]) -> str:
        nonlocal escaped
        whole = match.group(0)
        if whole == "{{":
            escaped += 1
            return "{"
        if whole == "}}":
            if not escaped:
                return whole
            escaped -= 1
            return "}"
        path = match.group("path")
        try:
            value = _resolve(path, namespace)
        except Exception:
            return whole
        values[path] = value
        conv, spec = match.group("conv"), match.group("spec")
        if conv is None and spec is None:
            attachment = value if isinstance(value, Attachment) else attachment_of(value, path)
            if attachment is not None:  # MediaError (unreadable media) reaches the caller
                found.append(attachment)
                return _MARK.format(len(found) - 1)
        try:
            if conv is None and spec is None:
                return to_prompt(value, budget)
            if conv is not None:
                value = repr(value) if conv == "r" else str(value)
            return to_prompt(format(value, spec or ""), budget)
        except Exception:
            return whole

    filled = _TOKEN.sub(replace, template)
    if not found:
        return Composed(filled, (), values)
    pieces = _MARKS.split(filled)  # text, index, text, index, …, text
    parts: list[str | Attachment] = []
    text: list[str] = []
    for i, piece in enumerate(pieces):
        if i % 2:
            item = found[int(piece)]
            parts.append(item)
            text.append(f"[{item.kind}: {item.describe()}]")
        elif piece:
            parts.append(piece)
            text.append(piece)
    return Composed("".join(text), tuple(parts), values)


def field_names(template: str) -> list[str]:
    """The first names of the fields :func:`interpolate` would look up, in order, once each
    (``"{row.a} {{x}} {n:,}"`` → ``["row", "n"]``)."""
    names: list[str] = []
    for match in _TOKEN.finditer(template):
        path = match.group("path")  # None for "{{" and "}}"
        head = _HEAD.match(path) if path else None
        if head is not None and head.group() not in names:
            names.append(head.group())
    return names


def lookup(path: str, namespace: Mapping[str, Any]) -> Any:
    """The value of ``name.attr[key]…`` in ``namespace``, found with ``getattr`` and ``[]``
    only (an attribute starting with ``_`` is never looked up); raises if any step fails."""
    if not re.fullmatch(_PATH, path):
        raise ValueError(f"not a name or an attribute chain: {path!r}")
    return _resolve(path, namespace)


def _resolve(path: str, namespace: Mapping[str, Any]) -> Any:
    """Follow ``name.attr[key]…`` with getattr and ``[]``; raise if any step fails."""
    head = _HEAD.match(path)
    assert head is not None  # _TOKEN only matches paths that start with a name
    if head.group() not in namespace:
        raise KeyError(head.group())
    value = namespace[head.group()]
    for step in _STEP.finditer(path, head.end()):
        attr, index, double, single = step.groups()
        if attr is not None:
            if attr.startswith("_"):
                raise AttributeError(attr)
            value = getattr(value, attr)
        elif index is not None:
            value = value[int(index)]
        else:
            value = value[double if double is not None else single]
    return value
