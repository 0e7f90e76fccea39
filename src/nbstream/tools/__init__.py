"""Tools: the user's functions offered to a model (issue 19 builds the loop on these).

:func:`tool_of` describes a function for a model (name, description, JSON schema of its
parameters from the signature, type hints and docstring); :func:`tool` marks one with explicit
choices; :func:`resolve_tools` finds the functions a cell names (``load_sales,
sales.by_region``: names and attribute chains looked up like ``{fields}``, nothing evaluated);
``%llm tools`` shows what a model would see.
"""

from nbstream.tools.definition import Tool, ToolArgumentsError, ToolError, tool, tool_of
from nbstream.tools.lookup import marked_tools, resolve_tools, tools_report

__all__ = [
    "Tool",
    "ToolArgumentsError",
    "ToolError",
    "marked_tools",
    "resolve_tools",
    "tool",
    "tool_of",
    "tools_report",
]
