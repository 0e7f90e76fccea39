"""Answers that see, in a real JupyterLab: a figure in the prompt shows as a thumbnail under
``--show-prompt``, and ``%llm fix`` shows a diff and puts the corrected cell below."""

from __future__ import annotations

import pytest
from labkit import new_page, open_notebook
from llmkit import llm_cell, wait_footer, wait_until

pytestmark = pytest.mark.browser

NB = "llm_context.ipynb"

FIGURE = """import matplotlib
matplotlib.use("agg")
import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(4, 3), dpi=100)
ax.bar(["a", "b", "c"], [3, 1, 2])"""


@pytest.fixture(scope="module")
def cnb(browser, lab):
    pytest.importorskip("matplotlib")
    pg = new_page(browser)
    nb = open_notebook(pg, lab, NB, ["%load_ext nbstream", FIGURE])
    nb.run_cell(0)
    nb.run_cell(1)
    try:
        yield nb
    finally:
        pg.context.close()
        lab.shutdown_sessions([NB])


def test_a_figure_in_the_prompt_shows_as_a_thumbnail(cnb, fake_llm):
    model = fake_llm.script(tokens=["Three ", "bars."])
    i = cnb.add_cell(llm_cell(fake_llm, model, "What is this? {fig}", extra=" --show-prompt"))
    cnb.run_cell(i, wait=False)
    reason, foot = wait_footer(cnb, i, timeout=30)
    assert reason == "stop", foot
    details = cnb.cell(i).locator("details.nbstream-prompt")
    details.locator("summary").click()
    thumb = details.locator("img.nbstream-thumb")
    thumb.wait_for(timeout=10_000)
    size = thumb.evaluate("img => [img.naturalWidth, img.naturalHeight, img.complete]")
    assert size == [160, 120, True]  # a 400×300 figure's thumbnail, decoded by the browser
    assert "fig: PNG 400×300" in details.inner_text()
    content = fake_llm.log(model)[0]["body"]["messages"][-1]["content"]
    assert [c["type"] for c in content] == ["text", "image_url"]


def test_llm_fix_shows_a_diff_and_a_new_cell_below(cnb, fake_llm):
    cnb.ensure_idle()
    bad = cnb.add_cell("values = [1, 2, 3]\ntotal = sum(valuez)")
    cnb.run_cell(bad)
    wait_until("the NameError", lambda: "NameError" in cnb.output_text(bad), 10)
    answer = "A typo in the name.\n\n```python\nvalues = [1, 2, 3]\ntotal = sum(values)\n```\n"
    model = fake_llm.script(text=answer, token_size=6)
    before = cnb.cells.count()
    i = cnb.add_cell(f"%llm fix -m openai:{model} --base-url {fake_llm.openai_base_url}")
    cnb.run_cell(i, wait=False)
    reason, foot = wait_footer(cnb, i, timeout=30)
    assert reason == "stop", foot
    diff = cnb.cell(i).locator(".nbstream-diff")
    diff.wait_for(timeout=10_000)
    assert diff.locator(".nbstream-diff-del").inner_text() == "-total = sum(valuez)"
    assert diff.locator(".nbstream-diff-add").inner_text() == "+total = sum(values)"
    wait_until("the new cell", lambda: cnb.cells.count() == before + 2, 10)
    assert cnb.cell_source(i + 1) == "values = [1, 2, 3]\ntotal = sum(values)"
    assert "NameError" in fake_llm.log(model)[0]["body"]["messages"][-1]["content"]
