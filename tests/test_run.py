"""The shared front-door logic (:mod:`nbstream.run`): sinks, the blocking paths, and
``ask_sync`` in a real kernel."""

from __future__ import annotations

import pytest

from fake_llm_fixture import interrupt_mid_answer
from nbstream import run
from nbstream.display.terminal import TerminalSink
from nbstream.engine import NullSink
from nbstream.settings import Settings


def test_make_sink_follows_the_display_setting():
    assert isinstance(run.make_sink(Settings(display="none")), NullSink)
    assert isinstance(run.make_sink(Settings(display="text")), TerminalSink)
    # auto outside a kernel is text: no front end could show a widget
    assert isinstance(run.make_sink(Settings(display="auto")), TerminalSink)
    widget = run.make_sink(Settings(display="widget", throttle=0.2), stoppable=False)
    assert type(widget).__name__ == "WidgetSink"
    assert widget.interval == 0.2 and widget.stoppable is False  # type: ignore[attr-defined]
    assert widget.pumps_widget_messages and not NullSink.pumps_widget_messages


def test_make_request_carries_every_request_option():
    settings = Settings(system="s", temperature=0.1, top_p=0.5, max_tokens=7, stop=["x", "y"])
    request = run.make_request(settings, "prompt", "m")
    assert (request.prompt, request.model, request.system) == ("prompt", "m", "s")
    assert (request.temperature, request.top_p, request.max_tokens) == (0.1, 0.5, 7)
    assert request.stop == ("x", "y") and request.connect_timeout == 10.0


def test_run_blocking_from_a_worker_thread_path_returns_the_answer(fake_llm, monkeypatch):
    """Inside a running event loop (a kernel's), the blocking path runs the stream on a
    worker thread with its own loop."""
    import asyncio

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.openai_base_url)
    model = fake_llm.script(tokens=["from ", "a thread"])

    async def in_a_loop():
        stream = run.make_stream("hi", {"model": f"openai:{model}", "display": "none"})
        return run.run_blocking(stream)

    response = asyncio.run(in_a_loop())
    assert response == "from a thread" and response.finish_reason == "stop"


@pytest.mark.kernel
def test_ask_sync_interrupt_keeps_the_partial_then_raises(llm_kernel, fake_llm):
    kernel = llm_kernel
    model = fake_llm.script(tokens=[f"w{i} " for i in range(400)], delay=0.02)
    execution = kernel.submit(
        f"import nbstream\nr = nbstream.ask_sync('count', model='openai:{model}')"
    )
    record = interrupt_mid_answer(kernel, fake_llm, model, execution)
    assert execution.status == "error" and execution.error()["ename"] == "KeyboardInterrupt"
    assert not record["completed"]
    out = kernel.run_ok("print(_llm.finish_reason, _llm.chunks > 0, _llm.startswith('w0 '))")
    assert out.stdout().split() == ["cancelled", "True", "True"]


@pytest.mark.kernel
def test_ask_sync_follows_the_configured_display(llm_kernel, fake_llm):
    kernel = llm_kernel
    model = fake_llm.script(tokens=["plain"])
    kernel.run_ok("%config LLMMagics.display = 'text'")
    try:
        execution = kernel.run_ok(
            f"import nbstream\nr = nbstream.ask_sync('hi', model='openai:{model}')"
        )
    finally:
        kernel.run_ok("%config LLMMagics.display = None")
    assert "plain" in execution.stdout()
    assert not any(m["msg_type"] == "comm_open" for m in execution.messages)
