"""``%llm stale``: the answers of this kernel whose inputs have changed since they were asked."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nbstream.response import ANSWERS, Response, changed_inputs


def _label(response: Response) -> str:
    names = ", ".join(response.names) if response.names else "_llm"
    prompt = " ".join(response.prompt.split())
    prompt = prompt if len(prompt) <= 50 else prompt[:49] + "…"
    return f"{names} ({prompt!r})"


def stale_report(namespace: Mapping[str, Any]) -> str:
    """One line per stale answer (newest first): its variables, its prompt's start, and which
    inputs changed; a line saying so when none is stale."""
    checked = 0
    lines = []
    seen: set[int] = set()
    for response in reversed(ANSWERS):
        if id(response) in seen:
            continue
        seen.add(id(response))
        checked += 1
        changed = changed_inputs(response.inputs, namespace)
        if changed:
            what = ", ".join(
                f"{k} (sampled)" if response.inputs[k].endswith("~") else k for k in changed
            )
            lines.append(f"{_label(response)}: {what} changed")
    if not lines:
        return f"No stale answers: the inputs of all {checked} answers that read any are unchanged."
    header = f"{len(lines)} of {checked} answers read inputs that have changed since:"
    return "\n".join([header, *(f"  {line}" for line in lines)])


__all__ = ["stale_report"]
