"""``nbstream.map`` in a real kernel (ipykernel 7.4 and 6.29): one progress widget, its Stop
button, a kernel interrupt, a background batch while other cells run."""

from __future__ import annotations

import json
import time

import pytest


def last_json(execution):
    return json.loads(execution.stdout().strip().splitlines()[-1])


@pytest.fixture
def kernel(llm_kernel, tmp_path):
    llm_kernel.run_ok(
        f"import json, nbstream\n%config LLMMagics.cache_dir = {str(tmp_path / 'cache')!r}"
    )
    return llm_kernel


def test_one_progress_widget_and_a_static_summary(kernel, fake_llm):
    model = fake_llm.script(tokens=["ok"], delay=0.01)
    before = len(kernel.comm_opens())
    ex = kernel.run_ok(
        "rows = [{'q': f'q{i}'} for i in range(30)]\n"
        f"out = await nbstream.map(rows, '{{q}}', model='openai:{model}', concurrency=8)\n"
        "print(json.dumps([[r.prompt for r in out[:2]], sum(r == 'ok' for r in out)]))",
        timeout=60,
    )
    assert last_json(ex) == [["q0", "q1"], 30]
    assert len(kernel.comm_opens()) - before == 1  # one widget for 30 rows
    saved = [o for o in kernel.outputs(ex) if o["output_type"] == "display_data"]
    assert len(saved) == 1
    assert saved[0]["data"]["text/plain"].startswith("openai:")
    assert "30 rows · 30 done" in saved[0]["data"]["text/plain"]
    assert "application/vnd.jupyter.widget-view+json" not in saved[0]["data"]


def test_the_stop_button_stops_every_stream_and_the_cell_ends_normally(kernel, fake_llm):
    model = fake_llm.script(tokens=["t"] * 60, delay=0.05)
    before = len(kernel.comm_opens())
    ex = kernel.submit(
        f"out = await nbstream.map([f'r{{i}}' for i in range(12)], '{{item}}', "
        f"model='openai:{model}', concurrency=4)\n"
        "print(json.dumps([r.finish_reason for r in out]))"
    )
    kernel.wait_until(lambda: len(kernel.comm_opens()) > before, 30, "the progress widget")
    comm_id = kernel.comm_opens()[-1]["content"]["comm_id"]
    kernel.wait_until(lambda: len(fake_llm.log(model)) >= 4, 30, "four requests")
    time.sleep(0.5)
    kernel.send_custom(comm_id, {"event": "stop"})
    kernel.wait(ex, 30)
    assert ex.status == "ok", ex.error()
    reasons = last_json(ex)
    print(reasons)
    assert len(reasons) == 12 and set(reasons) == {"cancelled"}
    log = fake_llm.log(model)
    assert len(log) == 4  # nothing started after Stop
    for _ in log:
        fake_llm.wait_for_disconnect(model)
    assert all(r["client_disconnected"] and not r["completed"] for r in fake_llm.log(model))


def test_an_interrupt_keeps_the_results_in_llm(kernel, fake_llm):
    model = fake_llm.script(tokens=["t"] * 60, delay=0.05)
    ex = kernel.submit(
        f"out = await nbstream.map(['a', 'b', 'c'], '{{item}}', model='openai:{model}')"
    )
    kernel.wait_until(lambda: len(fake_llm.log(model)) == 3, 30, "three requests")
    time.sleep(0.4)
    kernel.interrupt()
    kernel.wait(ex, 30)
    assert ex.status == "error" and ex.error()["ename"] == "KeyboardInterrupt"
    kept = last_json(
        kernel.run_ok("print(json.dumps([(r.finish_reason, len(r) > 0) for r in _llm]))")
    )
    # the watched row (the pane's) streamed and keeps its partial text; the others were
    # asked whole (one response each, cheaper) and end cancelled without text
    assert sorted(kept) == [["cancelled", False], ["cancelled", False], ["cancelled", True]]
    streamed = [r for r in fake_llm.log(model) if r["body"].get("stream")]
    assert len(streamed) == 1
    assert all(r["client_disconnected"] for r in fake_llm.log(model))  # every one closed


def test_a_background_batch_leaves_the_kernel_free(kernel, fake_llm):
    model = fake_llm.script(tokens=["w "] * 10, delay=0.03)
    kernel.run_ok(
        f"job = await nbstream.map(list(range(60)), 'n={{item}}', model='openai:{model}', "
        "concurrency=4, background=True)"
    )
    latencies = []
    while True:
        asked = time.monotonic()
        done = last_json(kernel.run_ok("print(json.dumps(job.done))"))
        latencies.append(time.monotonic() - asked)
        if done:
            break
        time.sleep(0.1)
    print(f"trivial cell during the batch: max {max(latencies) * 1000:.0f} ms, n={len(latencies)}")
    assert len(latencies) >= 3 and max(latencies) < 2.0
    result = last_json(
        kernel.run_ok("res = await job\nprint(json.dumps([len(res), sum(r.ok for r in res)]))")
    )
    assert result == [60, 60]


def test_a_provider_batch_is_collected_by_another_kernel(kernel, fake_llm, tmp_path):
    """mode="batch" returns a Job at once; its id, kept in the history file, lets a new
    kernel collect the results in row order."""
    from kernel_harness import KernelSession

    model = fake_llm.script(tokens=["B"], batch_seconds=0.2)
    history = tmp_path / "history.sqlite"
    ex = kernel.run_ok(
        f"job = await nbstream.map(['a', 'b', 'c'], 'Q {{item}}', model='anthropic:{model}', "
        f"mode='batch', history={str(history)!r})\n"
        "print(json.dumps([job.id, job.done]))",
        timeout=60,
    )
    job_id, done = last_json(ex)
    assert job_id.startswith("anthropic:msgbatch_") and not done  # the cell did not wait
    env = {
        "ANTHROPIC_API_KEY": "sk-ant-test-secret-0123456789",
        "ANTHROPIC_BASE_URL": fake_llm.anthropic_base_url,
        "NBSTREAM_CACHE_DIR": str(tmp_path / "other-cache"),
    }
    with KernelSession(python=kernel.python, env=env) as other:
        out = other.run_ok(
            "import json, nbstream\n"
            f"res = await nbstream.collect({job_id!r}, history={str(history)!r})\n"
            "print(json.dumps([[r.prompt, str(r), r.finish_reason] for r in res]))",
            timeout=60,
        )
    assert last_json(out) == [["Q a", "B", "stop"], ["Q b", "B", "stop"], ["Q c", "B", "stop"]]
    first = last_json(kernel.run_ok("res = await job\nprint(json.dumps([str(r) for r in res]))"))
    assert first == ["B", "B", "B"]


def test_a_background_batch_ends_into_the_cell_that_runs_then(kernel, fake_llm):
    """nbclient reads only the running cell's messages: the final summary of a batch that
    ends while another cell runs must be attributed to that cell (a headless run keeps it)."""
    model = fake_llm.script(tokens=["x"] * 5, delay=0.05)
    kernel.run_ok(
        f"job = await nbstream.map(list(range(6)), 'n={{item}}', model='openai:{model}', "
        "concurrency=2, background=True)"
    )
    waiting = kernel.run_ok("res = job.wait()", timeout=60)
    updates = [m for m in waiting.messages if m["msg_type"] == "update_display_data"]
    assert updates, "the final summary was not attributed to the running cell"
    assert "6 rows · 6 done" in updates[-1]["content"]["data"]["text/plain"]
