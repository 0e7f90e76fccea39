"""The rows of a batch (:func:`nbstream.map`): the input taken apart into one namespace
per row, the prompt filled per row, and the results put back in the input's shape."""

from __future__ import annotations

import collections
import math
import sys
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from nbstream.prompts.interpolate import field_names, interpolate
from nbstream.response import EMPTY_INPUT, Response
from nbstream.structured.expressions import to_plain

Missing = Literal["skip", "send"]

if TYPE_CHECKING:
    from nbstream.structured.schema import Schema

# -- the input ------------------------------------------------------------------------------


@dataclass
class Rows:
    """The input, taken apart: one namespace per row, and how to put the results back."""

    kind: Literal["list", "series", "dataframe"]
    items: Any
    namespaces: list[dict[str, Any]]
    labels: list[Any]


def _pandas() -> Any | None:
    return sys.modules.get("pandas")


def take_rows(items: Any) -> Rows:
    """A list (of dicts, objects or scalars), a pandas Series or DataFrame → :class:`Rows`.

    Every row's namespace has ``item`` (the element itself; for a DataFrame the row as a
    dict) and ``index`` (its position or index label); a dict row adds its keys, a
    DataFrame row its columns, a Series element the Series' name."""
    pd = _pandas()
    if pd is not None and isinstance(items, pd.DataFrame):
        columns = [str(c) for c in items.columns]
        spaces = []
        for label, values in zip(
            items.index, items.itertuples(index=False, name=None), strict=True
        ):
            row = dict(zip(columns, values, strict=True))
            spaces.append({"item": row, "index": label, **row})
        return Rows("dataframe", items, spaces, list(items.index))
    if pd is not None and isinstance(items, pd.Series):
        name = items.name if isinstance(items.name, str) else None
        spaces = []
        for label, value in items.items():
            space = {"item": value, "index": label}
            if name:
                space[name] = value
            spaces.append(space)
        return Rows("series", items, spaces, list(items.index))
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
        raise TypeError(
            f"map() takes a list, a pandas Series or a DataFrame of rows, not "
            f"{type(items).__name__}"
            + (
                " (for a dict, pass list(d.items()) or a list of dicts)"
                if isinstance(items, Mapping)
                else ""
            )
        )
    values = list(items)
    spaces = []
    for i, value in enumerate(values):
        space = {"item": value, "index": i}
        if isinstance(value, Mapping):
            space.update({str(k): v for k, v in value.items()})
        spaces.append(space)
    return Rows("list", values, spaces, list(range(len(values))))


def is_missing(value: Any) -> bool:
    """``None``, NaN, ``pd.NA`` or ``NaT``: a value that would reach the model as "nan"."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    pd = _pandas()
    if pd is None or isinstance(value, (str, bytes, list, tuple, dict, set, Mapping)):
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # not a scalar
        return False


def empty_rows(template: str | Callable[[Any], str], rows: Rows) -> list[int]:
    """The rows whose prompt would be built from a missing value: a field the template
    names that the row has (a column, a key, ``{item}``) holds None/NaN; for a prompt
    function, the row's ``item`` itself."""
    if callable(template):
        return [i for i, space in enumerate(rows.namespaces) if is_missing(space["item"])]
    names = field_names(template) if isinstance(template, str) else []
    return [
        i
        for i, space in enumerate(rows.namespaces)
        if any(n in space and is_missing(space[n]) for n in names)
    ]


def fill_prompts(
    template: str | Callable[[Any], str],
    rows: Rows,
    namespace: Mapping[str, Any],
    budget: int,
    *,
    skip: Collection[int] = (),
    blank_missing: bool = False,
) -> list[str]:
    """The prompt of every row ("" for the rows in ``skip``: not sent, see
    :func:`empty_rows`). A template field that names neither a column / key of *every* row
    nor a variable would reach some rows as written: that is refused before anything is
    sent. A function gets the row's ``item`` and returns the prompt. ``blank_missing``: a
    None/NaN value a field names becomes an empty string, never the word "nan"."""
    if not callable(template) and (not isinstance(template, str) or not template.strip()):
        raise ValueError("the prompt is empty: pass a template such as 'Classify: {review}'")
    left_out = set(skip)
    if callable(template):
        prompts = []
        for i, space in enumerate(rows.namespaces):
            if i in left_out:
                prompts.append("")
                continue
            text = template(space["item"])
            if not isinstance(text, str):
                raise TypeError(
                    f"the prompt function returned {type(text).__name__} for row "
                    f"{space['index']!r}; it must return the prompt as a str"
                )
            prompts.append(text)
        return prompts
    _check_fields(template, rows, namespace)
    fallback = dict(namespace)
    prompts = []
    for i, space in enumerate(rows.namespaces):
        if i in left_out:
            prompts.append("")
            continue
        if blank_missing:
            space = {k: "" if is_missing(v) else v for k, v in space.items()}
        prompts.append(interpolate(template, collections.ChainMap(space, fallback), budget=budget))
    return prompts


def _check_fields(template: str, rows: Rows, namespace: Mapping[str, Any]) -> None:
    """Every field the template names is a column / key of every row, or a variable."""
    names = [n for n in field_names(template) if n not in namespace]
    if not names or not rows.namespaces:
        return
    known = set(rows.namespaces[0])
    unknown = [n for n in names if n not in known]
    if unknown:
        fields = ", ".join(f"{{{n}}}" for n in unknown)
        columns = sorted(k for k in known if k not in ("item", "index"))
        have = f"the rows have {', '.join(columns)}" if columns else "the rows are not records"
        raise ValueError(
            f"the prompt's {fields} names no column, key or variable ({have}; every row also "
            "has {item} and {index}): fix the name, or write {{…}} to send braces as written"
        )
    for name in names:
        lacking = [rows.labels[i] for i, space in enumerate(rows.namespaces) if name not in space]
        if lacking:
            shown = ", ".join(repr(label) for label in lacking[:5])
            more = f" and {len(lacking) - 5} more" if len(lacking) > 5 else ""
            raise ValueError(
                f"the prompt's {{{name}}} is missing from {len(lacking)} of "
                f"{len(rows.namespaces)} rows (rows {shown}{more}): give every row the key "
                f"{name!r} (None for an empty one), or name a variable instead; nothing was sent"
            )


# -- shaping the results ------------------------------------------------------------------


def shape(rows: Rows, responses: list[Response], column: str, schema: Schema | None) -> Any:
    """The results in the input's shape (see :func:`map`)."""
    if rows.kind == "list":
        return responses
    pd = _pandas()
    assert pd is not None
    if rows.kind == "series":
        return pd.Series(responses, index=rows.items.index, name=column, dtype=object)
    if schema is None:
        new = pd.DataFrame({column: pd.Series(responses, index=rows.items.index, dtype=object)})
    else:
        records = []
        for response in responses:
            data = to_plain(response.data) if response.data is not None else None
            records.append(data if isinstance(data, dict) else {column: data})
        new = pd.DataFrame.from_records(records, index=rows.items.index)
        if new.columns.empty:
            new[column] = None
    problems = [_problem(r) for r in responses]
    if any(problems):
        new["error"] = pd.Series(problems, index=rows.items.index, dtype=object)
    taken = set(rows.items.columns)
    new = new.rename(columns={c: f"{c}_llm" for c in new.columns if c in taken})
    return rows.items.join(new)


def _problem(response: Response) -> str | None:
    """The ``error`` column's entry: failed, stopped or skipped rows (a cut answer is the
    ``max_tokens`` you chose, not an error: its Response says ``length``)."""
    if response.finish_reason == "stop" or (
        response.finish_reason == "length" and response.error is None
    ):
        return None
    if response.finish_reason == "length":  # a structured answer cut before its JSON closed
        return response.error
    if response.error == EMPTY_INPUT:
        return EMPTY_INPUT
    if response.finish_reason == "error":
        return f"failed: {response.error}"
    return response.ending


def skipped_response(model: str) -> Response:
    """The result of a row skipped as empty input (nothing was sent, nothing paid)."""
    return Response("", finish_reason="error", error=EMPTY_INPUT, model=model, cost=0.0)


__all__ = [
    "EMPTY_INPUT",
    "Missing",
    "Rows",
    "empty_rows",
    "fill_prompts",
    "is_missing",
    "shape",
    "skipped_response",
    "take_rows",
]
