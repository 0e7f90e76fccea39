"""`%%llm` in a real ipykernel, driven through jupyter_client, against the fake server.

The Stop button is clicked the way a browser does it: a ``comm_msg`` with a widget custom
message on the shell channel. Run on every kernel Python in ``kernel_pythons()``
(CI adds an ipykernel 6.29 environment).
"""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.kernel

OPENAI_SECRET = "sk-test-secret-openai-0123456789"


def start_llm_cell(kernel, fake_llm, *, tokens=200, delay=0.02, extra="", **script):
    model = fake_llm.script(tokens=[f"w{i} " for i in range(tokens)], delay=delay, **script)
    before = len(kernel.comm_opens())
    execution = kernel.submit(f"%%llm -m openai:{model} -o ans {extra}\nCount slowly.")
    kernel.wait_until(lambda: len(kernel.comm_opens()) > before, 30, "the live widget")
    comm_id = kernel.comm_opens()[-1]["content"]["comm_id"]
    return model, execution, comm_id


def updates(kernel, comm_id):
    return [m for m in kernel.custom_messages(comm_id) if m["type"] in ("update", "reset")]


def test_answer_streams_into_the_widget_and_is_saved_as_static_output(llm_kernel, fake_llm):
    kernel = llm_kernel
    _model, execution, comm_id = start_llm_cell(
        kernel, fake_llm, tokens=60, delay=0.02, usage={"input_tokens": 3, "output_tokens": 60}
    )
    kernel.wait(execution, 30)
    assert execution.status == "ok", execution.error()
    # the live view is displayed as *this* widget (its display names the comm's model id)
    shown = [m["content"]["data"] for m in execution.messages if m["msg_type"] == "display_data"]
    assert shown[0]["application/vnd.jupyter.widget-view+json"]["model_id"] == comm_id
    msgs = updates(kernel, comm_id)
    # grew progressively: many pushes, spread over the stream, throttled (~20/s at most)
    chunks = [m["chunks"] for m in msgs]
    assert len(msgs) >= 8 and chunks == sorted(chunks) and chunks[-1] == 60
    span = msgs[-1]["_t"] - msgs[0]["_t"]
    assert span > 0.8 and len(msgs) <= 20 * span + 5, (len(msgs), span)
    # the saved output: the widget's display was replaced by static HTML + plain text
    outputs = kernel.outputs(execution)
    data = [o["data"] for o in outputs if o["output_type"] == "display_data"]
    assert len(data) == 1
    expected = "".join(f"w{i} " for i in range(60))
    assert data[0]["text/plain"] == expected
    assert "nbstream-answer" in data[0]["text/html"] and "w59" in data[0]["text/html"]
    assert 'data-finish-reason="stop"' in data[0]["text/html"]
    assert "application/vnd.jupyter.widget-view+json" not in data[0]
    check = kernel.run_ok(
        "print(type(ans).__name__, ans.finish_reason, ans.usage['output_tokens'], "
        "ans == _llm, len(ans), ans.ttft is not None)"
    )
    assert check.stdout().split() == ["Response", "stop", "60", "True", str(len(expected)), "True"]


def test_stop_button_closes_the_stream_and_the_next_cell_sees_the_partial(llm_kernel, fake_llm):
    kernel = llm_kernel
    model, execution, comm_id = start_llm_cell(kernel, fake_llm, tokens=400, delay=0.02)
    follow = kernel.submit("print(repr(ans.finish_reason), ans.chunks, len(ans))")  # queued
    kernel.wait_until(lambda: len(updates(kernel, comm_id)) >= 5, 30, "streaming updates")
    clicked_wall = time.time()
    clicked = kernel.send_custom(comm_id, {"event": "stop"})
    record = fake_llm.wait_for_disconnect(model, timeout=10)
    kernel.wait(execution, 30)
    ended = execution.reply["_t"]
    latency = record["disconnected_at"] - clicked_wall
    print(
        f"\nStop click → server saw disconnect: {latency * 1000:.0f} ms; "
        f"click → cell's execute_reply: {(ended - clicked) * 1000:.0f} ms"
    )
    assert execution.status == "ok"
    assert latency < 2.0  # measured ~10-20 ms; the bound only guards against "never"
    assert 5 <= record["tokens_sent"] < 400 and not record["completed"]
    kernel.wait(follow, 30)
    finish, chunks, length = follow.stdout().split()
    assert finish == "'cancelled'" and 5 <= int(chunks) < 400 and int(length) > 0
    html = kernel.outputs(execution)[0]["data"]["text/html"]
    assert 'data-finish-reason="cancelled"' in html and "stopped" in html


def test_stop_while_the_server_is_silent(llm_kernel, fake_llm):
    kernel = llm_kernel
    model, execution, comm_id = start_llm_cell(
        kernel, fake_llm, tokens=10, delay=0.0, stall_after=3, stall_seconds=60
    )
    kernel.wait_until(
        lambda: any(m["chunks"] == 3 for m in updates(kernel, comm_id)), 30, "3 tokens"
    )
    time.sleep(0.3)
    kernel.send_custom(comm_id, {"event": "stop"})
    record = fake_llm.wait_for_disconnect(model, timeout=10)
    kernel.wait(execution, 30)
    assert execution.status == "ok" and record["tokens_sent"] == 3
    out = kernel.run_ok("print(ans.finish_reason, repr(str(ans)))").stdout()
    assert out.strip() == "cancelled 'w0 w1 w2 '"


def test_kernel_interrupt_keeps_the_partial_and_halts_run_all(llm_kernel, fake_llm):
    kernel = llm_kernel
    model, execution, comm_id = start_llm_cell(kernel, fake_llm, tokens=400, delay=0.02)
    kernel.wait_until(lambda: len(updates(kernel, comm_id)) >= 4, 30, "streaming updates")
    kernel.interrupt()
    record = fake_llm.wait_for_disconnect(model, timeout=10)
    kernel.wait(execution, 30)
    assert execution.status == "error" and execution.error()["ename"] == "KeyboardInterrupt"
    assert not record["completed"]
    out = kernel.run_ok("print(_llm.finish_reason, _llm.chunks > 0, ans is _llm)").stdout()
    assert out.split() == ["cancelled", "True", "True"]


def test_failures_show_a_one_line_message_and_keep_text(llm_kernel, fake_llm):
    kernel = llm_kernel
    _model, execution, _comm_id = start_llm_cell(
        kernel, fake_llm, tokens=20, delay=0.0, drop_after=5
    )
    kernel.wait(execution, 30)
    assert execution.status == "ok"
    data = kernel.outputs(execution)[0]["data"]
    assert data["text/plain"].startswith("w0 w1 w2 w3 w4 ")
    assert "[nbstream: failed: the stream ended without its completion event" in data["text/plain"]
    assert 'data-finish-reason="error"' in data["text/html"]
    out = kernel.run_ok("print(ans.finish_reason, len(ans))").stdout()
    assert out.split() == ["error", str(len("w0 w1 w2 w3 w4 "))]


def test_http_error_never_shows_the_key(llm_kernel, fake_llm):
    kernel = llm_kernel
    model = fake_llm.script(status=401, error_message=f"bad key {OPENAI_SECRET}")
    execution = kernel.run(f"%%llm -m openai:{model}\nhello")
    assert execution.status == "ok"
    data = kernel.outputs(execution)[0]["data"]
    assert "HTTP 401 from OpenAI" in data["text/plain"] and "OPENAI_API_KEY" in data["text/plain"]
    everything = repr(kernel.iopub)
    assert OPENAI_SECRET not in everything
    out = kernel.run_ok("print(repr(_llm))").stdout()
    assert OPENAI_SECRET not in out and "HTTP 401" in out


def test_anthropic_and_python_api(llm_kernel, fake_llm):
    kernel = llm_kernel
    model = fake_llm.script(tokens=["# Title\n\n", "Some ", "**bold** ", "text."])
    execution = kernel.run_ok(
        f"import nbstream\nr = await nbstream.ask('hi', model='anthropic:{model}')\n"
        "print(r.finish_reason, r.model)"
    )
    assert execution.stdout().split() == ["stop", f"anthropic:{model}"]
    html = kernel.outputs(execution)[0]["data"]["text/html"]
    assert "<h1>Title</h1>" in html and "<strong>bold</strong>" in html


def test_usage_error_makes_no_request(llm_kernel, fake_llm):
    model = fake_llm.script(tokens=["x"])
    execution = llm_kernel.run(f"%%llm -m openai:{model} --frobnicate\nhello")
    assert execution.status == "error", execution.reply
    assert "UsageError: unrecognized arguments: --frobnicate" in execution.stderr()
    assert "Traceback" not in execution.stderr()
    assert fake_llm.log(model) == []
