"""Approval in the live view, in a real kernel: a call that needs approval shows a card and
waits; Run, Skip, Always and Stop are the view's buttons (sent here through the widget
protocol, as the browser does); a view that never renders (headless) refuses, never hangs."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.kernel

DEFINE = '''
from nbstream.tools.running import ALWAYS
ALWAYS.clear()  # "always" answers of earlier tests in this kernel
RAN = []
def double(x: int) -> int:
    """Doubles x."""
    RAN.append(x)
    return 2 * x
'''


def start(kernel, fake_llm, *, arguments='{"x": 21}'):
    model = fake_llm.script(
        answers=[
            {"text": "Let me compute.", "tool_calls": [{"name": "double", "arguments": arguments}]},
            {"text": "It is 42."},
        ]
    )
    kernel.run_ok(DEFINE)
    before = len(kernel.comm_opens())
    execution = kernel.submit(f"%%llm -m openai:{model} --tools double -o ans\nDouble 21.")
    kernel.wait_until(lambda: len(kernel.comm_opens()) > before, 30, "the live widget")
    comm_id = kernel.comm_opens()[-1]["content"]["comm_id"]
    return model, execution, comm_id


def card(kernel, comm_id):
    found = [m for m in kernel.custom_messages(comm_id) if m["type"] == "approval"]
    return found[-1] if found else None


def answered(kernel, comm_id):
    return [m for m in kernel.custom_messages(comm_id) if m["type"] == "approved"]


@pytest.mark.parametrize(
    "button, ran, decision, ending",
    [("run", "[21]", "ran", "It is 42."), ("skip", "[]", "skipped", "It is 42.")],
)
def test_the_card_waits_for_run_or_skip(llm_kernel, fake_llm, button, ran, decision, ending):
    kernel = llm_kernel
    model, execution, comm_id = start(kernel, fake_llm)
    kernel.send_custom(comm_id, {"event": "sync"})  # a view rendered
    kernel.wait_until(lambda: card(kernel, comm_id) is not None, 30, "the approval card")
    shown = card(kernel, comm_id)
    assert shown["name"] == "double" and '"x": 21' in shown["arguments"]
    assert len(fake_llm.log(model)) == 1  # nothing goes on while the card waits
    kernel.send_custom(comm_id, {"event": "approve", "id": shown["id"], "answer": button})
    kernel.wait(execution, 30)
    assert execution.status == "ok", execution.error()
    out = kernel.run_ok("print(RAN, ans.tool_calls[0]['decision'], ans.finish_reason)").stdout()
    assert out.split() == [ran, decision, "stop"]
    assert kernel.run_ok(f"print(ans.endswith({ending!r}))").stdout().strip() == "True"
    assert answered(kernel, comm_id)[-1]["id"] == shown["id"]
    # the saved output (static HTML in place of the widget) keeps the calls
    html = kernel.outputs(execution)[0]["data"]["text/html"]
    assert '<details class="nbstream-tools"><summary>1 tool call</summary>' in html
    assert "<code>double</code>" in html and f"· {decision} →" in html


def test_always_runs_later_calls_without_a_card(llm_kernel, fake_llm):
    kernel = llm_kernel
    _model, execution, comm_id = start(kernel, fake_llm)
    kernel.send_custom(comm_id, {"event": "sync"})
    kernel.wait_until(lambda: card(kernel, comm_id) is not None, 30, "the approval card")
    kernel.send_custom(
        comm_id, {"event": "approve", "id": card(kernel, comm_id)["id"], "answer": "always"}
    )
    kernel.wait(execution, 30)
    model = fake_llm.script(
        answers=[
            {"text": "", "tool_calls": [{"name": "double", "arguments": '{"x": 4}'}]},
            {"text": "8"},
        ]
    )
    kernel.run_ok("RAN.clear()")
    before = len(kernel.comm_opens())
    again = kernel.submit(f"%%llm -m openai:{model} --tools double -o ans\nDouble 4.")
    kernel.wait_until(lambda: len(kernel.comm_opens()) > before, 30, "the live widget")
    comm_id = kernel.comm_opens()[-1]["content"]["comm_id"]
    kernel.wait(again, 30)  # no sync, no click: "always" holds for this kernel
    assert card(kernel, comm_id) is None
    assert kernel.run_ok("print(RAN)").stdout().strip() == "[4]"


def test_stop_while_the_card_waits_ends_the_answer_cancelled(llm_kernel, fake_llm):
    kernel = llm_kernel
    model, execution, comm_id = start(kernel, fake_llm)
    kernel.send_custom(comm_id, {"event": "sync"})
    kernel.wait_until(lambda: card(kernel, comm_id) is not None, 30, "the approval card")
    kernel.send_custom(comm_id, {"event": "stop"})
    kernel.wait(execution, 30)
    assert execution.status == "ok", execution.error()
    out = kernel.run_ok("print(RAN, ans.finish_reason, repr(ans.text))").stdout()
    assert out.strip().split(maxsplit=2) == ["[]", "cancelled", "'Let me compute.'"]
    assert len(fake_llm.log(model)) == 1  # no further round was sent


def test_no_view_rendered_means_headless_the_call_is_refused(llm_kernel, fake_llm):
    kernel = llm_kernel
    model, execution, comm_id = start(kernel, fake_llm)  # no sync: nobody sees the view
    kernel.wait(execution, 30)
    assert execution.status == "ok", execution.error()
    out = kernel.run_ok("print(RAN, ans.tool_calls[0]['decision'])").stdout()
    assert out.split() == ["[]", "refused"]
    assert card(kernel, comm_id) is None
    sent = fake_llm.log(model)[1]["body"]["messages"][-1]["content"]
    assert "needs the user's approval" in sent
