"""Which functions a cell names as tools, found without evaluating anything, and how a
model would see them (``%llm tools``)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from nbstream.prompts.interpolate import lookup
from nbstream.tools.definition import MARK, Tool, ToolError, tool_of
from nbstream.tools.mcp import MCP_PREFIX, mcp_tools

__all__ = ["marked_tools", "resolve_tools", "tools_report"]

_PATH = re.compile(r"""^[^\W\d]\w*(?:\.[^\W\d]\w*)*$""")


def resolve_tools(
    spec: str | Iterable[Any], namespace: Mapping[str, Any], *, mcp_config: str | None = None
) -> list[Tool]:
    """The tools ``spec`` names: a comma-separated text of names or attribute chains
    (``"load_sales, sales.by_region"``) and MCP servers (``mcp:files``, ``mcp:files/read``,
    declared in ``mcp_config``), or functions / :class:`Tool` objects. Names are looked up in
    ``namespace`` with ``getattr`` only (an attribute starting with ``_`` is never looked
    up); nothing is evaluated or called. :class:`ToolError` says what is wrong."""
    items: list[Any] = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    tools: list[Tool] = []
    for item in items:
        if isinstance(item, Tool):
            tools.append(item)
            continue
        if isinstance(item, str):
            if not item:
                continue
            if item.startswith(MCP_PREFIX):
                tools.extend(mcp_tools(item, mcp_config))
                continue
            if not _PATH.match(item):
                raise ToolError(
                    f"{item!r} is not a name: --tools takes names of your functions or "
                    "attribute chains (load_sales, sales.by_region), comma-separated"
                )
            try:
                found = lookup(item, namespace)
            except Exception:
                raise ToolError(
                    f"no function {item!r} in the notebook's namespace: define it (or import "
                    "it) before the cell that names it"
                ) from None
            tools.append(tool_of(found, name=None if "." not in item else _leaf(found, item)))
        else:
            tools.append(tool_of(item))
    seen: dict[str, Tool] = {}
    for made in tools:
        if made.name in seen and seen[made.name].function is not made.function:
            raise ToolError(
                f"two tools are named {made.name!r}: give one another name with "
                "@nbstream.tool(name=...)"
            )
        seen[made.name] = made
    return list(seen.values())


def _leaf(found: Any, path: str) -> str | None:
    """A method's own name (``sales.by_region`` → ``by_region``), unless marked otherwise."""
    marked = getattr(found, MARK, None)
    return None if marked is not None else path.rsplit(".", 1)[1]


def marked_tools(namespace: Mapping[str, Any]) -> list[Tool]:
    """The functions in ``namespace`` marked with :func:`nbstream.tool`, in order."""
    found = []
    for name, value in namespace.items():
        if name.startswith("_"):
            continue
        marked = getattr(value, MARK, None) if callable(value) else None
        if isinstance(marked, Tool):
            found.append(marked)
    return found


def tools_report(tools: list[Tool]) -> str:
    """``%llm tools``: each tool as a model would see it (name, description, the JSON schema
    of its parameters) and whether its calls wait for approval."""
    if not tools:
        return (
            "no tools: name functions (%llm tools load_sales,plot_region) or mark them with "
            "@nbstream.tool"
        )
    out = []
    for made in tools:
        approval = "asks before each call" if made.approve else "runs without asking"
        out.append(f"{made.name} ({approval})")
        if made.description:
            out.append(f"  {made.description}")
        schema = json.dumps(made.parameters, indent=2, ensure_ascii=False)
        out.extend("  " + line for line in schema.splitlines())
    return "\n".join(out)
