"""The :class:`Schema`: a strict JSON schema for the providers, validation of the answer, and
:func:`resolve_schema` (what the user named → a Schema)."""

from __future__ import annotations

import copy
import dataclasses
import importlib
import json
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

from nbstream.errors import SchemaError, SchemaValidationError
from nbstream.structured.expressions import (
    WRAP_KEY,
    _check_data_type,
    _compatible,
    _evaluate,
    _label,
    _name,
    _short_repr,
    to_plain,
)
from nbstream.structured.partial import PartialJSON, parse_partial

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
