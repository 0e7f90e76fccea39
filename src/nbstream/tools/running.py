"""Running the calls a model asked for: who approves, what the model is told, what is kept.

Who decides whether a call runs (:class:`Approval`): a tool marked ``approve=False`` and any
tool under ``auto_approve`` run at once; a tool the user answered "always" to runs for the rest
of the kernel's life; in a terminal (IPython without a kernel, a tty on stdin) the user is asked
``y``/``n``/``a``. Anywhere else the call is **refused**: the model is told the notebook did
not allow it, and the answer's status says how to allow it — never a silent run, never a hang
(approval cards in the live view are the next step of this feature).

What the model is sent back (:class:`Outcome`): the value the function returned, rendered
for a model within the context budget (a DataFrame as a capped table, as for ``{fields}``);
an exception as ``error: Type: message``; invalid arguments as what was wrong with them; a
skip or a refusal in words. Every outcome becomes a record in ``Response.tool_calls``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from nbstream.kernel import in_kernel
from nbstream.prompts.context import to_prompt
from nbstream.providers.base import ToolCall
from nbstream.providers.common import one_line, redact
from nbstream.tools.definition import Tool, ToolArgumentsError

__all__ = ["ALWAYS", "Approval", "Outcome", "run_call", "summary"]

ALWAYS: set[str] = set()
"""Tools the user answered "always" to, for this kernel."""

DECLINED = "The user declined this call. Do not call it again for this question."
REFUSED = (
    "This call was not run: it needs the user's approval and this notebook run cannot ask "
    "for it. Do not call it again; answer without it, and say what you could not check."
)


@dataclasses.dataclass
class Outcome:
    """One call and what came of it."""

    call: ToolCall
    decision: str
    """``ran``, ``skipped``, ``refused``, ``invalid`` (bad arguments), ``unknown`` (no such
    tool), ``failed`` (the function raised), ``replayed`` (from the replay cache)."""
    result: str
    """What the model is sent as the call's result."""
    error: str | None = None
    elapsed: float = 0.0

    def record(self, round_number: int) -> dict[str, Any]:
        """The entry of ``Response.tool_calls``."""
        return {
            "name": self.call.name,
            "arguments": self.call.arguments,
            "decision": self.decision,
            "result": self.result,
            "error": self.error,
            "elapsed": round(self.elapsed, 4),
            "round": round_number,
        }


class Approval:
    """Decides whether a call runs (see the module docstring). ``ask`` is how a terminal
    asks (``input`` by default)."""

    def __init__(self, *, auto: bool, ask: Callable[[str], str] | None = None) -> None:
        self.auto = auto
        self.ask = ask if ask is not None else input
        self.refused: list[str] = []
        """Names of the tools refused for want of a way to ask (for the status line)."""

    async def decide(self, made: Tool, call: ToolCall, view: View | None = None) -> str:
        """``run``, ``skip``, ``refuse`` or ``stop`` (Stop pressed while a card waited)."""
        if not made.approve or self.auto or made.name in ALWAYS:
            return "run"
        if view is not None:
            answer = await view(made.name, _pretty(call.arguments))
            if answer == "always":
                ALWAYS.add(made.name)
                return "run"
            if answer == "refuse":
                self.refused.append(made.name)
            return answer if answer in ("run", "skip", "refuse", "stop") else "skip"
        if not can_ask():
            self.refused.append(made.name)
            return "refuse"
        answer = self.ask(f"Run {made.name}({_shown(call.arguments)})? [y]es / [n]o / [a]lways: ")
        word = answer.strip().lower()
        if word in ("a", "always"):
            ALWAYS.add(made.name)
            return "run"
        return "run" if word in ("y", "yes") else "skip"


def can_ask() -> bool:
    """A person can answer a prompt here: a terminal (no kernel) with a tty on stdin."""
    try:
        return not in_kernel() and sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


View = Callable[[str, str], Awaitable[str]]
"""A display's card: ``(name, formatted arguments)`` → ``run`` / ``skip`` / ``always`` /
``stop`` / ``refuse``."""


async def run_call(
    call: ToolCall,
    tools: Mapping[str, Tool],
    approval: Approval,
    budget: int,
    view: View | None = None,
) -> Outcome:
    """Decide, then run ``call`` on this thread (an async tool is awaited) and say what came
    of it; nothing it raises escapes (but an interrupt)."""
    made = tools.get(call.name)
    if made is None:
        names = ", ".join(sorted(tools)) or "none"
        return Outcome(call, "unknown", f"There is no tool named {call.name!r} (tools: {names}).")
    try:
        made.arguments(call.arguments)  # refuse bad arguments before anyone is asked
    except ToolArgumentsError as exc:
        return Outcome(call, "invalid", str(exc), error=str(exc))
    decision = await approval.decide(made, call, view)
    if decision == "stop":
        return Outcome(call, "stopped", "The user stopped the answer.")
    if decision == "skip":
        return Outcome(call, "skipped", DECLINED)
    if decision == "refuse":
        return Outcome(call, "refused", REFUSED)
    started = time.perf_counter()
    try:
        value = await made.acall(call.arguments)
    except Exception as exc:
        message = redact(one_line(f"{type(exc).__name__}: {exc}"))
        return Outcome(
            call,
            "failed",
            f"error: {message}",
            error=message,
            elapsed=time.perf_counter() - started,
        )
    result = "done (no result)" if value is None else to_prompt(value, budget)
    return Outcome(call, "ran", result, elapsed=time.perf_counter() - started)


def summary(outcomes: list[Outcome]) -> str:
    """``ran load_sales · refused plot_region (needs approval: …)`` for the status line."""
    words = [f"{o.decision} {o.call.name}" for o in outcomes]
    if any(o.decision == "refused" for o in outcomes):
        words.append(
            "a refused call needs approval: mark the function @nbstream.tool(approve=False) "
            "or set %config LLMMagics.auto_approve = True"
        )
    return "tools: " + " · ".join(words)


def _pretty(arguments: str) -> str:
    """The arguments as indented JSON (as sent, when they are not JSON)."""
    try:
        return json.dumps(json.loads(arguments or "{}"), indent=2, ensure_ascii=False)
    except ValueError:
        return arguments


def _shown(arguments: str, limit: int = 200) -> str:
    text = " ".join(arguments.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
