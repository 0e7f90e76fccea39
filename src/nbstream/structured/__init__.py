"""Structured output: ask for JSON that matches a type, show it while it streams, validate it.

Pieces (the wiring into providers and front doors is separate):

* :func:`resolve_schema` turns what the user named — a pydantic model, a dataclass, a
  ``TypedDict``, a JSON-Schema dict, or a type expression such as ``list[Invoice]`` /
  ``dict[str, float]`` — into a :class:`Schema`. A string is evaluated **safely**: it is
  parsed with :mod:`ast` and only names, attributes of modules and classes, subscripts,
  tuples, ``|`` and ``None`` (and string/number constants inside ``Literal[...]``) are
  allowed; nothing is called and no string is ever evaluated (a forward reference such as
  ``list["..."]`` would be, by pydantic: it is refused).
* :attr:`Schema.json_schema` is ready for OpenAI's strict mode and Anthropic's tool input:

  - every object has ``additionalProperties: false`` and lists *all* its properties as
    ``required``;
  - an **optional field** (one with a default) becomes required but *nullable*
    (``anyOf: [<its schema>, {"type": "null"}]``); after parsing, a ``null`` for a field
    whose own type does not allow ``null`` is removed, so the field's default applies;
  - a **map** (``dict[str, float]``, an object with ``additionalProperties: <schema>``;
    strict mode cannot express free keys) becomes a list of ``{"key", "value"}`` pairs,
    turned back into a dict after parsing;
  - ``oneOf`` becomes ``anyOf``; ``default`` keywords are dropped;
  - the top level must be an object: anything else (``list[Invoice]``, a map, a union,
    a scalar) is wrapped as ``{"items": <it>}`` and unwrapped after parsing.

  What strict mode cannot express at all (``Any``, free-form objects, tuples) is kept
  as is and :attr:`Schema.strict` is ``False`` (send ``strict: false``; validation after
  the answer still applies).
* :meth:`Schema.validate` parses the answer and validates it: with pydantic's
  ``TypeAdapter`` for Python types (pydantic is a dependency of nbstream); for JSON-Schema
  dicts with ``jsonschema`` when it is installed, else a small built-in validator of the
  keywords such schemas use. Failures raise :class:`SchemaValidationError` with one line
  naming the field.
* :func:`parse_partial` / :class:`PartialJSON`: the best Python value for an incomplete JSON
  prefix, for showing the answer while it streams. :class:`PartialJSON` is incremental:
  the cost of an update is proportional to the new text (plus the open string, if one).
* :func:`render_partial` (sanitized HTML: a growing table for a list of records, a
  field/value table for one object) and :func:`to_records` (for ``to_pandas()``).
* The native mechanisms (``response_format``, a forced tool call, a response schema, a
  llama.cpp grammar) belong to their provider modules (:mod:`nbstream.providers`), which
  take :attr:`Schema.wire`; :func:`instructions` is the prompt text for servers without any.

The pieces live in :mod:`.types` (type expressions), :mod:`.schema` (the Schema,
validation), :mod:`.partial` (partial JSON) and :mod:`.html` (records and HTML).
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Any

from nbstream.errors import SchemaError, SchemaValidationError
from nbstream.providers.messages import schema_instructions
from nbstream.structured.expressions import WRAP_KEY, to_plain
from nbstream.structured.partial import PartialJSON, parse_partial
from nbstream.structured.schema import Schema, resolve_schema
from nbstream.structured.view import IncrementalStructured, render_partial, to_records

__all__ = [
    "WRAP_KEY",
    "IncrementalStructured",
    "PartialJSON",
    "Schema",
    "SchemaError",
    "SchemaLike",
    "SchemaValidationError",
    "instructions",
    "parse_partial",
    "render_partial",
    "resolve_schema",
    "to_plain",
    "to_records",
]

SchemaLike = typing.Union["Schema", Mapping[str, Any]]
"""A :class:`Schema`, or its :attr:`Schema.wire` dict (what a provider ``Request`` carries)."""


def instructions(schema: SchemaLike) -> str:
    """Prompt text for servers that take no ``response_format`` (to append to the prompt
    or the system prompt)."""
    return schema_instructions(schema.wire if isinstance(schema, Schema) else schema)
