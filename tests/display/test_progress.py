"""The progress display of one batch (:mod:`nbstream.display.progress`), in-process.

The widget is a real anywidget whose comm is a recording one (``comm.create_comm`` is the
documented place to plug a comm implementation in); displays are captured by IPython's own
``capture_output`` in the test process's shell (the ``ip`` fixture).
"""

from __future__ import annotations

import asyncio
import io
import itertools
import sys
import threading
import time
from typing import Any

import comm
import pytest
from IPython.utils.capture import capture_output
from ipywidgets.widgets.widget import _instances as widget_instances

from nbstream import Response
from nbstream.display.progress import (
    PANE_CHARS,
    HtmlProgress,
    NullProgress,
    Tally,
    TextProgress,
    WidgetProgress,
    count_words,
    format_seconds,
    make_progress,
    progress_bundle,
)

# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def comms(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every comm message the widgets send (open, update, custom, close), in order."""
    log: list[dict[str, Any]] = []

    class RecordingComm(comm.DummyComm):
        def publish_msg(self, msg_type: str, data: Any = None, *args: Any, **keys: Any) -> None:
            log.append({"type": msg_type, "comm_id": self.comm_id, "data": data})

    monkeypatch.setattr(comm, "create_comm", RecordingComm)
    return log


def state_updates(log: list[dict[str, Any]], comm_id: str) -> list[dict[str, Any]]:
    """The ``state`` of each update message of one widget."""
    return [
        m["data"]["state"]
        for m in log
        if m["comm_id"] == comm_id and m["type"] == "comm_msg" and m["data"]["method"] == "update"
    ]


def stop_click(progress: WidgetProgress) -> None:
    """What the kernel does with the browser's ``model.send({event: "stop"})``."""
    msg = {"content": {"data": {"method": "custom", "content": {"event": "stop"}}}, "buffers": []}
    progress.view.comm.handle_msg(msg)


def ended_tally(**fields: Any) -> Tally:
    return Tally(**{"started": 100.0, "ended": 109.8, **fields})


# -- the tally ------------------------------------------------------------------------------


def test_summary_wording():
    t = ended_tally(total=1000, done=990, cached=12, failed=10, output_tokens=31204, cost=0.0123)
    assert t.finished == 1000 and t.state == "failed"
    assert round(t.tokens_per_second) == 3184
    assert t.summary() == (
        "1,000 rows · 990 done (12 cached) · 10 failed · 0 cancelled · 31,204 tokens · 9.8 s"
        " · 3,184 tok/s · $0.0123"
    )
    t = ended_tally(total=5, done=2, cancelled=1, model="openai:m", mode="batch", cost=None)
    assert t.state == "stopped" and t.eta is None  # ended early: no ETA
    assert t.summary().startswith("openai:m · 5 rows (provider batch) · 2 done · 0 failed")
    assert t.summary().endswith("· cost unknown")


def test_eta_and_rate_from_finished_rows():
    now = time.monotonic()
    t = Tally(total=1000, started=now - 10.0, running=32)
    assert t.eta is None  # nothing finished yet
    t.done, t.cached = 50, 50
    assert t.eta is None  # replayed rows finish at once: no pace to extrapolate from
    t.done = 150  # 100 streamed rows in ~10 s: 850 left at ~10 rows/s
    assert t.eta == pytest.approx(85.0, rel=0.05)
    t.failed, t.cancelled = 20, 30  # failed and cancelled rows count as finished too
    assert t.finished == 200 and t.eta == pytest.approx(800 * 10 / 150, rel=0.05)
    assert t.elapsed == pytest.approx(10.0, abs=0.5) and t.state == "running"
    t.output_tokens = 20_000
    assert t.tokens_per_second == pytest.approx(2000, rel=0.05)
    words = count_words(t)
    assert words.startswith("200/1,000 · 50 cached · 20 failed · 30 cancelled · 32 running")
    t.done = 950
    assert t.eta == 0.0
    assert format_seconds(9.84) == "9.8 s" and format_seconds(125) == "2 min 05 s"
    assert format_seconds(3725) == "1 h 02 min"


def test_record_counts_rows_and_an_unknown_cost_makes_the_total_unknown():
    t = Tally(total=6)
    usage = {"input_tokens": 5, "output_tokens": 7}
    t.record(Response("a", finish_reason="stop", usage=usage, cost=0.01))
    t.record(Response("b", finish_reason="length", chunks=3, cost=0.02))
    t.record(Response("c", finish_reason="stop", chunks=4, cost=0.0, cached=True))
    assert (t.done, t.cached, t.output_tokens) == (3, 1, 14)
    assert t.cost == pytest.approx(0.03)
    t.record(Response("", finish_reason="error", error="boom", cost=None))
    t.record(Response("d", finish_reason="cancelled", chunks=1, cost=0.5))
    assert (t.failed, t.cancelled, t.finished) == (1, 1, 5)
    assert t.cost is None  # once unknown, for good
    assert "cost unknown" in count_words(t) and t.summary().endswith("cost unknown")


# -- the widget -----------------------------------------------------------------------------


def test_ten_thousand_refreshes_make_at_most_ten_messages_a_second(ip, comms):
    tally = Tally(total=10_000, model="t:m", running=32)
    with capture_output():
        progress = WidgetProgress(tally)
    comm_id = progress.view.comm.comm_id
    fired_at: list[float] = []  # the throttle's own clock at each push (no wall-time bound)
    push = progress._pacer._push

    def recorded_push() -> None:
        fired_at.append(progress._pacer._last)
        push()

    progress._pacer._push = recorded_push

    async def batch() -> float:
        start = time.monotonic()
        for i in range(10_000):
            tally.done += 1
            tally.output_tokens += 3
            tally.pane_title, tally.pane_text = f"row {i}", f"answer {i}"
            progress.refresh()
            if i % 100 == 99:
                await asyncio.sleep(0.01)  # ~1 s in all, the loop's timers run meanwhile
        return time.monotonic() - start

    duration = asyncio.run(batch())
    live = state_updates(comms, comm_id)
    rate = len(live) / duration
    print(f"{len(live)} messages in {duration:.2f} s: {rate:.1f}/s, {progress.bytes_sent} bytes")
    # Counted, not timed: however busy the machine, pushes are at least the interval apart
    # (10/s at most) and there are some (the batch lasts >= 1 s of sleeps).
    assert len(live) == len(fired_at) >= 5, (len(live), duration)
    gaps = [b - a for a, b in itertools.pairwise(fired_at)]
    assert min(gaps) >= progress._pacer.interval - 0.002, gaps
    assert progress._pacer.interval >= 0.1
    assert progress.updates == len(live)
    assert all("counts" in state for state in live)  # one message carries everything
    tally.running = 0
    with capture_output():
        progress.close()
    final = state_updates(comms, comm_id)[len(live) :]
    assert len(final) == 1  # the final state always arrives, as one message
    counts = final[0]["counts"]
    assert counts["finished"] == 10_000 and counts["ended"] and counts["state"] == "finished"
    # the browser has the last pane text (in the final message, or in the last live one
    # when the final state did not change it: a widget sends changed traits only)
    sent = [state["pane_text"] for state in state_updates(comms, comm_id) if "pane_text" in state]
    assert sent[-1] == "answer 9999"
    assert progress.updates == len(live) + 2  # + the static bundle
    with capture_output():
        progress.refresh()  # after close: nothing
    assert len(state_updates(comms, comm_id)) == len(live) + 1


def test_without_a_loop_updates_are_synchronous_and_rate_limited(ip, comms):
    tally = Tally(total=100)
    with capture_output():
        progress = WidgetProgress(tally)
        end = time.monotonic() + 0.35
        calls = 0
        while time.monotonic() < end:
            tally.running = calls % 7
            progress.refresh()
            calls += 1
    live = state_updates(comms, progress.view.comm.comm_id)
    assert calls > 1000 and 3 <= len(live) <= 5, (calls, len(live))
    with capture_output():
        progress.close()


def test_the_pane_travels_only_when_it_changed_and_is_cut(ip, comms):
    # a stopped clock (``ended``): only what the test changes differs between pushes
    tally = ended_tally(total=3, pane_title="row 0", pane_text="first")
    with capture_output():
        progress = WidgetProgress(tally, interval=0.0)
    comm_id = progress.view.comm.comm_id
    tally.running = 1
    progress.refresh()
    tally.pane_text = "x" * 5000 + "<script>alert(1)</script>"
    tally.pane_title = "row 1"
    progress.refresh()
    progress.refresh()  # nothing changed: no message at all
    states = state_updates(comms, comm_id)
    assert [sorted(s) for s in states] == [["counts"], ["pane_text", "pane_title"]]
    text = states[1]["pane_text"]
    assert len(text) == PANE_CHARS and text.startswith("…") and text.endswith("</script>")
    with capture_output():
        progress.close()


def test_close_leaves_a_static_summary_and_no_widget(ip, comms):
    before = set(widget_instances)
    tally = Tally(total=4, model="t:m", running=2, note="rate limited <HTTP 429>")
    with capture_output() as shown:
        progress = WidgetProgress(tally, on_stop=lambda: None)
        view_id = progress.view.comm.comm_id
        layout_id = progress.view.layout.comm.comm_id
        assert set(widget_instances) - before == {view_id, layout_id}
        tally.done, tally.failed, tally.running, tally.output_tokens = 3, 1, 0, 40
        tally.cost = 0.5
        tally.pane_title, tally.pane_text = "row <3>", "fine</pre><script>alert(1)</script>"
        progress.close()
        progress.close()  # idempotent
    first, last = shown.outputs[0], shown.outputs[-1]
    assert len(shown.outputs) == 2
    assert first.transient["display_id"] == progress.display_id and not first.update
    assert "application/vnd.jupyter.widget-view+json" in first.data
    assert first.data["text/plain"] == repr(progress.view)
    assert repr(progress.view) == "[nbstream: a batch of 4 rows; its summary replaces this line]"
    assert last.update and last.transient["display_id"] == progress.display_id
    assert last.data["text/plain"] == tally.summary()
    assert tally.summary().startswith("t:m · 4 rows · 3 done · 1 failed · 0 cancelled · 40 tokens")
    html = last.data["text/html"]
    assert "<script" not in html.lower() and "&lt;script&gt;" in html
    assert "row &lt;3&gt;" in html and "rate limited &lt;HTTP 429&gt;" in html
    assert "3 done · 1 failed · 0 cancelled" in html and '<progress max="4" value="4">' in html
    assert 'data-state="failed"' in html and "<style>" in html
    # the final state reached the widget before it closed; then both comms closed
    assert state_updates(comms, view_id)[-1]["counts"]["ended"] is True
    closed = {m["comm_id"] for m in comms if m["type"] == "comm_close"}
    opened = {m["comm_id"] for m in comms if m["type"] == "comm_open"}
    assert opened == closed == {view_id, layout_id}
    assert set(widget_instances) == before


def test_stop_calls_on_stop_once_from_any_thread(ip, comms):
    calls: list[str] = []
    with capture_output():
        progress = WidgetProgress(Tally(total=10), on_stop=lambda: calls.append("stop"))
    assert progress.view.stoppable
    threads = [threading.Thread(target=stop_click, args=(progress,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop_click(progress)
    assert calls == ["stop"] and progress.stop_requested
    with capture_output():
        quiet = WidgetProgress(Tally(total=10))  # no on_stop: no button, clicks ignored
        stop_click(quiet)
        assert not quiet.view.stoppable and not quiet.stop_requested
        progress.close()
        quiet.close()


# -- the other flavours ---------------------------------------------------------------------


def test_html_updates_are_throttled_and_escaped(ip):
    tally = Tally(total=50, model="t:m")
    with capture_output() as shown:
        progress = HtmlProgress(tally)

        async def batch() -> float:
            start = time.monotonic()
            for i in range(50):
                tally.done += 1
                tally.pane_text = f"<img src=x onerror=alert({i})>"
                progress.refresh()
                await asyncio.sleep(0.02)
            return time.monotonic() - start

        duration = asyncio.run(batch())
        progress.close()
    updates = [o for o in shown.outputs if o.update]
    assert 3 <= len(updates) <= duration / 0.5 + 3, (len(updates), duration)
    assert progress.updates == len(updates)
    for output in shown.outputs:
        assert "<img" not in output.data["text/html"]
    assert "&lt;img src=x onerror=alert(49)&gt;" in updates[-1].data["text/html"]
    assert updates[-1].data["text/plain"] == tally.summary()
    assert updates[0].data["text/plain"].startswith("[nbstream: ")


def test_text_line_is_rewritten_in_place_at_its_throttle(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    tally = Tally(total=100, running=8)
    progress = TextProgress(tally)

    async def batch() -> None:
        for i in range(60):
            tally.done += 1
            tally.note = "rate limited (HTTP 429): new requests wait 2 s" if i < 10 else ""
            progress.refresh()
            await asyncio.sleep(0.01)

    asyncio.run(batch())
    tally.running = 0
    progress.close()
    err = capsys.readouterr().err
    assert err.startswith("\rnbstream: ") and err.endswith("\n") and err.count("\n") == 1
    lines = err.split("\r")[1:]
    assert 2 <= len(lines) <= 5, lines  # ~0.6 s at one line per 0.25 s, plus the summary
    assert "rate limited" in lines[0] and "running" in lines[0]
    assert lines[-1] == f"nbstream: {tally.summary()}".ljust(len(lines[-2])) + "\n"
    assert all(len(b) >= len(a.rstrip()) for a, b in itertools.pairwise(lines))  # padded over


def test_make_progress_picks_the_flavour(ip, comms, monkeypatch):
    import nbstream.kernel

    tally = Tally(total=1)
    assert isinstance(make_progress("none", tally), NullProgress)
    assert isinstance(make_progress("text", tally), TextProgress)
    with pytest.raises(ValueError, match="unknown display 'fancy'"):
        make_progress("fancy", tally)

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    assert isinstance(make_progress("auto", tally), TextProgress)
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # piped, e.g. a script's log
    assert isinstance(make_progress("auto", tally), NullProgress)

    monkeypatch.setattr(nbstream.kernel, "in_kernel", lambda shell=None: True)
    with capture_output():
        shown = [make_progress("auto", tally), make_progress("widget", tally)]
        shown.append(make_progress("html", tally))
        monkeypatch.setitem(sys.modules, "anywidget", None)  # not installed
        shown.append(make_progress("auto", tally))
        for progress in shown:
            progress.close()
    assert [type(p) for p in shown] == [WidgetProgress, WidgetProgress, HtmlProgress, HtmlProgress]


def test_live_bundle_shows_clocks_and_the_pane_open():
    tally = Tally(total=10, done=4, running=2, pane_title="row 5", pane_text="so far")
    tally.started -= 2.0
    bundle = progress_bundle(tally, final=False)
    assert "4/10 · 2 running" in bundle["text/plain"] and "ETA" in bundle["text/plain"]
    pane = '<details class="nbstream-progress-pane" open><summary>row 5</summary>'
    assert pane in bundle["text/html"]
    assert 'data-state="running"' in bundle["text/html"]


def test_a_stopped_batch_does_not_read_as_finished():
    from nbstream.display.progress import Tally, progress_bundle, widget_counts

    tally = Tally(total=24, mode="stream", model="openai:m")
    tally.done, tally.cancelled = 3, 21
    tally.ended = tally.started + 1.0
    html = progress_bundle(tally, final=True)["text/html"]
    assert '<progress max="24" value="3">3/24</progress>' in html  # not full: 3 answered
    assert 'data-state="stopped"' in html
    assert widget_counts(tally)["answered"] == 3 and widget_counts(tally)["finished"] == 24
