"""``nbstream.map`` (issue 13) in a real JupyterLab: ONE progress view for the batch, counts
and the answer streaming in its pane, its Stop button stopping every request in flight, and
the static summary that replaces it.

Uses the fixtures of ``conftest.py`` and the helpers of ``labkit`` / ``llmkit`` as they are.
"""

from __future__ import annotations

import time

import pytest
from llmkit import wait_until

pytestmark = pytest.mark.browser

LIVE = ".nbstream-progress .nbstream-progress-stop"


def test_a_batch_has_one_progress_view_whose_stop_stops_every_row(notebook, fake_llm):
    model = fake_llm.script(tokens=["word "] * 40, delay=0.05)  # ~2 s a row
    nb = notebook(
        "batch.ipynb",
        [
            "%load_ext nbstream\nimport nbstream",
            f"out = await nbstream.map([f'row {{i}}' for i in range(24)], 'Say {{item}}', "
            f"model='openai:{model}', base_url={fake_llm.openai_base_url!r}, concurrency=4, "
            "cache='off')",
            "print(sorted({r.finish_reason for r in out}), sum(r.ok for r in out), len(out))",
        ],
    )
    nb.run_cell(0)
    nb.run_cell(1, wait=False)
    out = nb.output(1)
    wait_until("the progress view", lambda: out.locator(LIVE).count() == 1, 30)
    pane = out.locator(".nbstream-progress-pane pre")
    wait_until("an answer streaming in the pane", lambda: "word" in pane.inner_text(), 20)
    status = out.locator(".nbstream-progress-status").inner_text()
    assert "/24" in status or "of 24" in status or "24" in status, status
    nb.screenshot("batch-progress-live.png")  # test-artifacts/browser/
    assert out.locator(".nbstream-progress").count() == 1  # one view, not one per row

    sent_before = len(fake_llm.log(model))
    t_click = time.time()
    out.locator(LIVE).click()
    wait_until(
        "the static summary",
        lambda: out.locator(LIVE).count() == 0 and out.locator(".nbstream-progress").count() == 1,
        20,
    )
    print(f"[batch] Stop -> static summary in {time.time() - t_click:.2f} s")
    nb.wait_for_idle(timeout=20)
    summary = out.locator(".nbstream-progress-status").inner_text()
    assert "cancelled" in summary, summary
    value, top = out.locator(".nbstream-progress progress").evaluate("p => [p.value, p.max]")
    assert value < top, (value, top)  # a stopped batch's bar is not full
    assert out.locator(".nbstream-progress").get_attribute("data-state") == "stopped"
    nb.screenshot("batch-progress-stopped.png")

    log = fake_llm.log(model)
    assert len(log) <= sent_before + 4  # nothing new after Stop (a few were starting)
    cut = [r for r in log if not r["completed"]]
    assert cut, "no request was in flight when Stop was clicked"
    for _ in cut:
        fake_llm.wait_for_disconnect(model, timeout=5)
    assert all(r["client_disconnected"] for r in fake_llm.log(model) if not r["completed"])

    nb.run_cell(2)
    reasons, ok, total = nb.output_text(2).strip().rsplit(" ", 2)
    assert "'cancelled'" in reasons and total == "24" and int(ok) < 24
    assert nb.page_errors() == []
