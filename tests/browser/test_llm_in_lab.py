"""nbstream in a real JupyterLab: streaming, Stop, Run All, XSS, save/reopen, errors, local.

The answers come from the scriptable fake server (``fake_llm``), so every token, delay and
failure is under the test's control. Most tests share one module-scoped notebook (one page
load and one kernel start for all of them); each appends its own cells to it. The README
screenshots and "Run All" use notebooks of their own.

While a cell streams, an in-page recorder (``llmkit.RECORDER_JS``) samples the cell every
50 ms and on every DOM mutation, and flags any dangerous element (script, event handler,
``javascript:`` URL, ``img[src=x]``) that ever enters the nbstream output, even briefly.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import time

import pytest
from labkit import (
    REPORT,
    TIMINGS,
    NotebookPage,
    dump_failure,
    new_page,
    open_notebook,
    reopen_notebook,
)
from llmkit import (
    assert_grows,
    llm_cell,
    no_traceback,
    nonspace,
    publish_doc,
    run_and_record,
    streaming_bodies,
    summary,
    wait_footer,
    wait_live_view,
    wait_until,
)

pytestmark = pytest.mark.browser

SHARED_NB = "llm_shared.ipynb"

# --------------------------------------------------------------------------- helpers


def xss_titles(nb: NotebookPage) -> list[str]:
    return [t for t in nb.titles() if "XSS" in t]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def shared(browser, lab):
    """One notebook (and kernel) for the module, with ``%load_ext nbstream`` already run."""
    t0 = time.monotonic()
    pg = new_page(browser)
    nb = open_notebook(pg, lab, SHARED_NB, ["%load_ext nbstream"])
    nb.run_cell(0)
    assert nb.output_text(0).strip() == "", f"%load_ext printed: {nb.output_text(0)!r}"
    TIMINGS["shared_notebook_ready_s"] = round(time.monotonic() - t0, 2)
    try:
        yield nb
    finally:
        pg.context.close()
        lab.shutdown_sessions([SHARED_NB])


@pytest.fixture
def snb(shared, request):
    """The shared notebook, idle, with failure artifacts saved if the test fails."""
    shared.ensure_idle()
    yield shared
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        dump_failure(shared.page, request.node.name, tag="shared-notebook")


# --------------------------------------------------------------------------- 1. streaming

REPORT_TOKENS = [
    "# Report: Shannon entropy\n\n",
    "Entropy",
    " measures",
    " how",
    " unpredictable",
    " a",
    " source",
    " is.",
    " A",
    " fair",
    " coin",
    " carries",
    " **one bit**",
    " per",
    " toss;",
    " a",
    " loaded",
    " coin",
    " carries",
    " less,",
    " because",
    " its",
    " outcome",
    " is",
    " easier",
    " to",
    " guess.",
    "\n\n",
    "For",
    " a",
    " distribution",
    " `p`",
    " it",
    " is",
    " `H = -Σ p·log₂(p)`:",
    "\n\n",
    "```python\n",
    "import",
    " math",
    "\n\n",
    "def",
    " entropy(p):",
    "\n    return",
    " -sum(x",
    " *",
    " math.log2(x)",
    " for",
    " x",
    " in",
    " p",
    " if",
    " x)",
    "\n\n",
    "print(entropy([0.5,",
    " 0.5]))",
    "  # 1.0",
    "\n```\n\n",
    "Higher",
    " entropy",
    " means",
    " more",
    " surprise",
    " per",
    " symbol,",
    " and",
    " a",
    " harder",
    " job",
    " for",
    " any",
    " compressor.",
]
REPORT_CODE = "print(entropy([0.5, 0.5]))"

REPORT_PROMPT = (
    "Write a short report on Shannon entropy for a data-science audience:\n"
    "a heading, one paragraph, and a small Python example."
)


def test_streaming_markdown_grows_then_freezes(page, notebook, fake_llm):
    model = fake_llm.script(tokens=REPORT_TOKENS, delay=0.05)
    page.set_viewport_size({"width": 1200, "height": 760})  # README-sized screenshots
    nb = notebook(
        "nbstream_demo.ipynb",
        [
            "%load_ext nbstream\n"
            "# any OpenAI-compatible server (here: the test suite's scripted one)\n"
            f"%env OPENAI_BASE_URL={fake_llm.openai_base_url}",
            f"%%llm -m openai:{model} -o report\n{REPORT_PROMPT}",
            "report.finish_reason, len(report), report.usage",
        ],
    )
    nb.execute_command("application:toggle-left-area")  # hide the file browser
    nb.run_cell(0)
    rec = run_and_record(nb, 1, "report")
    wait_live_view(nb, 1, rec)

    # Mid-stream: wait until the code block has started, then screenshot.
    full = nonspace("".join(REPORT_TOKENS))
    wait_until(
        "the live view to show about two thirds of the answer",
        lambda: (s := rec.last())["state"] == "streaming" and nonspace(s["body"]) > full * 0.6,
        timeout=20,
        show=lambda: summary(rec.samples()),
    )
    nb.cell(1).locator(".nbstream-view button.nbstream-stop").wait_for(timeout=5_000)
    shot_mid = publish_doc(nb.screenshot("llm-mid-stream.png"), "streaming.png")
    assert rec.last()["state"] == "streaming", "the stream ended before the screenshot was taken"

    reason, foot = wait_footer(nb, 1, timeout=20)
    time.sleep(0.1)  # one more sample of the final state
    rec.stop()
    samples = rec.samples()
    lengths = assert_grows(samples)
    statuses = [s["status"] for s in streaming_bodies(samples)]
    assert any(s and " · streaming · " in s and "tokens" in s for s in statuses), statuses[-5:]
    assert rec.bad() == []

    # The end: the widget is replaced by static HTML rendered from the Markdown.
    out = nb.output(1)
    assert reason == "stop", foot
    assert f"openai:{model} · finished · {len(REPORT_TOKENS)} tokens" in foot, foot
    assert out.locator(".nbstream-view").count() == 0, "the live widget is still displayed"
    answer = out.locator(".nbstream-answer")
    assert "Report" in answer.locator("h1").inner_text()
    assert REPORT_CODE in answer.locator("pre code").inner_text()
    assert answer.locator("strong").inner_text() == "one bit"
    assert nonspace(answer.inner_text()) >= max(lengths)

    nb.run_cell(2)
    assert "('stop', " in nb.output_text(2), nb.output_text(2)
    shot_end = publish_doc(nb.screenshot("llm-finished.png"), "finished.png")
    assert nb.page_errors() == []
    print(f"[stream] {len(streaming_bodies(samples))} live samples, lengths {lengths}")
    print(f"[stream] screenshots: {shot_mid} {shot_end}")


# --------------------------------------------------------------------------- 2. Stop


def test_stop_button_closes_the_connection(snb, fake_llm):
    tokens = [f"word{k} " + ("\n\n" if k % 25 == 24 else "") for k in range(400)]
    model = fake_llm.script(tokens=tokens, delay=0.03)
    i = snb.add_cell(llm_cell(fake_llm, model, "Count slowly to four hundred."))
    snb.add_cell("print(ans.finish_reason, len(ans) > 0)")
    rec = run_and_record(snb, i, "stop")
    wait_live_view(snb, i, rec)

    wait_until(
        "some streamed text in the live view",
        lambda: nonspace(rec.last()["body"]) > 20,
        timeout=20,
    )
    button = snb.cell(i).locator(".nbstream-view button.nbstream-stop")
    assert button.is_enabled()
    t_click = time.time()
    button.click()
    click_s = time.time() - t_click
    record = fake_llm.wait_for_disconnect(model, timeout=5)
    latency_ms = (record["disconnected_at"] - t_click) * 1000

    def shown() -> str:
        s = rec.last()
        return s["answer"] if s["answer"] is not None else (s["body"] or "")

    time.sleep(0.5)
    first = shown()
    time.sleep(0.5)
    second = shown()
    assert nonspace(first) > 0
    assert first == second, f"text still growing after Stop: {len(first)} -> {len(second)}"

    reason, foot = wait_footer(snb, i, timeout=10)
    assert reason == "cancelled", foot
    assert "stopped" in foot
    sent = fake_llm.log(model)[-1]["tokens_sent"]
    assert sent < 200, f"the server sent {sent} of 400 tokens: Stop did not stop it"
    assert record["completed"] is False
    rec.stop()

    snb.wait_for_idle(timeout=10)
    snb.run_cell(i + 1)
    assert snb.output_text(i + 1).strip() == "cancelled True"
    TIMINGS["stop_click_to_disconnect_ms"] = round(latency_ms, 1)
    REPORT.append(
        f"Stop click -> server saw the disconnect: {latency_ms:.0f} ms "
        f"(click() itself took {click_s * 1000:.0f} ms; {sent}/400 tokens sent)"
    )
    print(f"[stop] click->disconnect latency {latency_ms:.0f} ms, tokens sent {sent}/400")
    assert latency_ms < 2000, f"Stop took {latency_ms:.0f} ms to close the connection"


# --------------------------------------------------------------------------- 3. Run All

RUN_ALL_TOKENS = ["Entropy", " is", " the", " average", " surprise", " of", " a", " source."]


def test_run_all_interpolates_and_waits(notebook, fake_llm):
    model = fake_llm.script(tokens=RUN_ALL_TOKENS, delay=0.05)
    nb = notebook(
        "llm_run_all.ipynb",
        [
            '%load_ext nbstream\ntopic = "entropy"',
            llm_cell(fake_llm, model, "Explain {topic}"),
            "print(ans.finish_reason, ans.upper())",
        ],
    )
    nb.run_all(timeout=60)
    answer = "".join(RUN_ALL_TOKENS)
    assert nb.output_text(2).strip() == f"stop {answer.upper()}"
    reason, _ = wait_footer(nb, 1, timeout=5)
    assert reason == "stop"
    assert nb.output(1).locator(".nbstream-answer").inner_text().strip() == answer
    log = fake_llm.log(model)
    assert len(log) == 1, f"expected one request, got {len(log)}"
    contents = [m.get("content") for m in log[0]["body"]["messages"]]
    assert any("Explain entropy" in str(c) for c in contents), contents


# --------------------------------------------------------------------------- 4. XSS

XSS_TOKENS = [
    "Here are some strings that must stay text:\n\n",
    "1. ",
    "<img src=x onerror=\"document.title='XSS-IMG'\">",
    "\n\n",
    "2. <scr",  # split across tokens: the incremental renderer sees the halves
    "ipt>document.title='XSS-SCRIPT'</scr",
    "ipt>",
    "\n\n",
    "3. [click](javascript:document.title='XSS-LINK')",
    "\n\n",
    "4. <a href=\"javascript:document.title='XSS-A'\">a-link</a>",
    "\n\n",
    "5. [click2](JaVaScRiPt:document.title='XSS-LINK2')",
    " <javascript:document.title='XSS-AUTO'>",
    "\n\n",
    "6. <svg onload=\"document.title='XSS-SVG'\"></svg>",
    " <iframe src=\"javascript:document.title='XSS-IFRAME'\"></iframe>",
    "\n\n",
    "7. `<script>document.title='XSS-CODE'</script>`",
    "\n\n",
    "```html\n<img src=x onerror=\"document.title='XSS-FENCE'\">\n```\n\n",
    "The end.",
]


def test_model_output_cannot_run_script(snb, fake_llm):
    model = fake_llm.script(tokens=XSS_TOKENS, delay=0.1)
    i = snb.add_cell(llm_cell(fake_llm, model, "Say something nasty."))
    before = xss_titles(snb)
    rec = run_and_record(snb, i, "xss")
    wait_live_view(snb, i, rec)
    reason, foot = wait_footer(snb, i, timeout=30)
    time.sleep(0.5)  # let any onerror/onload handler fire
    rec.stop()
    assert reason == "stop", foot
    samples = rec.samples()
    assert len(streaming_bodies(samples)) >= 5, "the stream was not sampled mid-way"

    answer = snb.output(i).locator(".nbstream-answer")
    links = answer.locator("a")
    hrefs = [links.nth(k).get_attribute("href") for k in range(links.count())]
    click = answer.locator("a", has_text=re.compile(r"^click$"))
    if click.count():
        # If the renderer made it a link at all, following it must not run anything.
        click.first.click(modifiers=["Control"], no_wait_after=True)
        time.sleep(0.3)

    ran = sorted(set(xss_titles(snb)) - set(before))
    assert not ran, f"injected script ran (document.title set to {ran}); elements: {rec.bad()[:5]}"
    assert rec.bad() == [], "dangerous element in the nbstream output (live or static)"
    assert not [h for h in hrefs if h and h.replace(" ", "").lower().startswith("javascript")]
    scope = snb.cell(i).locator(".nbstream-view, .nbstream-answer")
    assert scope.locator("img[src=x], script, iframe, svg").count() == 0
    text = answer.inner_text()
    for inert in ("<img src=x", "<script>document.title", '<a href="javascript:'):
        assert inert in text, f"{inert!r} is not shown as text: {text!r}"
    live = [s["body"] for s in streaming_bodies(samples)]
    assert any("<img src=x" in b for b in live), "payload never shown as text while streaming"
    assert snb.page_errors() == []


# --------------------------------------------------------------------------- 5. save/reopen

SAVED_TOKENS = ["Saved", " notebooks", " keep", " the", " **answer**", " as", " static", " HTML."]


def test_saved_notebook_keeps_static_answer(snb, fake_llm, lab, new_page):
    model = fake_llm.script(tokens=SAVED_TOKENS, delay=0.01)
    i = snb.add_cell(llm_cell(fake_llm, model, "What survives a reload?"))
    snb.run_cell(i)
    reason, _ = wait_footer(snb, i, timeout=20)
    assert reason == "stop"
    answer = "".join(SAVED_TOKENS)
    shown = "Saved notebooks keep the answer as static HTML."

    saved = snb.save()
    outputs = saved.cells[i].outputs
    mimes = [sorted(o.get("data", {})) for o in outputs]
    assert all("application/vnd.jupyter.widget-view+json" not in m for m in mimes), mimes
    display = [o for o in outputs if o.output_type == "display_data"]
    assert len(display) == 1, f"expected one display_data output, got {json.dumps(outputs)}"
    data = display[0]["data"]
    assert data["text/plain"] == answer
    html = data["text/html"]
    assert 'class="nbstream-answer ' in html and "<strong>answer</strong>" in html, html
    assert 'data-finish-reason="stop"' in html

    # A fresh browser context opening the saved file: nothing runs, the answer is there.
    nb2 = reopen_notebook(new_page(), lab, SHARED_NB)
    text = nb2.wait_for_text(i, shown, timeout=20)
    assert "Loading widget" not in text and "Error displaying widget" not in text, text
    assert nb2.output(i).locator(".nbstream-view").count() == 0
    assert nb2.prompt_text(i) == snb.prompt_text(i)


# --------------------------------------------------------------------------- 6. errors


def test_http_error_is_one_readable_line(snb, fake_llm):
    model = fake_llm.script(status=401, error_message="Incorrect API key provided")
    i = snb.add_cell(llm_cell(fake_llm, model, "Hello?"))
    snb.add_cell('print(ans.finish_reason, "HTTP 401" in ans.error)')
    snb.run_cell(i)
    reason, foot = wait_footer(snb, i, timeout=20)
    assert reason == "error", foot
    assert "HTTP 401" in foot and "Incorrect API key provided" in foot, foot
    assert "\n" not in foot.strip(), f"error message is not one line: {foot!r}"
    no_traceback(snb, i)
    snb.run_cell(i + 1)
    assert snb.output_text(i + 1).strip() == "error True"


# --------------------------------------------------------------------------- 7. local model


def _local_skip_reason() -> str | None:
    if importlib.util.find_spec("nbstream.providers.local") is None:
        return "nbstream.providers.local does not exist yet"
    probe = subprocess.run(
        [sys.executable, "-c", "import llama_cpp"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return f"the embedded local model needs llama-cpp-python ({last})"
    return None


@pytest.mark.local_model
def test_local_model_streams(snb):
    reason = _local_skip_reason()
    if reason:
        pytest.skip(reason)
    # Greedy decoding makes this deterministic: ~20 small deltas, then cut at 24 tokens.
    # ("The capital of France is" alone yields a single delta, "Paris": nothing to see grow.)
    i = snb.add_cell(
        "%%llm -m local --max-tokens 24\nDescribe Paris, the capital of France, in two sentences."
    )
    rec = run_and_record(snb, i, "local")
    wait_live_view(snb, i, rec, timeout=90)  # the first use loads the model
    finish, foot = wait_footer(snb, i, timeout=90)
    rec.stop()
    samples = rec.samples()
    assert finish in ("stop", "length"), foot
    answer = snb.output(i).locator(".nbstream-answer").inner_text().strip()
    assert answer, f"empty answer from the local model; footer {foot!r}"
    live = [nonspace(s["body"]) for s in streaming_bodies(samples) if s["body"]]
    assert len(set(live)) >= 2, f"the live view did not grow: {live}"
    assert live == sorted(live), f"the live view shrank: {live}"
    no_traceback(snb, i)
