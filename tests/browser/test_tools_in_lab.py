"""Tool calls approved in a real JupyterLab: the card shows the call, Run runs it (its print
appears in the cell) and the answer goes on; Skip tells the model the user declined."""

from __future__ import annotations

import pytest
from labkit import new_page, open_notebook
from llmkit import llm_cell, wait_footer, wait_until

pytestmark = pytest.mark.browser

TOOLS_NB = "llm_tools.ipynb"

DEFINE = '''RAN = []
def double(x: int) -> int:
    """Doubles x."""
    print(f"double ran with x={x}")
    RAN.append(x)
    return 2 * x'''


@pytest.fixture(scope="module")
def tnb(browser, lab):
    pg = new_page(browser)
    nb = open_notebook(pg, lab, TOOLS_NB, ["%load_ext nbstream", DEFINE])
    nb.run_cell(0)
    nb.run_cell(1)
    try:
        yield nb
    finally:
        pg.context.close()
        lab.shutdown_sessions([TOOLS_NB])


def ask_double(tnb, fake_llm, x: int) -> int:
    call = {"name": "double", "arguments": f'{{"x": {x}}}'}
    model = fake_llm.script(
        answers=[{"text": "Let me compute.", "tool_calls": [call]}, {"text": "Done computing."}]
    )
    i = tnb.add_cell(llm_cell(fake_llm, model, f"Double {x}.", extra=" --tools double"))
    tnb.run_cell(i, wait=False)
    card = tnb.cell(i).locator(".nbstream-card")
    card.wait_for(timeout=20_000)
    assert "double" in card.inner_text() and f'"x": {x}' in card.inner_text()
    return i


def test_run_on_the_card_runs_the_tool_and_the_answer_goes_on(tnb, fake_llm):
    i = ask_double(tnb, fake_llm, 21)
    tnb.cell(i).locator(".nbstream-card button[data-answer='run']").click()
    reason, foot = wait_footer(tnb, i, timeout=30)
    assert reason == "stop", foot
    text = tnb.output_text(i)
    assert "double ran with x=21" in text and "Done computing." in text
    j = tnb.add_cell("print(RAN, ans.tool_calls[0]['decision'])")
    tnb.run_cell(j)
    assert tnb.output_text(j).strip() == "[21] ran"


def test_skip_on_the_card_declines(tnb, fake_llm):
    tnb.ensure_idle()
    i = ask_double(tnb, fake_llm, 5)
    tnb.cell(i).locator(".nbstream-card button[data-answer='skip']").click()
    reason, foot = wait_footer(tnb, i, timeout=30)
    assert reason == "stop", foot
    j = tnb.add_cell("print(5 in RAN, ans.tool_calls[0]['decision'])")
    tnb.run_cell(j)
    wait_until("the check's output", lambda: tnb.output_text(j).strip() != "", 10)
    assert tnb.output_text(j).strip() == "False skipped"


TOOLS_NB7 = "nb7_tools.ipynb"


@pytest.fixture(scope="module")
def t7(browser, nb7):
    pg = new_page(browser, viewport={"width": 1200, "height": 900})
    nb = open_notebook(pg, nb7, TOOLS_NB7, ["%load_ext nbstream", DEFINE])
    nb.run_cell(0)
    nb.run_cell(1)
    try:
        yield nb
    finally:
        pg.context.close()
        nb7.shutdown_sessions([TOOLS_NB7])


def test_notebook7_card_runs_the_tool(t7, fake_llm):
    assert "/notebooks/" in t7.page.url and "/lab" not in t7.page.url, t7.page.url
    i = ask_double(t7, fake_llm, 8)
    t7.cell(i).locator(".nbstream-card button[data-answer='run']").click()
    reason, foot = wait_footer(t7, i, timeout=30)
    assert reason == "stop", foot
    text = t7.output_text(i)
    assert "double ran with x=8" in text and "Done computing." in text


PLOT = '''import struct, zlib
import nbstream
from IPython.display import Image, display

@nbstream.tool(approve=False)
def plot_bars(values: list[int]) -> str:
    """Draws a bar chart of the values (a PNG, 20 px per bar)."""
    width, height = 20 * len(values), 100
    top = max(max(values), 1)
    rows = b""
    for y in range(height):
        row = bytearray(b"\\x00")
        for v in values:
            filled = height - y <= 100 * v / top
            bar = b"\\x4c\\x78\\xa8" if filled else b"\\xff\\xff\\xff"
            row += bar * 18 + b"\\xff\\xff\\xff" * 2
        rows += bytes(row)
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    png = b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", header)
    png += chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    display(Image(png))
    return f"a chart of {len(values)} bars is shown"'''


def test_a_plot_made_by_a_tool_appears_in_the_cell(tnb, fake_llm):
    tnb.ensure_idle()
    j = tnb.add_cell(PLOT)
    tnb.run_cell(j)
    call = {"name": "plot_bars", "arguments": '{"values": [3, 1, 4, 1, 5]}'}
    model = fake_llm.script(
        answers=[{"text": "Plotting.", "tool_calls": [call]}, {"text": "There it is."}]
    )
    i = tnb.add_cell(llm_cell(fake_llm, model, "Plot 3 1 4 1 5.", extra=" --tools plot_bars"))
    tnb.run_cell(i, wait=False)
    reason, foot = wait_footer(tnb, i, timeout=30)
    assert reason == "stop", foot
    image = tnb.cell(i).locator(".jp-OutputArea-output img")
    image.wait_for(timeout=10_000)
    size = image.evaluate("img => [img.naturalWidth, img.naturalHeight, img.complete]")
    assert size == [100, 100, True]  # 5 bars of 20 px: the tool's own figure, decoded
    assert "There it is." in tnb.output_text(i)
    assert "plot_bars" in tnb.output_text(i)  # the call is listed with the answer
