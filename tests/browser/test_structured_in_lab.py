"""A structured answer (``%%llm --schema list[City]``, issue 11) in a real JupyterLab: the
live view grows as a table, row by row, while the JSON streams; the static answer that
replaces it is the validated table, and ``ans.data`` holds the objects.

Uses the fixtures of ``conftest.py`` and the helpers of ``labkit`` / ``llmkit`` as they are.
"""

from __future__ import annotations

import json
import time

import pytest
from llmkit import Recorder, llm_cell, no_traceback, wait_footer, wait_live_view, wait_until

pytestmark = pytest.mark.browser

N = 15
DEFINE = (
    "%load_ext nbstream\n"
    "from pydantic import BaseModel\n\n"
    "class City(BaseModel):\n"
    "    name: str\n"
    "    population: int"
)

LIVE_ROWS = ".nbstream-view .nbstream-body table.nbstream-records tbody tr"
STATIC_ROWS = ".nbstream-answer table.nbstream-records tbody tr"


def test_schema_answer_grows_as_a_table(notebook, fake_llm):
    items = [{"name": f"City {i}", "population": 1000 * (i + 1)} for i in range(N)]
    text = json.dumps({"items": items})
    model = fake_llm.script(text=text, token_size=6, delay=0.03)  # ~4 s
    nb = notebook(
        "structured.ipynb",
        [
            DEFINE,
            llm_cell(fake_llm, model, "Fifteen cities.", extra=" --schema list[City]"),
            "print(len(ans.data), type(ans.data[0]).__name__, ans.data[-1].population)",
        ],
    )
    nb.run_cell(0)
    rec = Recorder(nb, 1, "structured")
    nb.run_cell(1, wait=False)
    wait_live_view(nb, 1, rec)

    # Count the live table's rows from the page while it streams, until the static answer.
    live_rows = nb.output(1).locator(LIVE_ROWS)
    footer = nb.output(1).locator(".nbstream-footer")
    counts: list[int] = []
    shot = None
    deadline = time.monotonic() + 30
    while footer.count() == 0 and time.monotonic() < deadline:
        try:
            counts.append(live_rows.count())
        except Exception:  # the view was replaced between two calls
            break
        if shot is None and counts[-1] >= N // 2:
            shot = nb.screenshot("structured-mid-stream.png")  # test-artifacts/browser/
        time.sleep(0.05)
    reason, foot = wait_footer(nb, 1, timeout=30)
    rec.stop()
    print(f"[structured] live row counts: {counts}")

    assert reason == "stop", foot
    streamed = [c for c in counts if c]
    assert streamed == sorted(streamed), f"the table lost rows while streaming: {counts}"
    assert len(set(streamed)) >= 5, f"the table did not grow row by row: {counts}"
    assert 0 < streamed[0] < N, f"the first table shown was not partial: {counts}"
    assert rec.bad() == []

    # The static answer: the validated table, header from the model's fields.
    out = nb.output(1)
    assert out.locator(".nbstream-view").count() == 0, "the live widget is still displayed"
    rows = out.locator(STATIC_ROWS)
    wait_until("all rows in the static table", lambda: rows.count() == N, 5)
    headers = out.locator(".nbstream-answer table.nbstream-records thead th").all_inner_texts()
    assert headers == ["name", "population"]
    assert rows.nth(N - 1).locator("td").all_inner_texts() == [f"City {N - 1}", str(1000 * N)]
    no_traceback(nb, 1)

    nb.run_cell(2)
    assert nb.output_text(2).split() == [str(N), "City", str(1000 * N)]
    print(f"[structured] screenshots: {shot} {nb.screenshot('structured-finished.png')}")
    assert nb.page_errors() == []
