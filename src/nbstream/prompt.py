"""``{expression}`` interpolation in prompts, forgiving by design.

``{df.columns}`` or ``{len(rows)}`` is replaced by the value when the expression
evaluates in the user's namespace *and* names something defined there. Anything else is
left exactly as written, so JSON, code and set literals in a prompt survive
(``{"a": 1}`` names nothing; ``function() { return x; }`` is not an expression).
``{{`` and ``}}`` always give literal braces.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from typing import Any

_FIELD = re.compile(r"\{\{|\}\}|\{([^{}\n]+)\}")


def interpolate(template: str, namespace: Mapping[str, Any]) -> str:
    """Replace ``{expr}`` fields whose expression names something in ``namespace``."""

    def replace(match: re.Match[str]) -> str:
        whole = match.group(0)
        if whole == "{{":
            return "{"
        if whole == "}}":
            return "}"
        source = match.group(1).strip()
        try:
            tree = ast.parse(source, mode="eval")
        except SyntaxError:
            return whole
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        if not names & namespace.keys():
            return whole
        try:
            value = eval(compile(tree, "<prompt>", "eval"), dict(namespace))
        except Exception:
            return whole
        return str(value)

    return _FIELD.sub(replace, template)
