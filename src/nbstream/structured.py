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
* Native mechanisms, each defined by its provider module and re-exported here for a
  :class:`Schema`: :func:`openai_response_format`, :func:`anthropic_tool`,
  :func:`llama_grammar` / :func:`gbnf` (llama.cpp grammar from the JSON schema) and
  :func:`instructions` (prompt text for servers without any of these).
"""

from __future__ import annotations

import ast
import collections.abc
import copy
import dataclasses
import datetime
import decimal
import enum
import html
import importlib
import json
import math
import operator
import re
import sys
import types
import typing
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import typing_extensions

from .errors import SchemaError, SchemaValidationError
from .providers.messages import schema_instructions

__all__ = [
    "IncrementalStructured",
    "PartialJSON",
    "Schema",
    "SchemaError",
    "SchemaLike",
    "SchemaValidationError",
    "anthropic_tool",
    "gbnf",
    "instructions",
    "llama_grammar",
    "openai_response_format",
    "parse_partial",
    "render_partial",
    "resolve_schema",
    "to_plain",
    "to_records",
]

scanstring: Callable[[str, int, bool], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]
"""The standard library's JSON string scanner (not in the type stubs)."""

WRAP_KEY = "items"
"""The property that holds a non-object answer (``list[Invoice]`` → ``{"items": [...]}``)."""

MAX_SPEC_LENGTH = 1000


# -- safe evaluation of a type expression ------------------------------------------------------

_BUILTIN_TYPES: dict[str, Any] = {
    "list": list,
    "dict": dict,
    "tuple": tuple,
    "set": set,
    "frozenset": frozenset,
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
}
_TYPING_NAMES: dict[str, Any] = {
    name: getattr(typing, name)
    for name in (
        "Any",
        "Dict",
        "FrozenSet",
        "List",
        "Literal",
        "Optional",
        "Sequence",
        "Set",
        "Tuple",
        "Union",
    )
}
_LITERALS = (typing.Literal, typing_extensions.Literal)
_NODE_WORDS = {
    ast.Call: "a call",
    ast.Lambda: "a lambda",
    ast.BinOp: "an operator",
    ast.Compare: "a comparison",
    ast.List: "a list display",
    ast.Dict: "a dict display",
    ast.Starred: "a star",
    ast.NamedExpr: "an assignment",
}


def _is_typing_object(value: Any) -> bool:
    return isinstance(value, (types.GenericAlias, types.UnionType)) or type(value).__module__ in (
        "typing",
        "typing_extensions",
    )


class _Evaluator:
    """Evaluate a parsed type expression by walking its AST (no ``eval``)."""

    def __init__(self, namespace: Mapping[str, Any]) -> None:
        self.namespace = namespace

    def refuse(self, node: ast.AST, why: str | None = None) -> SchemaError:
        what = why or _NODE_WORDS.get(type(node), f"{type(node).__name__} syntax")
        return SchemaError(
            f"not allowed in a schema expression: {what} "
            "(use names, attributes, [subscripts], | and None only)"
        )

    def visit(self, node: ast.AST, *, in_literal: bool = False) -> Any:
        if isinstance(node, ast.Name):
            if node.id in self.namespace:
                return self.namespace[node.id]
            if node.id in _BUILTIN_TYPES:
                return _BUILTIN_TYPES[node.id]
            if node.id in _TYPING_NAMES:
                return _TYPING_NAMES[node.id]
            raise SchemaError(f"unknown name {node.id!r} in the schema: define or import it first")
        if isinstance(node, ast.Constant):
            if node.value is None:
                return None
            if in_literal and isinstance(node.value, (str, int, bool)):
                return node.value
            raise self.refuse(node, f"the constant {node.value!r} outside Literal[...]")
        if isinstance(node, ast.Attribute):
            if node.attr.startswith("_"):
                raise self.refuse(node, f"the private attribute {node.attr!r}")
            base = self.visit(node.value)
            if not isinstance(base, (types.ModuleType, type)):
                raise self.refuse(node, "an attribute of something that is not a module or class")
            try:
                return getattr(base, node.attr)
            except AttributeError:
                raise SchemaError(
                    f"{_label(base)} has no attribute {node.attr!r} (in the schema)"
                ) from None
        if isinstance(node, ast.Subscript):
            base = self.visit(node.value)
            if not (isinstance(base, type) or _is_typing_object(base)):
                raise self.refuse(node, f"a subscript of {type(base).__name__}, not of a type")
            literal = any(base is lit for lit in _LITERALS)
            index = node.slice
            if isinstance(index, ast.Tuple):
                args: Any = tuple(self.visit(e, in_literal=literal) for e in index.elts)
            else:
                args = self.visit(index, in_literal=literal)
            try:
                return base[args]
            except Exception as exc:
                raise SchemaError(f"invalid type in the schema: {exc}") from None
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            left, right = self.visit(node.left), self.visit(node.right)
            return typing.Union[left, right]  # noqa: UP007 - not the operands' own __or__
        raise self.refuse(node)


def _evaluate(spec: str, namespace: Mapping[str, Any]) -> Any:
    if len(spec) > MAX_SPEC_LENGTH:
        raise SchemaError(f"schema expression longer than {MAX_SPEC_LENGTH} characters")
    try:
        tree = ast.parse(spec.strip(), mode="eval")
    except SyntaxError as exc:
        raise SchemaError(f"invalid schema expression {spec!r}: {exc.msg}") from None
    return _Evaluator(namespace).visit(tree.body)


# -- only data types describe an answer ----------------------------------------------------------

_VALUE_TYPES: frozenset[Any] = frozenset(
    {
        *_BUILTIN_TYPES.values(),
        bytes,
        type(None),
        datetime.datetime,
        datetime.date,
        datetime.time,
        datetime.timedelta,
        decimal.Decimal,
        uuid.UUID,
    }
)
_CONTAINER_ORIGINS: frozenset[Any] = frozenset(
    {
        list,
        dict,
        tuple,
        set,
        frozenset,
        collections.abc.Sequence,
        collections.abc.MutableSequence,
        collections.abc.Mapping,
        collections.abc.MutableMapping,
        collections.abc.Set,
        collections.abc.MutableSet,
        typing.Union,
        types.UnionType,
    }
)
_ANNOTATED = (typing.Annotated, typing_extensions.Annotated)
_QUALIFIERS = frozenset(
    getattr(module, name)
    for module in (typing, typing_extensions)
    for name in ("Required", "NotRequired", "ReadOnly", "ClassVar", "Final")
    if hasattr(module, name)
)
"""Wrappers of a record's field type (``NotRequired[int]``): the type inside is checked."""
_ACCEPTED = (
    "a schema describes the answer's shape: a pydantic model, a dataclass, a TypedDict, a "
    "NamedTuple, an Enum, list[...] / dict[str, ...] / X | None of them, or a JSON-schema dict"
)


def _what(value: Any) -> str:
    if isinstance(value, types.ModuleType):
        return "a module"
    if isinstance(value, type):
        return "a class that is not a plain data type"
    if callable(value):
        return "a function"
    return f"a {type(value).__name__} object"


def _is_constraint(metadata: Any) -> bool:
    """``Annotated[...]`` metadata that only constrains a value: pydantic's ``Field(...)`` and
    the ``annotated_types`` constraints (``Gt``, ``Len``, …) or a plain description."""
    module = type(metadata).__module__.partition(".")[0]
    return isinstance(metadata, str) or module in ("annotated_types", "pydantic")


def _check_data_type(tp: Any, seen: set[int] | None = None) -> None:
    """Refuse anything but a data type, before pydantic sees it.

    pydantic's ``TypeAdapter`` accepts *any* callable and then calls it with the model's
    arguments when validating (``--schema shutil.rmtree`` would delete what the model names);
    a class of arbitrary behaviour would be constructed the same way. So only records and
    values pass: pydantic models, dataclasses, TypedDicts, NamedTuples, Enums, the built-in
    value types and the typing constructs over them (fields of records are checked too)."""
    seen = set() if seen is None else seen
    if id(tp) in seen or tp is None or tp is typing.Any or tp is Ellipsis:
        return
    seen.add(id(tp))
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is not None:
        if any(origin is lit for lit in _LITERALS):
            return
        if any(origin is ann for ann in _ANNOTATED):
            for metadata in getattr(tp, "__metadata__", ()):
                if not _is_constraint(metadata):
                    raise SchemaError(
                        f"Annotated[...] may only carry constraints such as Field(...) or "
                        f"Gt(0) in a schema, not {_short_repr(metadata)}: validators are code, "
                        "and nothing named in a schema is called"
                    )
            _check_data_type(args[0] if args else None, seen)
            return
        if origin not in _CONTAINER_ORIGINS and origin not in _QUALIFIERS:
            _check_data_type(origin, seen)
        for arg in args:
            _check_data_type(arg, seen)
        return
    if isinstance(tp, type):
        if tp in _VALUE_TYPES or tp in _CONTAINER_ORIGINS or issubclass(tp, enum.Enum):
            return
        if _is_pydantic_model(tp):
            return
        record = (
            dataclasses.is_dataclass(tp)
            or typing_extensions.is_typeddict(tp)
            or (issubclass(tp, tuple) and hasattr(tp, "_fields"))
        )
        if record:
            try:
                hints = typing.get_type_hints(tp, include_extras=True)
            except Exception:  # unresolvable forward references: pydantic refuses them later
                hints = {}
            for hint in hints.values():
                _check_data_type(hint, seen)
            return
    raise SchemaError(
        f"cannot describe {_label_of(tp)} as an answer: it is {_what(tp)}; {_ACCEPTED}"
    )


def _is_pydantic_model(tp: type) -> bool:
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and issubclass(tp, pydantic.BaseModel)


def _label_of(value: Any) -> str:
    """``shutil.rmtree``, ``Popen`` (a class: its name, as in other messages), ``shutil``."""
    if isinstance(value, types.ModuleType):
        return value.__name__
    if isinstance(value, type):
        return value.__name__
    module = getattr(value, "__module__", None)
    name = getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
    if not isinstance(name, str):
        return _short_repr(value)
    name = name.rpartition("<locals>.")[2]
    if not isinstance(module, str) or module in ("builtins", "__main__") or "." in name:
        return name
    return f"{module}.{name}"


# -- typing.TypedDict on Python < 3.12 -----------------------------------------------------------


def _compatible(tp: Any, seen: dict[int, Any] | None = None) -> Any:
    """Rebuild ``typing.TypedDict`` classes as ``typing_extensions`` ones (pydantic refuses
    the former below Python 3.12), inside generic aliases too."""
    if sys.version_info >= (3, 12):
        return tp
    seen = {} if seen is None else seen
    if id(tp) in seen:
        return seen[id(tp)]
    if isinstance(tp, type) and typing.is_typeddict(tp) and type(tp).__module__ == "typing":
        hints = typing.get_type_hints(tp, include_extras=True)
        fields: dict[str, Any] = {}
        for key, hint in hints.items():
            if typing.get_origin(hint) in (
                typing_extensions.Required,
                typing_extensions.NotRequired,
            ):
                hint = typing.get_args(hint)[0]
            hint = _compatible(hint, seen)
            required = key in getattr(tp, "__required_keys__", ())
            fields[key] = (
                typing_extensions.Required[hint]
                if required
                else typing_extensions.NotRequired[hint]
            )
        new: Any = typing_extensions.TypedDict(tp.__name__, fields)  # type: ignore[misc]
        new.__module__ = tp.__module__
        new.__doc__ = tp.__doc__
        seen[id(tp)] = new
        return new
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is not None and args and not any(origin is lit for lit in _LITERALS):
        new_args = tuple(_compatible(a, seen) for a in args)
        if new_args != args:
            try:
                if isinstance(tp, types.GenericAlias):
                    return types.GenericAlias(origin, new_args)
                if origin is types.UnionType or origin is typing.Union:
                    return typing.Union[new_args]  # noqa: UP007
                return tp.copy_with(new_args)
            except Exception:
                return tp
    return tp


# -- labels and names ----------------------------------------------------------------------------

_MODULE_PREFIX = re.compile(r"\b(?:[A-Za-z_]\w*\.)+(?=[A-Za-z_])")


def _label(tp: Any) -> str:
    """``list[Invoice]``, ``City``, ``dict[str, float]`` (module prefixes removed)."""
    if isinstance(tp, type) and not isinstance(tp, types.GenericAlias):
        return tp.__name__
    return _MODULE_PREFIX.sub("", repr(tp))


def _name(label: str) -> str:
    """A tool / response-format name: ``^[A-Za-z0-9_-]{1,64}$``."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", label).strip("_")[:64]
    return name or "answer"


# -- the strict form ----------------------------------------------------------------------------


def _resolve_ref(root: Mapping[str, Any], ref: str) -> Any:
    if not ref.startswith("#"):
        return None
    node: Any = root
    for part in ref[1:].split("/")[1:] if ref != "#" else []:
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _allows_null(node: Any, root: Mapping[str, Any], depth: int = 0) -> bool:
    if not isinstance(node, Mapping) or depth > 20:
        return False
    if "$ref" in node:
        return _allows_null(_resolve_ref(root, node["$ref"]), root, depth + 1)
    kind = node.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return True
    if "const" in node and node["const"] is None:
        return True
    if None in (node.get("enum") or ()):
        return True
    return any(
        _allows_null(branch, root, depth + 1)
        for key in ("anyOf", "oneOf")
        for branch in node.get(key, ())
    )


def _is_map(node: Mapping[str, Any]) -> bool:
    additional = node.get("additionalProperties")
    return "properties" not in node and isinstance(additional, Mapping) and bool(additional)


class _Strictifier:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.strict = True
        self.needs_decode = False

    def visit(self, node: Any) -> Any:
        if not isinstance(node, Mapping):
            return node
        node = dict(node)
        node.pop("default", None)
        if "$ref" in node:
            return node
        if "oneOf" in node:
            node["anyOf"] = [*node.get("anyOf", ()), *node.pop("oneOf")]
        if "anyOf" in node:
            node["anyOf"] = [self.visit(b) for b in node["anyOf"]]
        if "allOf" in node:
            node["allOf"] = [self.visit(b) for b in node["allOf"]]
            self.strict = False
        kind = node.get("type")
        kinds = set(kind) if isinstance(kind, list) else {kind} if kind else set()
        if "properties" in node:
            properties = {}
            required = set(node.get("required", ()))
            if (
                isinstance(node.get("additionalProperties"), Mapping)
                and node["additionalProperties"]
            ):
                self.strict = False  # fixed and free keys at once: strict mode has no form
            for key, value in node["properties"].items():
                value = self.visit(value)
                if key not in required and not _allows_null(value, self.root):
                    value = {"anyOf": [value, {"type": "null"}]}
                    self.needs_decode = True
                properties[key] = value
            node["properties"] = properties
            node["required"] = list(properties)
            node["additionalProperties"] = False
            node.setdefault("type", "object")
        elif _is_map(node):
            self.needs_decode = True
            pair = {
                "type": "object",
                "properties": {
                    "key": {"type": "string"},
                    "value": self.visit(node["additionalProperties"]),
                },
                "required": ["key", "value"],
                "additionalProperties": False,
            }
            mapped: dict[str, Any] = {
                "type": "array",
                "description": "A JSON object written as a list of key/value pairs.",
                "items": pair,
            }
            if "title" in node:
                mapped["title"] = node["title"]
            return mapped
        elif "object" in kinds:
            if node.get("additionalProperties") is False:
                node.update(properties={}, required=[])
            else:
                self.strict = False  # a free-form object
        if "array" in kinds or "items" in node or "prefixItems" in node:
            items = node.get("items")
            if isinstance(items, Mapping) and items:
                node["items"] = self.visit(items)
            else:
                self.strict = False  # an array of anything
            if "prefixItems" in node:
                node["prefixItems"] = [self.visit(b) for b in node["prefixItems"]]
                self.strict = False
        if not (kinds or {"anyOf", "allOf", "enum", "const"} & node.keys()):
            self.strict = False  # Any
        return node


def _is_strict_object(node: Mapping[str, Any]) -> bool:
    return (
        node.get("type") == "object"
        and isinstance(node.get("properties"), Mapping)
        and node.get("additionalProperties") is False
    )


def _strict_form(original: Mapping[str, Any]) -> tuple[dict[str, Any], bool, bool, bool]:
    """(strict schema, strict-compatible, wrapped, needs decoding)."""
    root = copy.deepcopy(dict(original))
    strictifier = _Strictifier(original)
    defs = {}
    for key in ("$defs", "definitions"):
        if isinstance(root.get(key), Mapping):
            defs[key] = {k: strictifier.visit(v) for k, v in root.pop(key).items()}
    if "$ref" in root:  # pydantic's form for a recursive model: inline the target
        target = _resolve_ref(original, root["$ref"])
        if isinstance(target, Mapping):
            root = {**copy.deepcopy(dict(target)), **{k: v for k, v in root.items() if k != "$ref"}}
    root.pop("$schema", None)
    top = strictifier.visit(root)
    wrapped = not _is_strict_object(top)
    if wrapped:
        top = {
            "type": "object",
            "properties": {WRAP_KEY: top},
            "required": [WRAP_KEY],
            "additionalProperties": False,
        }
    top.update(defs)
    return top, strictifier.strict, wrapped, strictifier.needs_decode


def _branch_fits(data: Any, node: Any, root: Mapping[str, Any]) -> bool:
    if isinstance(node, Mapping) and "$ref" in node:
        node = _resolve_ref(root, node["$ref"])
    if not isinstance(node, Mapping):
        return False
    kind = node.get("type")
    kinds = set(kind) if isinstance(kind, list) else {kind} if kind else set()
    if isinstance(data, dict):
        return "object" in kinds or "properties" in node or "additionalProperties" in node
    if isinstance(data, list):
        return "array" in kinds or "items" in node or _is_map(node)
    if data is None:
        return "null" in kinds
    if isinstance(data, bool):
        return "boolean" in kinds
    if isinstance(data, (int, float)):
        return bool(kinds & {"integer", "number"})
    if isinstance(data, str):
        return "string" in kinds
    return False


def _decode(data: Any, node: Any, root: Mapping[str, Any], depth: int = 0) -> Any:
    """Strict-shaped data → the original schema's shape (maps from pairs, nulls of
    optional fields removed). Builds new containers; tolerant of partial data."""
    if not isinstance(node, Mapping) or depth > 100:
        return data
    if "$ref" in node:
        return _decode(data, _resolve_ref(root, node["$ref"]), root, depth + 1)
    branches = [*node.get("anyOf", ()), *node.get("oneOf", ())]
    if branches:
        if data is None:
            return None
        if isinstance(data, list):  # prefer a real array over a map written as pairs
            ordered = [b for b in branches if not _is_map(_deref(b, root))]
            ordered += [b for b in branches if _is_map(_deref(b, root))]
            branches = ordered
        for branch in branches:
            if _branch_fits(data, branch, root):
                return _decode(data, branch, root, depth + 1)
        return data
    properties = node.get("properties")
    if isinstance(properties, Mapping) and isinstance(data, dict):
        required = set(node.get("required", ()))
        out = {}
        for key, value in data.items():
            sub = properties.get(key)
            if sub is None:
                out[key] = value
            elif value is None and key not in required and not _allows_null(sub, root):
                continue  # the field's default applies
            else:
                out[key] = _decode(value, sub, root, depth + 1)
        return out
    if _is_map(node):
        value_schema = node["additionalProperties"]
        if isinstance(data, list):
            pairs = {}
            for pair in data:
                if isinstance(pair, dict) and "key" in pair:
                    pairs[str(pair["key"])] = _decode(
                        pair.get("value"), value_schema, root, depth + 1
                    )
            return pairs
        if isinstance(data, dict):
            return {k: _decode(v, value_schema, root, depth + 1) for k, v in data.items()}
    items = node.get("items")
    if isinstance(items, Mapping) and isinstance(data, list):
        return [_decode(x, items, root, depth + 1) for x in data]
    return data


def _deref(node: Any, root: Mapping[str, Any]) -> Any:
    if isinstance(node, Mapping) and "$ref" in node:
        return _resolve_ref(root, node["$ref"]) or {}
    return node if isinstance(node, Mapping) else {}


# -- the Schema object ----------------------------------------------------------------------------


class Schema:
    """What the answer must look like, in every form the pieces need.

    ``name``: for the tool / response format (``^[A-Za-z0-9_-]{1,64}$``); ``label``: for
    people (``list[Invoice]``); ``json_schema``: the strict form (module docstring);
    ``source_schema``: the schema as the type (or the user) describes it; ``strict``:
    whether ``json_schema`` meets OpenAI's strict-mode rules; ``wrapped``: whether the
    answer sits under ``{"items": ...}``; ``python_type``: the type validated against
    (``None`` for a JSON-Schema dict).
    """

    def __init__(self, *, python_type: Any = None, source_schema: Mapping[str, Any], label: str):
        self.python_type = python_type
        self.source_schema: dict[str, Any] = dict(source_schema)
        self.label = label
        title = self.source_schema.get("title") if python_type is None else None
        self.name = _name(title if isinstance(title, str) and title else label)
        self.json_schema, self.strict, self.wrapped, self._needs_decode = _strict_form(
            self.source_schema
        )
        self._adapter: Any = None
        if python_type is not None:
            from pydantic import TypeAdapter

            self._adapter = TypeAdapter(python_type)

    def __repr__(self) -> str:
        return f"<Schema {self.label} strict={self.strict} wrapped={self.wrapped}>"

    @property
    def wire(self) -> dict[str, Any]:
        """What a provider needs, as plain JSON data (for ``Request``, the replay cache's
        key, and the native-mechanism functions): name, label, strict schema, strict."""
        return {
            "name": self.name,
            "label": self.label,
            "schema": self.json_schema,
            "strict": self.strict,
        }

    # -- answers -> values

    def unwrap(self, obj: Any) -> Any:
        """The answer inside ``{"items": ...}`` when the schema is wrapped (an answer that
        is not wrapped — a server that ignored the wrapper — is returned as it is)."""
        if self.wrapped and isinstance(obj, dict) and set(obj) <= {WRAP_KEY}:
            return obj.get(WRAP_KEY)
        return obj

    def decode(self, data: Any) -> Any:
        """Parsed strict-form JSON → plain data in the type's own shape (unwrapped, maps
        rebuilt, nulls of optional fields removed). Tolerates partial data."""
        data = self.unwrap(data)
        if self._needs_decode:
            data = _decode(data, self.source_schema, self.source_schema)
        return data

    def partial(self, text_or_value: Any) -> Any:
        """The best plain value for a partial answer (text, or a :class:`PartialJSON`
        value), decoded like :meth:`decode`; ``None`` when nothing is there yet."""
        value = parse_partial(text_or_value) if isinstance(text_or_value, str) else text_or_value
        try:
            return self.decode(value)
        except Exception:
            return None

    def answer_text(self, text: str, data: Any) -> str:
        """The text of a validated answer: the JSON of the type asked for. A wrapped answer
        (``list[...]`` → ``{"items": [...]}``) or a map sent as key/value pairs is the
        provider's wire form, not the answer: its text becomes the JSON of ``data``."""
        if not (self.wrapped or self._needs_decode):
            return text
        return json.dumps(to_plain(data), ensure_ascii=False)

    def validate(self, text: str) -> Any:
        """Parse the answer and validate it: a model instance, a list of them, a dict…
        Raises :class:`SchemaValidationError`."""
        return self.validate_data(_load_json(text))

    def validate_data(self, data: Any) -> Any:
        """Validate already-parsed JSON (e.g. a tool call's ``input``)."""
        data = self.decode(data)
        if self._adapter is not None:
            return self._validate_pydantic(data)
        problems = _check_json_schema(data, self.source_schema)
        if problems:
            raise _problems_error(self.label, problems)
        return data

    def _validate_pydantic(self, data: Any) -> Any:
        from pydantic import ValidationError

        try:
            return self._adapter.validate_json(json.dumps(data))
        except ValidationError as exc:
            problems = []
            for error in exc.errors(include_url=False):
                message = str(error.get("msg", "invalid"))
                if error.get("type") != "missing" and "input" in error:
                    message += f" (got {_short_repr(error['input'])})"
                problems.append((_path(error.get("loc", ())), message))
            raise _problems_error(self.label, problems) from None


def _short_repr(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _path(loc: Any) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _problems_error(label: str, problems: list[tuple[str, str]]) -> SchemaValidationError:
    field, message = problems[0]
    text = f"the answer does not match {label}: " + (f"{field}: {message}" if field else message)
    if len(problems) > 1:
        more = len(problems) - 1
        text += f" (and {more} more problem{'s' * (more != 1)})"
    return SchemaValidationError(" ".join(text.split()), field=field, errors=problems)


_FENCE = re.compile(r"^\s*```[\w+-]*[ \t]*\n(.*?)\n?[ \t]*```\s*$", re.DOTALL)


def _load_json(text: str) -> Any:
    """``json.loads``, tolerating a Markdown code fence around the JSON and prose before
    or after it (the prompt-only fallback gets both)."""
    text = str(text)
    if not text.strip():
        raise SchemaValidationError("the answer is empty (expected JSON)")
    try:
        return json.loads(text)
    except ValueError as exc:
        first_error = exc
    fenced = _FENCE.match(text)
    if fenced:
        try:
            return json.loads(fenced.group(1))
        except ValueError:
            pass
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    if starts:
        try:
            return json.JSONDecoder().raw_decode(text, min(starts))[0]
        except ValueError:
            pass
    message = str(first_error)
    partial = PartialJSON()
    partial.feed(text)
    partial.finish()
    if partial.value is not None and not partial.done and not partial.failed:
        message = "the JSON is incomplete (was the answer cut short?): " + message
    raise SchemaValidationError(f"the answer is not valid JSON: {message}")


# -- JSON-Schema validation (schema dicts) --------------------------------------------------------


def _check_json_schema(data: Any, schema: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Problems of ``data`` against ``schema`` as ``(path, message)``; the first is the
    most relevant. ``jsonschema`` when installed, else the built-in subset."""
    try:
        jsonschema: Any = importlib.import_module("jsonschema")
    except ImportError:
        return _mini_check(data, schema, schema, ())
    cls = jsonschema.validators.validator_for(schema)
    validator = cls(schema)
    errors = list(validator.iter_errors(data))
    if not errors:
        return []
    best = jsonschema.exceptions.best_match(errors)
    ordered = [best, *(e for e in errors if e is not best)]
    return [(_path(e.absolute_path), e.message) for e in ordered]


_JSON_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def _is_type(value: Any, kind: str) -> bool:
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    expected = _JSON_TYPES.get(kind)
    return expected is not None and isinstance(value, expected)


def _mini_check(
    data: Any, node: Any, root: Mapping[str, Any], path: tuple[Any, ...]
) -> list[tuple[str, str]]:
    """A validator for the keywords JSON schemas of structured answers use: ``$ref``,
    ``anyOf``/``oneOf``/``allOf``, ``type``, ``enum``, ``const``, ``properties``,
    ``required``, ``additionalProperties``, ``items``, ``prefixItems``, ``min/maxItems``,
    ``min/maxLength``, ``minimum``/``maximum`` (and exclusive), ``pattern``."""
    if node is True or not isinstance(node, Mapping):
        return []
    where = _path(path)
    if "$ref" in node:
        target = _resolve_ref(root, node["$ref"])
        if target is None:
            return [(where, f"unresolvable $ref {node['$ref']!r}")]
        return _mini_check(data, target, root, path)
    problems: list[tuple[str, str]] = []
    for key in ("anyOf", "oneOf"):
        if key in node:
            matching = [b for b in node[key] if not _mini_check(data, b, root, path)]
            if not matching:
                problems.append(
                    (where, f"{_short_repr(data)} is not valid under any of the given schemas")
                )
            elif key == "oneOf" and len(matching) > 1:
                problems.append((where, f"{_short_repr(data)} is valid under more than one schema"))
    for branch in node.get("allOf", ()):
        problems += _mini_check(data, branch, root, path)
    kind = node.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not any(_is_type(data, k) for k in kinds):
            shown = kinds[0] if len(kinds) == 1 else kinds
            return [*problems, (where, f"{_short_repr(data)} is not of type {shown!r}")]
    if "enum" in node and data not in node["enum"]:
        problems.append((where, f"{_short_repr(data)} is not one of {node['enum']!r}"))
    if "const" in node and data != node["const"]:
        problems.append((where, f"{node['const']!r} was expected"))
    if isinstance(data, dict):
        properties = node.get("properties") or {}
        for key in node.get("required", ()):
            if key not in data:
                problems.append((_path((*path, key)), f"{key!r} is a required property"))
        additional = node.get("additionalProperties", True)
        for key, value in data.items():
            if key in properties:
                problems += _mini_check(value, properties[key], root, (*path, key))
            elif additional is False:
                problems.append((where, f"additional property {key!r} is not allowed"))
            elif isinstance(additional, Mapping):
                problems += _mini_check(value, additional, root, (*path, key))
    if isinstance(data, list):
        prefix = node.get("prefixItems") or []
        for i, value in enumerate(data):
            sub = prefix[i] if i < len(prefix) else node.get("items")
            if sub is not None:
                problems += _mini_check(value, sub, root, (*path, i))
        if "minItems" in node and len(data) < node["minItems"]:
            problems.append((where, f"should have at least {node['minItems']} items"))
        if "maxItems" in node and len(data) > node["maxItems"]:
            problems.append((where, f"should have at most {node['maxItems']} items"))
    if isinstance(data, str):
        if "minLength" in node and len(data) < node["minLength"]:
            problems.append((where, f"{_short_repr(data)} is too short"))
        if "maxLength" in node and len(data) > node["maxLength"]:
            problems.append((where, f"{_short_repr(data)} is too long"))
        if "pattern" in node and not re.search(node["pattern"], data):
            problems.append((where, f"{_short_repr(data)} does not match {node['pattern']!r}"))
    if _is_type(data, "number"):
        limits: tuple[tuple[str, Callable[[Any, Any], bool]], ...] = (
            ("minimum", operator.lt),
            ("maximum", operator.gt),
            ("exclusiveMinimum", operator.le),
            ("exclusiveMaximum", operator.ge),
        )
        for key, fails in limits:
            if key in node and isinstance(node[key], (int, float)) and fails(data, node[key]):
                problems.append((where, f"{data!r} is out of range ({key} {node[key]})"))
    return problems


# -- resolve_schema -----------------------------------------------------------------------------

_SCHEMA_KEYS = {"type", "properties", "$ref", "anyOf", "oneOf", "allOf", "items", "enum", "const"}


def resolve_schema(spec: Any, namespace: Mapping[str, Any] | None = None) -> Schema:
    """A :class:`Schema` for ``spec``: a type, a JSON-Schema dict, a :class:`Schema`, or a
    string naming one of those in ``namespace`` (a type expression such as
    ``list[Invoice]``, evaluated safely) or holding a JSON-Schema literal (``{...}``).
    Raises :class:`SchemaError`."""
    if isinstance(spec, Schema):
        return spec
    label: str | None = None
    if isinstance(spec, str):
        text = spec.strip()
        if not text:
            raise SchemaError("empty schema")
        if text.startswith("{"):
            try:
                spec = json.loads(text)
            except ValueError as exc:
                raise SchemaError(f"the schema is not valid JSON: {exc}") from None
        else:
            label = " ".join(text.split())
            spec = _evaluate(text, namespace or {})
    if isinstance(spec, Mapping):
        if not (_SCHEMA_KEYS & spec.keys()):
            raise SchemaError(
                "a dict schema must be a JSON Schema (with 'type', 'properties', 'anyOf', …)"
            )
        title = spec.get("title")
        return Schema(
            source_schema=json.loads(json.dumps(spec)),
            label=label or (title if isinstance(title, str) and title else "JSON schema"),
        )
    if spec is None or isinstance(spec, (str, bytes, int, float, list, tuple)):
        raise SchemaError(
            f"{_short_repr(spec)} is not a type or a JSON schema (a pydantic model, a "
            "dataclass, a TypedDict, list[Model], dict[str, float], or a schema dict)"
        )
    if dataclasses.is_dataclass(spec) and not isinstance(spec, type):
        raise SchemaError("pass the dataclass itself, not an instance of it")
    _check_data_type(spec)
    python_type = _compatible(spec)
    try:
        from pydantic import TypeAdapter

        source = TypeAdapter(python_type).json_schema()
    except Exception as exc:
        message = " ".join(str(exc).split("\n")[0].split())
        raise SchemaError(f"cannot describe {_label(spec)} as a JSON schema: {message}") from None
    return Schema(python_type=python_type, source_schema=source, label=label or _label(spec))


# -- partial JSON -------------------------------------------------------------------------------

_MISSING: Any = object()
_WS = re.compile(r"[ \t\n\r]*")
_STRING_STOP = re.compile(r'["\\]')
_NUMBER_CHARS = re.compile(r"[-+0-9.eE]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_WORD = re.compile(r"-?[A-Za-z]*")
_JSON_WORDS: dict[str, Any] = {
    "true": True,
    "false": False,
    "null": None,
    "NaN": math.nan,
    "Infinity": math.inf,
    "-Infinity": -math.inf,
}
_HIGH_SURROGATE_ESCAPE = re.compile(r"u[dD][89abAB][0-9a-fA-F]{2}")

# parser states
_VALUE, _FIRST_VALUE, _KEY, _FIRST_KEY, _COLON, _AFTER, _DONE, _FAILED = range(8)


def _match_end(pattern: re.Pattern[str], text: str, pos: int) -> int:
    """Where ``pattern`` (one that matches the empty string too) stops matching at ``pos``."""
    match = pattern.match(text, pos)
    return pos if match is None else match.end()


def _number(token: str) -> int | float:
    return float(token) if any(c in token for c in ".eE") else int(token)


def _partial_number(token: str) -> int | float | None:
    trimmed = token.rstrip(".eE+-")
    if not trimmed or trimmed == "-":
        return None
    try:
        return _number(trimmed)
    except ValueError:
        return None


def _complete_string_body(body: str) -> str:
    """``body`` (the text after an opening quote, no closing quote yet) without an
    escape that is not complete (``\\``, ``\\u12``, or a high surrogate ``\\ud83d`` that a
    low one may still follow)."""
    for _ in range(3):
        k = body.rfind("\\")
        if k < 0 or len(body) - k > 6:
            return body
        run_start = k
        while run_start > 0 and body[run_start - 1] == "\\":
            run_start -= 1
        if (k - run_start) % 2 == 1:  # this backslash is escaped: no open escape
            return body
        tail = body[k + 1 :]
        if tail == "" or (
            tail[0] == "u" and (len(tail) < 5 or _HIGH_SURROGATE_ESCAPE.fullmatch(tail))
        ):
            body = body[:k]
        else:
            return body
    return body


class PartialJSON:
    """An incremental parser of a JSON document that arrives in pieces.

    ``feed(text)`` consumes the new text and returns :attr:`value`: the best Python value
    for everything so far — open strings, arrays and objects closed; a key without its
    value left out; a number shown as far as it goes; ``true``/``false``/``null`` as soon
    as their first letter arrived. It never raises: on invalid JSON it keeps the value
    parsed before the error (:attr:`failed` is set) and ignores the rest.

    Leniency before the value starts: a Markdown fence line (```` ```json ````) and prose
    before the first ``{`` / ``[`` are skipped. Text after the complete value is ignored.

    The value is built **in place** and shared between calls (the cost per update is
    proportional to the new text, plus re-decoding the open string, if any): copy it if
    you need a snapshot. :attr:`work` counts the characters examined, for tests.
    """

    def __init__(self, *, lenient: bool = True) -> None:
        self.lenient = lenient
        self.work = 0
        self._buf = ""
        self._stack: list[Any] = []
        self._keys: list[str | None] = []
        self._state = _VALUE
        self._root: Any = _MISSING
        self._started = False
        self._resume = 0  # where to go on scanning an open string at the start of _buf
        self._placed: tuple[Any, ...] | None = None

    @property
    def value(self) -> Any:
        """The partial value (``None`` before any value started)."""
        return None if self._root is _MISSING else self._root

    @property
    def done(self) -> bool:
        """The top-level value is complete."""
        return self._state == _DONE

    @property
    def failed(self) -> bool:
        """The text stopped being valid JSON (the value is what came before)."""
        return self._state == _FAILED

    def feed(self, text: str) -> Any:
        """Consume ``text`` (the next piece of the document); return :attr:`value`."""
        if self._state in (_DONE, _FAILED) or not text:
            return self.value
        try:
            self._unplace()
            self._buf += text
            self._run()
        except Exception:  # never raise: keep what was parsed
            self._state = _FAILED
            self._buf = ""
        return self.value

    def finish(self) -> Any:
        """The input has ended: complete a number or ``true``/``false``/``null`` that was
        waiting for its next character. :attr:`done` tells whether the document was
        complete. Returns :attr:`value`."""
        if self._state in (_DONE, _FAILED) or not self._buf or self._buf[0] in '"`':
            return self.value  # nothing pending, or an open string (cut short) / fence
        return self.feed(" ")  # a delimiter: the pending number or word completes

    def is_open(self, container: Any) -> bool:
        """Whether ``container`` (a list or dict of :attr:`value`) is still being written."""
        return any(open_ is container for open_ in self._stack)

    # -- placing values

    def _put(self, value: Any) -> tuple[Any, ...]:
        if not self._stack:
            self._root = value
            return ("root",)
        top = self._stack[-1]
        if isinstance(top, list):
            top.append(value)
            return (top, None)
        key = self._keys[-1]
        top[key] = value
        return (top, key)

    def _unplace(self) -> None:
        placed, self._placed = self._placed, None
        if placed is None:
            return
        if placed[0] == "root":
            self._root = _MISSING
        elif placed[1] is None:
            placed[0].pop()
        else:
            placed[0].pop(placed[1], None)

    def _attach(self, value: Any) -> None:
        self._put(value)
        self._started = True
        self._state = _AFTER if self._stack else _DONE

    def _open(self, container: Any) -> None:
        self._put(container)
        self._started = True
        self._stack.append(container)
        self._keys.append(None)
        self._state = _FIRST_KEY if isinstance(container, dict) else _FIRST_VALUE

    def _close(self) -> None:
        self._stack.pop()
        self._keys.pop()
        self._state = _AFTER if self._stack else _DONE

    # -- the scanner

    def _scan_string(self, buf: str, start: int) -> int:
        """Index after the closing quote of the string at ``start``, or -1 (then
        ``self._resume`` says where to go on, relative to ``start``)."""
        i = start + self._resume if start == 0 and self._resume else start + 1
        n = len(buf)
        while True:
            match = _STRING_STOP.search(buf, i)
            if match is None:
                self._resume = n - start
                return -1
            j = match.start()
            if buf[j] == '"':
                self._resume = 0
                return j + 1
            if j + 1 >= n:
                self._resume = j - start
                return -1
            i = j + 2

    def _run(self) -> None:
        buf = self._buf
        n = len(buf)
        pos = 0
        pending: tuple[str, int] | None = None
        while True:
            pos = _match_end(_WS, buf, pos)
            if pos >= n:
                break
            state = self._state
            if state in (_DONE, _FAILED):
                pos = n
                break
            c = buf[pos]
            if state in (_VALUE, _FIRST_VALUE):
                if c == "]" and state == _FIRST_VALUE:
                    self._close()
                    pos += 1
                elif c == "{":
                    self._open({})
                    pos += 1
                elif c == "[":
                    self._open([])
                    pos += 1
                elif c == '"':
                    end = self._scan_string(buf, pos)
                    if end < 0:
                        pending = ("string", pos)
                        break
                    self._attach(scanstring(buf, pos + 1, False)[0])
                    pos = end
                elif c in "-0123456789" and not buf.startswith("-I", pos):
                    end = _match_end(_NUMBER_CHARS, buf, pos)
                    if end >= n:
                        pending = ("number", pos)
                        break
                    token = buf[pos:end]
                    if not _NUMBER.fullmatch(token):
                        self._state = _FAILED
                        break
                    self._attach(_number(token))
                    pos = end
                elif c.isalpha() or c == "-":
                    end = _match_end(_WORD, buf, pos)
                    word = buf[pos:end]
                    prefix_of = [
                        w for w in _JSON_WORDS if word not in ("", "-") and w.startswith(word)
                    ]
                    if not self._started and self.lenient and not prefix_of:
                        pos = self._skip_preamble(buf, pos)
                        if pos < 0:
                            pos = n
                            break
                        continue
                    if end >= n and prefix_of:
                        pending = ("word", pos)
                        break
                    if word not in _JSON_WORDS:
                        self._state = _FAILED
                        break
                    self._attach(_JSON_WORDS[word])
                    pos = end
                elif not self._started and self.lenient:
                    if buf.startswith("`", pos):
                        newline = buf.find("\n", pos)
                        if newline < 0:
                            pending = ("fence", pos)
                            break
                        pos = newline + 1
                        continue
                    pos = self._skip_preamble(buf, pos)
                    if pos < 0:
                        pos = n
                        break
                else:
                    self._state = _FAILED
                    break
            elif state in (_KEY, _FIRST_KEY):
                if c == "}" and state == _FIRST_KEY:
                    self._close()
                    pos += 1
                elif c == '"':
                    end = self._scan_string(buf, pos)
                    if end < 0:
                        pending = ("key", pos)
                        break
                    self._keys[-1] = scanstring(buf, pos + 1, False)[0]
                    self._state = _COLON
                    pos = end
                else:
                    self._state = _FAILED
                    break
            elif state == _COLON:
                if c != ":":
                    self._state = _FAILED
                    break
                self._state = _VALUE
                pos += 1
            else:  # _AFTER
                top = self._stack[-1]
                if c == ",":
                    self._state = _KEY if isinstance(top, dict) else _VALUE
                    pos += 1
                elif c == ("}" if isinstance(top, dict) else "]"):
                    self._close()
                    pos += 1
                else:
                    self._state = _FAILED
                    break
        self.work += n
        if pending is None:
            self._buf = ""
            self._resume = 0
            return
        kind, start = pending
        self._buf = buf[start:]
        if kind == "string":
            body = _complete_string_body(self._buf[1:])
            self.work += len(body)
            try:
                text = scanstring(f'"{body}"', 1, False)[0]
            except ValueError:
                return
            self._placed = self._put(text)
        elif kind == "number":
            number = _partial_number(self._buf)
            if number is not None:
                self._placed = self._put(number)
        elif kind == "word":
            word = next(w for w in _JSON_WORDS if w.startswith(self._buf))
            self._placed = self._put(_JSON_WORDS[word])

    def _skip_preamble(self, buf: str, pos: int) -> int:
        """Prose before the JSON: the index of the next ``{`` or ``[``, or -1."""
        found = [i for i in (buf.find("{", pos), buf.find("[", pos)) if i >= 0]
        return min(found) if found else -1


def parse_partial(text: str) -> Any:
    """The best Python value for a (possibly incomplete) JSON document; ``None`` when no
    value has started. Never raises. Equal to ``json.loads(text)`` for complete JSON."""
    try:
        return json.loads(text)
    except Exception:
        pass
    try:
        return PartialJSON().feed(str(text))
    except Exception:  # pragma: no cover - PartialJSON.feed does not raise
        return None


# -- rendering ----------------------------------------------------------------------------------


def _plain(obj: Any, depth: int = 0) -> Any:
    """Models, dataclasses and containers → dicts, lists and scalars."""
    if depth > 50:
        return str(obj)
    dump = getattr(obj, "model_dump", None)
    if callable(dump) and not isinstance(obj, type):
        try:
            return dump(mode="json")
        except Exception:
            return dump()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name), depth + 1) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): _plain(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_plain(v, depth + 1) for v in obj]
    return obj


def to_plain(obj: Any) -> Any:
    """Models, dataclasses and containers → JSON-like dicts, lists and scalars."""
    return _plain(obj)


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
    the new text: the same duck-typed interface as :class:`nbstream.markdown.IncrementalMarkdown`
    (``update(text)`` with the whole text so far, ``finish()``, ``html``, ``frozen_html``,
    ``tail_html``), returning updates with ``frozen``, ``tail`` and ``reset``.

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


# -- native mechanisms --------------------------------------------------------------------------


SchemaLike = typing.Union["Schema", Mapping[str, Any]]
"""A :class:`Schema`, or its :attr:`Schema.wire` dict (what a provider ``Request`` carries)."""


def _wire(schema: SchemaLike) -> Mapping[str, Any]:
    return schema.wire if isinstance(schema, Schema) else schema


# The native mechanisms belong to their providers; these accept a Schema or its wire form.


def openai_response_format(schema: SchemaLike) -> dict[str, Any]:
    """The chat-completions ``response_format`` for ``schema`` (the ``openai`` provider's)."""
    from .providers.openai_chat import json_schema_format

    return json_schema_format(_wire(schema))


def anthropic_tool(schema: SchemaLike) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``(tools, tool_choice)`` forcing one tool call whose input is the answer (the
    ``anthropic`` provider's)."""
    from .providers.anthropic_messages import forced_tool

    return forced_tool(_wire(schema))


def gbnf(schema: SchemaLike) -> str:
    """A llama.cpp GBNF grammar for the schema (the ``local`` provider's)."""
    from .providers.local import gbnf as local_gbnf

    return local_gbnf(_wire(schema))


def llama_grammar(schema: SchemaLike) -> Any:
    """A ``llama_cpp.LlamaGrammar`` for the schema (the ``local`` provider's)."""
    from .providers.local import grammar

    return grammar(_wire(schema))


def instructions(schema: SchemaLike) -> str:
    """Prompt text for servers that take no ``response_format`` (to append to the prompt
    or the system prompt)."""
    return schema_instructions(_wire(schema))
