"""nbstream in Notebook 7 (``jupyter notebook``): the same harness as for JupyterLab.

Notebook 7 is built from JupyterLab components, so cells are ``.jp-Cell`` and outputs
``.jp-OutputArea`` there too; it opens a notebook at ``/notebooks/NAME.ipynb``. One
module-scoped notebook on the session's Notebook 7 server (``nb7`` fixture; skipped when
the ``notebook`` package is not installed).
"""

from __future__ import annotations

import time

import pytest
from labkit import REPORT, TIMINGS, dump_failure, new_page, open_notebook
from llmkit import (
    GAUSS_ANSWER,
    GAUSS_CODE,
    assert_grows,
    doc_screenshot,
    llm_cell,
    no_traceback,
    nonspace,
    run_and_record,
    wait_footer,
    wait_live_view,
    wait_mathjax_settled,
    wait_until,
)

pytestmark = pytest.mark.browser

NB7_NB = "nb7_shared.ipynb"


@pytest.fixture(scope="module")
def shared_nb7(browser, nb7):
    t0 = time.monotonic()
    pg = new_page(browser, viewport={"width": 1200, "height": 900})
    nb = open_notebook(pg, nb7, NB7_NB, ["%load_ext nbstream"])
    nb.run_cell(0)
    assert nb.output_text(0).strip() == "", f"%load_ext printed: {nb.output_text(0)!r}"
    TIMINGS["nb7_notebook_ready_s"] = round(time.monotonic() - t0, 2)
    try:
        yield nb
    finally:
        pg.context.close()
        nb7.shutdown_sessions([NB7_NB])


@pytest.fixture
def n7(shared_nb7, request):
    shared_nb7.ensure_idle()
    yield shared_nb7
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        dump_failure(shared_nb7.page, request.node.name, tag="nb7-notebook")


def test_nb7_answer_streams_live_and_stop_disconnects(n7, fake_llm):
    assert "/notebooks/" in n7.page.url and "/lab" not in n7.page.url, n7.page.url
    tokens = [f"word{k} " + ("\n\n" if k % 25 == 24 else "") for k in range(400)]
    model = fake_llm.script(tokens=tokens, delay=0.03)
    i = n7.add_cell(llm_cell(fake_llm, model, "Count slowly to four hundred."))
    rec = run_and_record(n7, i, "nb7")
    wait_live_view(n7, i, rec)
    wait_until(
        "streamed text in the Notebook 7 live view",
        lambda: nonspace(rec.last()["body"]) > 60,
        timeout=20,
    )
    lengths = assert_grows(rec.samples())

    button = n7.cell(i).locator(".nbstream-view button.nbstream-stop")
    assert button.is_enabled()
    t_click = time.time()
    button.click()
    record = fake_llm.wait_for_disconnect(model, timeout=5)
    latency_ms = (record["disconnected_at"] - t_click) * 1000
    reason, foot = wait_footer(n7, i, timeout=10)
    rec.stop()
    assert reason == "cancelled", foot
    assert "stopped" in foot, foot
    sent = fake_llm.log(model)[-1]["tokens_sent"]
    assert sent < 200 and record["completed"] is False, f"{sent}/400 tokens sent"
    answer = n7.output(i).locator(".nbstream-answer").inner_text()
    assert nonspace(answer) >= max(lengths)
    no_traceback(n7, i)
    TIMINGS["nb7_stop_click_to_disconnect_ms"] = round(latency_ms, 1)
    REPORT.append(
        f"Notebook 7: Stop click -> server saw the disconnect: {latency_ms:.0f} ms "
        f"({sent}/400 tokens sent; live text grew in {len(set(lengths))} steps)"
    )
    assert latency_ms < 2000, f"Stop took {latency_ms:.0f} ms to close the connection"


def test_nb7_saved_answer_has_math_and_highlighted_code(n7, fake_llm):
    model = fake_llm.script(text=GAUSS_ANSWER, token_size=12, delay=0.01)
    i = n7.add_cell(llm_cell(fake_llm, model, "Explain the Gaussian integral, with code."))
    n7.run_cell(i)
    reason, foot = wait_footer(n7, i, timeout=30)
    assert reason == "stop", foot
    out = n7.output(i)
    assert out.locator(".nbstream-view").count() == 0
    answer = out.locator(".nbstream-answer")
    assert answer.locator("math").count() == 3
    width = answer.locator("math").first.evaluate("m => m.getBoundingClientRect().width")
    assert width > 0, "the MathML is not laid out"
    block = answer.locator(".nbstream-code[data-lang=python]")
    assert block.locator("pre.highlight code.language-python span.k").count() >= 2
    assert block.locator("code").evaluate("c => c.textContent") == GAUSS_CODE
    assert block.locator(".nbstream-code-lang").is_visible()
    no_traceback(n7, i)
    if wait_mathjax_settled(n7):
        mathjax = answer.locator("mjx-container")
        assert mathjax.count() == 0, (
            f"Notebook 7's MathJax re-typeset the saved answer ({mathjax.count()} "
            f"mjx-container): {answer.inner_text()[:200]!r}"
        )

    saved = n7.save()
    html = "".join(
        o["data"]["text/html"] for o in saved.cells[i].outputs if "text/html" in o.get("data", {})
    )
    assert html.count("<math ") == 3 and "<span class=k>" in html, html[:500]
    shot = doc_screenshot(out.locator(".jp-OutputArea-output").last, "notebook7.png")
    errors = n7.page_errors()
    print(f"[nb7] screenshot {shot}; page errors (Notebook 7's own): {errors}")
