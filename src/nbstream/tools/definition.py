"""A tool: one of the user's functions, described for a model and called with checked arguments.

:func:`tool_of` builds a :class:`Tool` from a function: its name, the first paragraph of its
docstring as the description, and a JSON schema of its parameters from the signature and type
hints (pydantic), each parameter described by its line in the docstring (Google ``Args:``,
NumPy ``Parameters`` or Sphinx ``:param x:`` style). :func:`tool` marks a function with
explicit choices (``approve``, ``name``, ``description``) and returns it unchanged.

Arguments a model sends are validated against the parameters *before* anything is called
(:meth:`Tool.arguments`); what is wrong comes back as one :class:`ToolArgumentsError` whose
message is written for the model ("argument 'limit': Input should be a valid integer …"), so
that a caller can send it back as the tool's result instead of failing.

Only data describe a parameter: an annotation that is a function, a module or a class of
behaviour is refused when the tool is made (pydantic would call it to "validate" the model's
value), as for ``--schema``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import re
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

import pydantic

from nbstream.errors import NbstreamError
from nbstream.structured.expressions import _check_data_type
from nbstream.structured.schema import _check_json_schema

__all__ = ["Tool", "ToolArgumentsError", "ToolError", "tool", "tool_of"]

F = TypeVar("F", bound=Callable[..., Any])

MARK = "__nbstream_tool__"
"""The attribute :func:`tool` sets on a function: its :class:`Tool`."""
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
"""What every provider accepts as a function name."""


class ToolError(NbstreamError, ValueError):
    """A function cannot be a tool (say which and why), or a tool name names nothing."""


class ToolArgumentsError(NbstreamError, ValueError):
    """The arguments a model sent do not fit the tool; the message is for the model."""


@dataclasses.dataclass(frozen=True)
class Tool:
    """A function offered to a model."""

    name: str
    description: str
    parameters: dict[str, Any]
    """The JSON schema of the arguments: an object with one property per parameter."""
    function: Callable[..., Any] = dataclasses.field(repr=False)
    approve: bool = True
    """Ask the user before each call (``False``: run without asking)."""
    model: type[pydantic.BaseModel] | None = dataclasses.field(
        repr=False, compare=False, default=None
    )
    """The parameters as a pydantic model (``None``: checked against ``parameters``)."""

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.function)

    def arguments(self, raw: Mapping[str, Any] | str | None) -> dict[str, Any]:
        """The model's arguments (a JSON object, as text or parsed), validated and converted
        to the parameters' types; :class:`ToolArgumentsError` naming each problem."""
        data: Any = raw if raw is not None else {}
        if self.model is None:  # a tool described by a JSON schema (an MCP server's)
            return self._by_schema(data)
        try:
            if isinstance(data, str):
                checked = self.model.model_validate_json(data or "{}")
            else:
                checked = self.model.model_validate(data)
        except pydantic.ValidationError as exc:
            raise ToolArgumentsError(_problems(self.name, exc)) from None
        return {field: getattr(checked, field) for field in type(checked).model_fields}

    def _by_schema(self, data: Any) -> dict[str, Any]:
        if isinstance(data, str):
            try:
                data = json.loads(data or "{}")
            except ValueError as exc:
                raise ToolArgumentsError(
                    f"the arguments for {self.name} are not JSON: {exc}"
                ) from None
        if not isinstance(data, dict):
            raise ToolArgumentsError(f"the arguments for {self.name} must be a JSON object")
        problems = _check_json_schema(data, self.parameters)
        if problems:
            listed = "; ".join(f"argument {p or 'arguments'!r}: {m}" for p, m in problems[:5])
            raise ToolArgumentsError(
                f"the arguments for {self.name} do not fit its parameters: {listed}"
            )
        return dict(data)

    def call(self, raw: Mapping[str, Any] | str | None) -> Any:
        """Validate ``raw`` and call the function (an async one is run to its end on a loop
        of its own: use :meth:`acall` from a coroutine)."""
        arguments = self.arguments(raw)
        result = self.function(**arguments)
        if inspect.isawaitable(result):
            return asyncio.run(_wait(result))
        return result

    async def acall(self, raw: Mapping[str, Any] | str | None) -> Any:
        """Validate ``raw`` and call the function, awaiting it if it is async."""
        arguments = self.arguments(raw)
        result = self.function(**arguments)
        if inspect.isawaitable(result):
            result = await result
        return result


async def _wait(awaitable: typing.Awaitable[Any]) -> Any:
    return await awaitable


@overload
def tool(function: F, /) -> F: ...


@overload
def tool(
    *, approve: bool = True, name: str | None = None, description: str | None = None
) -> Callable[[F], F]: ...


def tool(
    function: F | None = None,
    /,
    *,
    approve: bool = True,
    name: str | None = None,
    description: str | None = None,
) -> F | Callable[[F], F]:
    """Mark ``function`` as a tool with explicit choices; it stays the same function::

        @nbstream.tool(approve=False)
        def load_sales(quarter: str) -> pd.DataFrame:
            "Sales of one quarter, e.g. '2026-Q3'."

    ``approve=False``: the model's calls run without asking (also in headless runs);
    ``name`` / ``description``: what the model sees instead of the function's own.
    """

    def mark(fn: F) -> F:
        made = tool_of(fn, approve=approve, name=name, description=description)
        setattr(fn, MARK, made)
        return fn

    return mark(function) if function is not None else mark


def tool_of(
    function: Callable[..., Any],
    *,
    approve: bool | None = None,
    name: str | None = None,
    description: str | None = None,
) -> Tool:
    """The :class:`Tool` of ``function``: the one :func:`tool` made for it, else one built
    from its signature and docstring (the keyword arguments override either)."""
    marked = getattr(function, MARK, None)
    if isinstance(marked, Tool):
        if approve is None and name is None and description is None:
            return marked
        return dataclasses.replace(
            marked,
            approve=marked.approve if approve is None else approve,
            name=name or marked.name,
            description=marked.description if description is None else description,
        )
    if not callable(function) or isinstance(function, type):
        raise ToolError(
            f"{_label(function)} is not a function: a tool is a function (or a method) "
            "whose parameters the model fills in"
        )
    tool_name = str(name or getattr(function, "__name__", ""))
    if not NAME.match(tool_name):
        raise ToolError(
            f"{tool_name!r} is not a usable tool name (letters, digits, _ and -, at most 64, "
            "not starting with a digit): give one with @nbstream.tool(name=...)"
        )
    doc = inspect.getdoc(function) or ""
    summary, described = _docstring(doc)
    model = _arguments_model(function, tool_name)
    schema = model.model_json_schema()
    schema.pop("title", None)
    for field, prop in (schema.get("properties") or {}).items():
        prop.pop("title", None)
        if described.get(field) and "description" not in prop:
            prop["description"] = described[field]
    schema.setdefault("properties", {})
    schema["additionalProperties"] = False
    return Tool(
        name=tool_name,
        description=summary if description is None else description,
        parameters=schema,
        function=function,
        approve=True if approve is None else approve,
        model=model,
    )


def _arguments_model(function: Callable[..., Any], name: str) -> type[pydantic.BaseModel]:
    """A pydantic model of ``function``'s parameters (``self`` of a bound method left out)."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        raise ToolError(f"{name}: its signature cannot be read (a builtin?)") from None
    try:
        hints = typing.get_type_hints(function, include_extras=True)
    except Exception as exc:
        raise ToolError(f"{name}: its type hints cannot be resolved ({exc})") from None
    fields: dict[str, Any] = {}
    for parameter in signature.parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue  # *args / **kwargs: the model cannot fill them
        if parameter.kind is parameter.POSITIONAL_ONLY:
            raise ToolError(f"{name}: positional-only parameter {parameter.name!r}")
        annotation = hints.get(parameter.name, Any)
        if annotation is not Any:
            try:
                _check_data_type(annotation)
            except Exception as exc:
                raise ToolError(f"{name}: parameter {parameter.name!r}: {exc}") from None
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[parameter.name] = (annotation, default)
    config = pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=False)
    try:
        model: type[pydantic.BaseModel] = pydantic.create_model(
            f"{name}_arguments", __config__=config, **fields
        )
        return model
    except (pydantic.PydanticSchemaGenerationError, TypeError) as exc:
        raise ToolError(f"{name}: a parameter's type cannot be described: {exc}") from None


_SECTION = re.compile(r"^(Args|Arguments|Parameters|Params)\s*:?\s*$")
_UNDERLINE = re.compile(r"^-{3,}\s*$")
_GOOGLE = re.compile(r"^\s+(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_NUMPY = re.compile(r"^(\w+)\s*(?::.*)?$")
_SPHINX = re.compile(r"^\s*:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$")


def _docstring(doc: str) -> tuple[str, dict[str, str]]:
    """``(summary, {parameter: description})`` from a Google, NumPy or Sphinx docstring;
    the summary is the first paragraph."""
    lines = doc.splitlines()
    summary_lines: list[str] = []
    for line in lines:
        if not line.strip() or _SECTION.match(line.strip()) or line.lstrip().startswith(":"):
            break
        summary_lines.append(line.strip())
    described: dict[str, str] = {}
    current: str | None = None
    in_section = numpy = False
    for i, line in enumerate(lines):
        sphinx = _SPHINX.match(line)
        if sphinx:
            current = sphinx.group(1)
            described[current] = sphinx.group(2).strip()
            continue
        stripped = line.strip()
        if _SECTION.match(stripped):
            in_section = True
            numpy = i + 1 < len(lines) and bool(_UNDERLINE.match(lines[i + 1].strip()))
            current = None
            continue
        if not in_section:
            if current and stripped and line.startswith((" ", "\t")):
                described[current] += " " + stripped  # a :param: continued
            continue
        if _UNDERLINE.match(stripped):
            continue
        if not stripped:
            current = None if not numpy else current
            continue
        if numpy:
            head = _NUMPY.match(line)
            if head and not line.startswith((" ", "\t")):
                current = head.group(1)
                described[current] = ""
            elif current is not None:
                described[current] = f"{described[current]} {stripped}".strip()
            elif not line.startswith((" ", "\t")):
                in_section = False
            continue
        google = _GOOGLE.match(line)
        if google and (current is None or len(line) - len(line.lstrip()) <= _indent_of(lines, i)):
            current = google.group(1).lstrip("*")
            described[current] = google.group(2).strip()
        elif current is not None and line.startswith((" ", "\t")):
            described[current] = f"{described[current]} {stripped}".strip()
        elif not line.startswith((" ", "\t")):
            in_section = False
            current = None
    return " ".join(summary_lines), {k: v for k, v in described.items() if v}


def _indent_of(lines: list[str], i: int) -> int:
    """The indentation of the first parameter line of the section that holds line ``i``."""
    for j in range(i, -1, -1):
        if _SECTION.match(lines[j].strip()):
            following = lines[j + 1] if j + 1 < len(lines) else ""
            return len(following) - len(following.lstrip())
    return 0


def _problems(name: str, exc: pydantic.ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(x) for x in error.get("loc", ())) or "arguments"
        message = error.get("msg", "invalid")
        if error.get("type") == "extra_forbidden":
            message = "no such parameter"
        parts.append(f"argument {where!r}: {message}")
    return f"the arguments for {name} do not fit its parameters: " + "; ".join(parts)


def _label(value: Any) -> str:
    name = getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
    return repr(name) if name else f"a {type(value).__name__}"
