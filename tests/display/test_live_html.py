"""Live answers without widgets (:mod:`nbstream.display.live_html`), in a real kernel."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.kernel


def html_updates(execution) -> list[str]:
    return [
        m["content"]["data"]["text/html"]
        for m in execution.messages
        if m["msg_type"] == "update_display_data"
    ]


def test_display_html_streams_throttled_html_then_the_static_answer(llm_kernel, fake_llm):
    kernel = llm_kernel
    tokens = [f"word{i} " for i in range(40)]
    model = fake_llm.script(tokens=tokens, delay=0.025)
    execution = kernel.run_ok(f"%%llm -m openai:{model} --display html -o ans\nCount.", 30)
    assert not any(m["msg_type"] == "comm_open" for m in execution.messages)  # no widget
    updates = html_updates(execution)
    elapsed = float(kernel.run_ok("print(ans.elapsed)").stdout())
    # grows as it streams, a few updates per second on the kernel's clock, then the answer
    assert 3 <= len(updates) <= elapsed / 0.25 + 3, (len(updates), elapsed)
    assert "word0" in updates[0] and "streaming" in updates[0]
    lengths = [len(u) for u in updates[:-1]]
    assert lengths == sorted(lengths)
    final = kernel.outputs(execution)[0]["data"]
    assert "word39" in final["text/html"] and 'data-finish-reason="stop"' in final["text/html"]
    assert final["text/plain"] == "".join(tokens)


def test_auto_falls_back_to_html_when_no_view_renders(llm_kernel, fake_llm):
    """A kernel with no front end: the widget's view never asks to sync, so after a few
    seconds the answer streams as HTML updates instead (what Colab without custom widgets
    or a Quarto renderer would show)."""
    kernel = llm_kernel
    model = fake_llm.script(tokens=[f"t{i} " for i in range(90)], delay=0.05)
    execution = kernel.run_ok(f"%%llm -m openai:{model}\nCount.", 30)
    assert any(m["msg_type"] == "comm_open" for m in execution.messages)  # a widget first
    live = [u for u in html_updates(execution) if "streaming" in u]
    # 90 tokens over ~4.5 s: HTML from ~3 s on, at ~4 updates/s, growing
    assert len(live) >= 3, len(live)
    assert len(live[-1]) > len(live[0]) and "t59" in live[0] + live[-1]
    final = kernel.outputs(execution)[0]["data"]
    assert "t89" in final["text/html"]


def test_show_prompt_keeps_the_prompt_as_sent(llm_kernel, fake_llm):
    kernel = llm_kernel
    model = fake_llm.script(tokens=["ok"])
    kernel.run_ok("topic = 'entropy <b>'")
    execution = kernel.run_ok(f"%%llm -m openai:{model} --show-prompt\nExplain {{topic}}.", 30)
    html = kernel.outputs(execution)[0]["data"]["text/html"]
    assert '<details class="nbstream-prompt">' in html
    assert "Explain entropy &lt;b&gt;." in html  # interpolated, and escaped
    assert fake_llm.log(model)[-1]["body"]["messages"][-1]["content"] == "Explain entropy <b>."


ABSENT = r"""
import sys
sys.modules["anywidget"] = None  # import anywidget -> ImportError, as when not installed
import nbstream
from nbstream.providers.base import Final

async def echo(request):
    for word in ("Hello ", "without ", "widgets."):
        yield word
    yield Final("stop")

nbstream.register_provider("echo", echo)
r = nbstream.ask_sync("hi", model="echo", display="html", history="off")
print("ANSWER", r.finish_reason, r.text)
rows = nbstream.map_sync(["a", "b"], "{item}", model="echo", display="html", history="off",
                         cache="off")
print("ROWS", [x.text for x in rows])
print("ANYWIDGET", "anywidget" in sys.modules and sys.modules["anywidget"] is not None)
"""


def test_live_html_and_the_progress_display_work_without_anywidget():
    """The displays that need no widget do not import one (HtmlSink used to import the
    widget module, and with it anywidget: ModuleNotFoundError)."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", ABSENT], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ANSWER stop Hello without widgets." in done.stdout
    assert "ROWS ['Hello without widgets.', 'Hello without widgets.']" in done.stdout
    assert "ANYWIDGET False" in done.stdout
