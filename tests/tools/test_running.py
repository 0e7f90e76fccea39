"""Who approves a call, and what the model is told (the terminal's y/n/a included)."""

from __future__ import annotations

import asyncio

import pytest

from nbstream.providers.base import ToolCall
from nbstream.tools import running, tool_of
from nbstream.tools.running import ALWAYS, DECLINED, REFUSED, Approval, run_call, summary


def double(x: int) -> int:
    """Doubles x."""
    return 2 * x


def run(call: ToolCall, approval: Approval):
    return asyncio.run(run_call(call, {"double": tool_of(double)}, approval, 4000))


@pytest.fixture(autouse=True)
def _clean():
    ALWAYS.clear()
    yield
    ALWAYS.clear()


def test_where_nobody_can_answer_a_call_that_needs_approval_is_refused():
    outcome = run(ToolCall("c1", "double", '{"x": 2}'), Approval(auto=False))
    assert (outcome.decision, outcome.result) == ("refused", REFUSED)
    assert "needs approval" in summary([outcome]) and "approve=False" in summary([outcome])


@pytest.mark.parametrize(
    "answer, decision, result",
    [("y", "ran", "4"), ("n", "skipped", DECLINED), ("", "skipped", DECLINED)],
)
def test_a_terminal_asks_yes_no(monkeypatch, answer, decision, result):
    monkeypatch.setattr(running, "can_ask", lambda: True)
    asked = []
    approval = Approval(auto=False, ask=lambda q: asked.append(q) or answer)
    outcome = run(ToolCall("c1", "double", '{"x": 2}'), approval)
    assert (outcome.decision, outcome.result) == (decision, result)
    assert asked == ['Run double({"x": 2})? [y]es / [n]o / [a]lways: ']


def test_always_holds_for_the_rest_of_the_session(monkeypatch):
    monkeypatch.setattr(running, "can_ask", lambda: True)
    answers = iter(["a"])
    approval = Approval(auto=False, ask=lambda q: next(answers))
    assert run(ToolCall("c1", "double", '{"x": 1}'), approval).decision == "ran"
    monkeypatch.setattr(running, "can_ask", lambda: False)  # no more asking needed
    assert run(ToolCall("c2", "double", '{"x": 3}'), Approval(auto=False)).result == "6"


def test_bad_arguments_and_unknown_tools_are_answered_before_anyone_is_asked(monkeypatch):
    monkeypatch.setattr(running, "can_ask", lambda: True)
    approval = Approval(auto=False, ask=lambda q: pytest.fail("asked"))
    invalid = run(ToolCall("c1", "double", '{"x": "two"}'), approval)
    assert invalid.decision == "invalid" and "'x'" in invalid.result
    unknown = run(ToolCall("c2", "triple", "{}"), approval)
    assert unknown.decision == "unknown" and "tools: double" in unknown.result


def test_auto_approve_never_asks(monkeypatch):
    monkeypatch.setattr(running, "can_ask", lambda: True)
    approval = Approval(auto=True, ask=lambda q: pytest.fail("asked"))
    assert run(ToolCall("c1", "double", '{"x": 5}'), approval).result == "10"
