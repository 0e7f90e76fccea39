"""Type expressions for ``--schema``: evaluated safely (no call, no string evaluated), checked to
describe data, labelled and named; answers back to plain data (:func:`to_plain`)."""

from __future__ import annotations

import ast
import collections.abc
import dataclasses
import datetime
import decimal
import enum
import re
import sys
import types
import typing
import uuid
from collections.abc import Mapping
from typing import Any

import typing_extensions

from nbstream.errors import SchemaError

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


def _short_repr(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
