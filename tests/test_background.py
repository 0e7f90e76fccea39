"""Background answers (:mod:`nbstream.background`): ``%%llm --bg``, ``ask(background=True)``.

In a real kernel (ipykernel 7.4, and 6.29 with ``NBSTREAM_TEST_KERNEL_PYTHON_EXTRA``)
against the fake server's real HTTP streams: the cell returns while the server is still
streaming, other cells run meanwhile, the variables become the final Response, each view's
Stop (clicked as a browser does: a widget custom message on the shell channel) stops only
its own stream. In-process: the same handle from a script, and the shared loop's helper.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

import pytest

import nbstream
from nbstream import background
from nbstream.background import Pending, run_in_background

OPENAI = "openai"


def tokens(n: int) -> list[str]:
    return [f"w{i} " for i in range(n)]


def text_of(n: int) -> str:
    return "".join(tokens(n))


# -- kernel helpers -------------------------------------------------------------------------


def view_of(execution) -> tuple[str, str]:
    """The comm id and display id of the live view a cell displayed."""
    for m in execution.messages:
        if m["msg_type"] == "display_data":
            data = m["content"]["data"]
            view = data.get("application/vnd.jupyter.widget-view+json")
            if view:
                return view["model_id"], m["content"]["transient"]["display_id"]
    kinds = [m["msg_type"] for m in execution.messages]
    raise AssertionError(f"no live view in the cell's outputs (messages: {kinds})")


def final_display(kernel, display_id: str) -> dict:
    """The bundle that replaced a view (routed by display id, whichever cell is current)."""
    with kernel._lock:
        updates = [
            m["content"]["data"]
            for m in kernel.iopub
            if m["msg_type"] == "update_display_data"
            and m["content"].get("transient", {}).get("display_id") == display_id
            and "nbstream-footer" in m["content"]["data"].get("text/html", "")
            and "data-finish-reason" in m["content"]["data"].get("text/html", "")
        ]
    assert updates, f"the view {display_id} was not replaced by the static answer"
    return updates[-1]


def start_bg(kernel, fake_llm, n: int, delay: float, out: str, **script):
    """Run a ``%%llm --bg`` cell; return the model, the cell's execution, comm id, display id."""
    model = fake_llm.script(tokens=tokens(n), delay=delay, **script)
    started = time.monotonic()
    execution = kernel.run(f"%%llm --bg -m {OPENAI}:{model} -o {out}\nCount slowly.", 30)
    assert execution.status == "ok", execution.error()
    print(f"\n--bg cell: execute_reply after {(execution.reply['_t'] - started) * 1000:.0f} ms")
    comm_id, display_id = view_of(execution)
    return model, execution, comm_id, display_id


def streaming(fake_llm, model: str, at_least: int = 1):
    """Wait until the server has sent ``at_least`` tokens of ``model``'s answer."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        log = fake_llm.log(model)
        if log and log[-1]["tokens_sent"] >= at_least:
            return log[-1]
        time.sleep(0.01)
    raise AssertionError(f"{model}: fewer than {at_least} tokens sent after 30 s")


# -- in a real kernel -------------------------------------------------------------------------

SETTLED = (
    "import nbstream\n"
    "def settled(x):\n"
    "    return x if isinstance(x, nbstream.Response) else x.wait(30)"
)
"""A kernel helper: the Response, whether the handle's variable was rebound already or not."""


@pytest.mark.kernel
def test_bg_cell_returns_at_once_and_the_answer_fills_in(llm_kernel, fake_llm):
    kernel = llm_kernel
    model, execution, comm_id, display_id = start_bg(kernel, fake_llm, 40, 0.05, "x")
    log = fake_llm.log(model)
    assert not any(r["completed"] for r in log), "the cell waited for the answer"
    # the view landed in the --bg cell itself (also on ipykernel 6.29)
    assert comm_id in {m["content"]["comm_id"] for m in kernel.comm_opens()}

    streaming(fake_llm, model, 3)
    trivial = kernel.submit("1+1")
    sent = time.monotonic()
    kernel.wait(trivial, 30)
    latency = trivial.reply["_t"] - sent
    record = fake_llm.log(model)[-1]
    print(f"trivial cell during a background stream: execute_reply after {latency * 1000:.0f} ms")
    assert trivial.status == "ok" and latency < 1.0  # measured: a few ms
    assert not record["completed"], "the stream ended before the trivial cell replied"

    waited = kernel.run_ok(  # one cell: the answer cannot end between the checks and the await
        "print(type(x).__name__, x is _llm, x.done, x.finish_reason, x.state in "
        "('waiting', 'streaming'), str(x) == x.text, repr(x).startswith('Pending('))\n"
        "handle = x\n"
        "r = await x\n"
        "print(type(r).__name__, r.finish_reason, type(x).__name__, type(_llm).__name__, "
        "x is r, _llm is r, handle.response is r, len(r))"
    ).stdout()
    expected = text_of(40)
    length = str(len(expected))
    before, after = waited.splitlines()
    assert before.split() == ["Pending", "True", "False", "None", "True", "True", "True"]
    assert after.split() == ["Response", "stop", "Response", "Response", *["True"] * 3, length]
    assert kernel.run_ok("print(repr(str(x)))").stdout().strip() == repr(expected)
    assert fake_llm.log(model)[-1]["completed"]
    # the view kept streaming after the cell's reply, then became the static answer
    late = [
        m
        for m in kernel.custom_messages(comm_id)
        if m["type"] in ("update", "reset") and m["_t"] > execution.reply["_t"]
    ]
    assert late and late[-1]["chunks"] == 40
    final = final_display(kernel, display_id)
    assert final["text/plain"] == expected and 'data-finish-reason="stop"' in final["text/html"]


@pytest.mark.kernel
def test_two_background_cells_stream_at_once_and_stop_stops_only_its_own(llm_kernel, fake_llm):
    kernel = llm_kernel
    stopped_model, _, stopped_comm, stopped_display = start_bg(kernel, fake_llm, 400, 0.02, "a")
    other_model, _, _, other_display = start_bg(kernel, fake_llm, 60, 0.05, "b")
    streaming(fake_llm, stopped_model, 10)
    streaming(fake_llm, other_model, 3)  # both stream at the same time
    assert not fake_llm.log(stopped_model)[-1]["completed"]

    clicked_wall = time.time()
    kernel.send_custom(stopped_comm, {"event": "stop"})
    record = fake_llm.wait_for_disconnect(stopped_model, timeout=10)
    latency = record["disconnected_at"] - clicked_wall
    print(f"Stop click on a background view → server saw disconnect: {latency * 1000:.0f} ms")
    assert latency < 2.0  # measured: ~10 ms
    assert 10 <= record["tokens_sent"] < 400 and not record["completed"]

    kernel.run_ok(SETTLED)
    out = kernel.run_ok(
        "ra = settled(a)\nrb = settled(b)\n"
        "print(ra.finish_reason, rb.finish_reason, len(ra) > 0, len(rb), "
        "str(rb) == ''.join(f'w{i} ' for i in range(60)), type(a).__name__, type(b).__name__)"
    ).stdout()
    length = str(len(text_of(60)))
    assert out.split() == ["cancelled", "stop", "True", length, "True", "Response", "Response"]
    assert fake_llm.log(other_model)[-1]["completed"]
    assert not fake_llm.log(other_model)[-1]["client_disconnected"]
    partial = kernel.run_ok("print(repr(str(ra)))").stdout().strip()
    assert 'data-finish-reason="cancelled"' in final_display(kernel, stopped_display)["text/html"]
    assert final_display(kernel, stopped_display)["text/plain"].startswith(eval(partial))
    assert 'data-finish-reason="stop"' in final_display(kernel, other_display)["text/html"]


@pytest.mark.kernel
def test_stop_from_code_and_stop_while_a_cell_awaits(llm_kernel, fake_llm):
    kernel = llm_kernel
    # x.stop() from another cell
    model, *_ = start_bg(kernel, fake_llm, 400, 0.02, "s")
    kernel.run_ok("handle = s")  # a copy of the handle stays a handle
    streaming(fake_llm, model, 5)
    stopped_wall = time.time()
    kernel.run_ok("handle.stop()")
    record = fake_llm.wait_for_disconnect(model, timeout=10)
    latency = record["disconnected_at"] - stopped_wall
    print(f"x.stop() in a cell → server saw disconnect: {latency * 1000:.0f} ms")
    out = kernel.run_ok(
        "rs = handle.wait(10)\n"
        "print(rs.finish_reason, len(rs) > 0, type(handle).__name__, type(s).__name__, rs is s)"
    ).stdout()
    assert out.split() == ["cancelled", "True", "Pending", "Response", "True"]
    assert not record["completed"]

    # the view's Stop while a cell awaits the handle (ipykernel 6.29: heard through the pump)
    model, _, comm_id, _ = start_bg(kernel, fake_llm, 400, 0.02, "w")
    waiting = kernel.submit("rw = await w\nprint(rw.finish_reason)")
    streaming(fake_llm, model, 10)
    time.sleep(0.2)
    clicked = kernel.send_custom(comm_id, {"event": "stop"})
    record = fake_llm.wait_for_disconnect(model, timeout=10)
    kernel.wait(waiting, 30)
    latency = waiting.reply["_t"] - clicked
    print(f"Stop click while `await w` runs → that cell's reply: {latency * 1000:.0f} ms")
    assert waiting.status == "ok" and waiting.stdout().strip() == "cancelled"
    assert not record["completed"]


@pytest.mark.kernel
def test_interrupt_stops_the_running_cell_not_the_background_stream(llm_kernel, fake_llm):
    kernel = llm_kernel
    model, *_ = start_bg(kernel, fake_llm, 60, 0.04, "i")
    streaming(fake_llm, model, 2)
    sleeper = kernel.submit("import time\ntime.sleep(20)")
    time.sleep(0.5)
    kernel.interrupt()
    kernel.wait(sleeper, 20)
    assert sleeper.status == "error" and sleeper.error()["ename"] == "KeyboardInterrupt"
    kernel.run_ok(SETTLED)
    out = kernel.run_ok("ri = settled(i)\nprint(ri.finish_reason, len(ri))").stdout()
    assert out.split() == ["stop", str(len(text_of(60)))]
    assert fake_llm.log(model)[-1]["completed"]


@pytest.mark.kernel
def test_interrupt_ends_an_await_at_once_and_the_stream_goes_on(llm_kernel, fake_llm):
    """``await x`` waits in short steps: the kernel's loop sees an interrupt at once (it used
    to be seen only when the 4 s answer ended, on ipykernel 7)."""
    kernel = llm_kernel
    model, *_ = start_bg(kernel, fake_llm, 100, 0.04, "aw")
    streaming(fake_llm, model, 2)
    waiting = kernel.submit("r = await aw")
    time.sleep(0.5)
    interrupted = time.monotonic()
    kernel.interrupt()
    kernel.wait(waiting, 30)
    latency = waiting.reply["_t"] - interrupted
    print(f"interrupt during `await aw` → reply: {latency * 1000:.0f} ms")
    assert waiting.status == "error" and waiting.error()["ename"] == "KeyboardInterrupt"
    assert latency < 1.5 and not fake_llm.log(model)[-1]["completed"]
    kernel.run_ok(SETTLED)
    out = kernel.run_ok("ra = settled(aw)\nprint(ra.finish_reason, len(ra))").stdout()
    assert out.split() == ["stop", str(len(text_of(100)))]  # the stream went on


@pytest.mark.kernel
def test_ask_and_ask_sync_in_the_background(llm_kernel, fake_llm):
    kernel = llm_kernel
    first = fake_llm.script(tokens=tokens(30), delay=0.04)
    second = fake_llm.script(tokens=tokens(20), delay=0.04)
    execution = kernel.run_ok(
        "import nbstream\n"
        f"p = await nbstream.ask('hi', model='openai:{first}', background=True)\n"
        f"q = nbstream.ask_sync('hi', model='anthropic:{second}', background=True)\n"
        "print(type(p).__name__, type(q).__name__, q is _llm, p.done, q.done)",
        30,
    )
    assert execution.stdout().split() == ["Pending", "Pending", "True", "False", "False"]
    assert len([m for m in execution.messages if m["msg_type"] == "display_data"]) == 2
    out = kernel.run_ok(
        "rp, rq = await p, q.wait()\n"
        "print(rp.finish_reason, rq.finish_reason, rq.model.split(':')[0], len(rp), len(rq), "
        "type(p).__name__, p.response is rp, _llm is rq)"
    ).stdout()
    lengths = [str(len(text_of(30))), str(len(text_of(20)))]
    # the caller's own variables stay handles; `_llm` (bound by ask) became the Response
    assert out.split() == ["stop", "stop", "anthropic", *lengths, "Pending", "True", "True"]


@pytest.mark.kernel
def test_a_variable_reassigned_meanwhile_is_left_alone(llm_kernel, fake_llm):
    kernel = llm_kernel
    start_bg(kernel, fake_llm, 20, 0.04, "y")
    kernel.run_ok("handle = y\ny = 'mine'")
    out = kernel.run_ok(
        "r = handle.wait(30)\nprint(repr(y), type(_llm).__name__, _llm is r, r.finish_reason)"
    ).stdout()
    # `y` was reassigned meanwhile: kept; `_llm` still held the handle: rebound
    assert out.split() == ["'mine'", "Response", "True", "stop"]


@pytest.mark.kernel
def test_await_after_the_answer_ended(llm_kernel, fake_llm):
    kernel = llm_kernel
    start_bg(kernel, fake_llm, 3, 0.0, "ended")
    kernel.run_ok(
        "import time, nbstream\nwhile not isinstance(ended, nbstream.Response): time.sleep(0.01)"
    )
    out = kernel.run_ok("r = await ended\nr2 = ended.wait()\nprint(r is ended is r2)")
    assert out.stdout().strip() == "True"


@pytest.mark.kernel
def test_bg_with_to_cell_is_a_usage_error(llm_kernel, fake_llm):
    kernel = llm_kernel
    model = fake_llm.script(tokens=["x"])
    execution = kernel.run(f"%%llm --bg --to-cell -m openai:{model}\nhello")
    assert execution.status == "error"
    assert "UsageError: --bg cannot be combined with --to-cell" in execution.stderr()
    assert "%llm to-cell" in execution.stderr()
    assert fake_llm.log(model) == []
    # and %llm to-cell refuses an answer that is still streaming
    model, *_ = start_bg(kernel, fake_llm, 400, 0.02, "code")
    refused = kernel.run("%llm to-cell")
    assert refused.status == "error" and "still streaming in the background" in refused.stderr()
    kernel.run_ok("code.stop()")
    kernel.run_ok(SETTLED)
    out = kernel.run_ok("print(settled(code).finish_reason)").stdout()
    assert out.strip() == "cancelled"
    assert not any(r["completed"] for r in fake_llm.log(model))


@pytest.mark.kernel
def test_bg_in_a_cell_that_cannot_await(llm_kernel, fake_llm):
    """Under %%time the cell magic runs blocking: --bg still returns at once, view shown."""
    kernel = llm_kernel
    model = fake_llm.script(tokens=tokens(40), delay=0.05)
    execution = kernel.run(f"%%time\n%%llm --bg -m openai:{model} -o t\nCount.", 30)
    assert execution.status == "ok", execution.error()
    assert "Wall time" in execution.stdout()
    view_of(execution)  # shown in this cell
    assert not any(r["completed"] for r in fake_llm.log(model))
    kernel.run_ok(SETTLED)
    out = kernel.run_ok("rt = settled(t)\nprint(rt.finish_reason, len(rt))").stdout()
    assert out.split() == ["stop", str(len(text_of(40)))]


# -- in-process: a script, and the shared loop ---------------------------------------------


@pytest.fixture
def sdk_env(fake_llm, monkeypatch):
    from fake_llm_fixture import point_sdks_at

    point_sdks_at(monkeypatch, fake_llm, "sk-test-openai", "sk-ant-test")
    monkeypatch.delenv("NBSTREAM_DISPLAY", raising=False)
    return fake_llm


def test_ask_sync_background_in_a_script(sdk_env, capsys):
    fake_llm = sdk_env
    model = fake_llm.script(tokens=tokens(40), delay=0.05)
    started = time.monotonic()
    x = nbstream.ask_sync("hi", model=f"openai:{model}", background=True)
    returned = time.monotonic() - started
    print(f"\nask_sync(background=True) returned after {returned * 1000:.0f} ms")
    assert isinstance(x, Pending) and not x.done and x.finish_reason is None
    assert returned < 2.0  # the answer takes 2 s
    assert not any(r["completed"] for r in fake_llm.log(model))
    response = x.wait(30)
    assert isinstance(response, nbstream.Response) and response == text_of(40)
    assert response.finish_reason == "stop" and x.done and x.response is response
    assert x.finish_reason == "stop" and str(x) == text_of(40) and x.state == "stop"
    assert capsys.readouterr().out.count("w39") == 0  # nothing shown while it streamed

    slow = fake_llm.script(tokens=tokens(400), delay=0.02)
    y = nbstream.ask_sync("hi", model=f"openai:{slow}", background=True)
    streaming(fake_llm, slow, 5)
    stopped = time.time()
    y.stop()
    record = fake_llm.wait_for_disconnect(slow, timeout=10)
    print(
        f"x.stop() → server saw disconnect: {(record['disconnected_at'] - stopped) * 1000:.0f} ms"
    )
    cancelled = y.wait(10)
    assert cancelled.finish_reason == "cancelled" and 0 < len(cancelled) < len(text_of(400))
    assert not record["completed"]
    y.stop()  # again, after the end: nothing happens


def test_state_says_stopping_at_once_after_stop(sdk_env):
    fake_llm = sdk_env
    slow = fake_llm.script(tokens=tokens(400), delay=0.02)
    y = nbstream.ask_sync("hi", model=f"openai:{slow}", background=True)
    streaming(fake_llm, slow, 3)
    assert y.state == "streaming"
    from nbstream.background import run_in_background

    async def hog() -> None:  # holds the background loop: the stop cannot be carried out yet
        time.sleep(0.5)

    hogging = run_in_background(hog)
    time.sleep(0.05)
    y.stop()
    assert y.state == "stopping"  # at once, not "streaming" until the loop gets to it
    hogging.result(5)
    assert y.wait(10).finish_reason == "cancelled" and y.state == "cancelled"


def test_bg_magic_in_terminal_ipython_shows_nothing_and_rebinds(sdk_env, ip, capsys):
    fake_llm = sdk_env
    model = fake_llm.script(tokens=tokens(20), delay=0.03)
    ip.run_cell_magic("llm", f"--bg -m openai:{model} -o term", "hello")
    handle = ip.user_ns["term"]
    assert isinstance(handle, Pending) and ip.user_ns["_llm"] is handle
    response = handle.wait(30)
    assert ip.user_ns["term"] is response and ip.user_ns["_llm"] is response
    assert response == text_of(20) and response.finish_reason == "stop"
    assert "w19" not in capsys.readouterr().out  # nothing printed over the prompt


def test_a_schema_reask_streams_in_the_background(sdk_env):
    fake_llm = sdk_env
    model = fake_llm.script(texts=['{"a": "no"}', '{"a": 1}'], token_size=3, delay=0.01)
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    x = nbstream.ask_sync("give a", model=f"openai:{model}", schema=schema, background=True)
    response = x.wait(30)
    assert response.finish_reason == "stop" and response.data == {"a": 1}
    assert x.text == '{"a": 1}' and len(fake_llm.log(model)) == 2


def test_wait_times_out_and_await_works_from_another_loop(sdk_env):
    fake_llm = sdk_env
    model = fake_llm.script(tokens=tokens(30), delay=0.05)

    async def main() -> tuple[Pending, nbstream.Response]:
        x = await nbstream.ask("hi", model=f"openai:{model}", background=True)
        with pytest.raises(TimeoutError, match="still"):
            x.wait(0.1)
        return x, await x

    x, response = asyncio.run(main())
    assert response.finish_reason == "stop" and response == text_of(30)
    assert x.response is response and "state='stop'" in repr(x)
    assert "finished" in x._repr_markdown_()


def test_run_in_background_keeps_the_callers_context_and_reports_errors():
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("caller")

    async def read() -> tuple[str, str]:
        await asyncio.sleep(0)
        return var.get(), threading.current_thread().name

    assert run_in_background(read).result(5) == ("caller", background.THREAD_NAME)

    async def fail() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        run_in_background(fail).result(5)

    cancelled = threading.Event()  # set on the background loop when the coroutine is cancelled

    async def forever() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    future = run_in_background(forever)
    time.sleep(0.1)
    assert future.cancel()
    assert cancelled.wait(5), "cancelling the future did not cancel the coroutine"


def test_bad_background_value_is_a_type_error():
    with pytest.raises(TypeError, match="background must be True or False"):
        nbstream.ask_sync("hi", background="yes", display="none")  # type: ignore[call-overload]
