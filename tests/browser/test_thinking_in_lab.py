"""A reasoning model's thinking in a real JupyterLab and Notebook 7: a "Thinking · N s · N
tokens" section streams (its last lines shown), collapses when the answer starts, and stays
collapsed in the saved notebook."""

from __future__ import annotations

import re

import pytest
from labkit import new_page, open_notebook
from llmkit import llm_cell, wait_footer, wait_until

pytestmark = pytest.mark.browser

NB = "llm_thinking.ipynb"
THOUGHTS = [f"Step {i}: weighing option {i}.\n" for i in range(40)]


@pytest.fixture(scope="module")
def tnb(browser, lab):
    pg = new_page(browser)
    nb = open_notebook(pg, lab, NB, ["%load_ext nbstream"])
    nb.run_cell(0)
    try:
        yield nb
    finally:
        pg.context.close()
        lab.shutdown_sessions([NB])


def watch_thinking(nb, fake_llm) -> int:
    model = fake_llm.script(tokens=["The ", "answer ", "is ", "42."], thinking=THOUGHTS, delay=0.05)
    i = nb.add_cell(llm_cell(fake_llm, model, "Think hard."))
    nb.run_cell(i, wait=False)
    section = nb.cell(i).locator(".nbstream-view .nbstream-thinking")
    peek = nb.cell(i).locator(".nbstream-view .nbstream-thinking-peek")
    wait_until("the thinking section", lambda: section.count() and section.is_visible(), 15)
    summary = section.locator("summary").inner_text()
    assert re.fullmatch(r"Thinking · \d+ s · \d+ tokens?", summary), summary
    wait_until("its last lines", lambda: peek.is_visible() and "Step" in peek.inner_text(), 10)
    assert peek.inner_text().count("\n") <= 3  # collapsed to its last lines
    assert nb.cell(i).locator(".nbstream-view .nbstream-body").inner_text().strip() == ""
    wait_until(
        "the answer, the thinking collapsed",
        lambda: (
            "The answer" in nb.output_text(i)
            and section.locator("summary").inner_text().startswith("Thought for")
        ),
        20,
    )
    assert not peek.is_visible()
    return i


def test_thinking_streams_then_collapses_and_stays_collapsed_when_saved(tnb, fake_llm):
    i = watch_thinking(tnb, fake_llm)
    reason, foot = wait_footer(tnb, i, timeout=30)
    assert reason == "stop", foot
    saved = tnb.cell(i).locator("details.nbstream-thinking")
    assert saved.count() == 1 and saved.get_attribute("open") is None
    assert saved.locator("summary").inner_text().startswith("Thought for")
    assert "Step 39" not in tnb.output_text(i)  # collapsed: not shown
    saved.locator("summary").click()  # expandable
    wait_until("the whole thinking", lambda: "Step 39" in tnb.output_text(i), 5)
    nb = tnb.save()
    html = next(
        o["data"]["text/html"]
        for o in nb.cells[i].outputs
        if "text/html" in o.get("data", {}) and "nbstream-footer" in o["data"]["text/html"]
    )
    assert '<details class="nbstream-thinking">' in html  # saved collapsed
    assert "Step 0: weighing option 0." in html
    assert "Step 0" not in "".join(o["data"].get("text/plain", "") for o in nb.cells[i].outputs)


NB7 = "nb7_thinking.ipynb"


@pytest.fixture(scope="module")
def t7(browser, nb7):
    pg = new_page(browser, viewport={"width": 1200, "height": 900})
    nb = open_notebook(pg, nb7, NB7, ["%load_ext nbstream"])
    nb.run_cell(0)
    try:
        yield nb
    finally:
        pg.context.close()
        nb7.shutdown_sessions([NB7])


def test_notebook7_thinking_streams_and_collapses(t7, fake_llm):
    assert "/notebooks/" in t7.page.url, t7.page.url
    i = watch_thinking(t7, fake_llm)
    reason, _ = wait_footer(t7, i, timeout=30)
    assert reason == "stop"
    assert t7.cell(i).locator("details.nbstream-thinking").get_attribute("open") is None
