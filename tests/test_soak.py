"""No answer outlives its variables: a soak in one real kernel.

500 answers in live widget views and 5 batches with their progress views, then ``del``: the
live StreamView / sink / Stream / Request / Response / Job objects return to the baseline.
(anywidget turns an ``_esm``/``_css`` given as a *path* into a class-level file watcher that
connects one callback per view, so every view — and its sink, stream and answer — lived as
long as the class: anywidget issue #929. nbstream passes its bundles as text.)
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.kernel

NAMES = ("StreamView", "ProgressView", "WidgetSink", "Stream", "Request", "Response", "Job")
COUNT = """
import gc, json, os
def _live_counts():
    gc.collect()
    names = ("StreamView", "ProgressView", "WidgetSink", "Stream", "Request", "Response", "Job")
    counts = dict.fromkeys(names, 0)
    for obj in gc.get_objects():
        name = type(obj).__name__
        if name in counts and type(obj).__module__.startswith("nbstream"):
            counts[name] += 1
    with open("/proc/self/statm") as f:
        counts["rss_mb"] = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return counts
"""


def test_500_answers_and_5_batches_leave_nothing_alive_after_del(llm_kernel, fake_llm):
    model = fake_llm.script(tokens=["word "] * 40)
    kernel = llm_kernel
    kernel.run_ok(COUNT)
    kernel.run_ok(
        "import nbstream\n"
        f"for _ in range(3): _w = await nbstream.ask('warm', model='openai:{model}', "
        "display='widget')\n"
        f"_j = await nbstream.map([1, 2], 'row {{item}}', model='openai:{model}')\n"
        "del _w, _j\n"
        "_base = _live_counts()"
    )
    kernel.run_ok(
        "answers = []\n"
        "for i in range(500):\n"
        f"    answers.append(await nbstream.ask(f'q {{i}}', model='openai:{model}', "
        "display='widget'))\n"
        "jobs = []\n"
        "for b in range(5):\n"
        f"    jobs.append(await nbstream.map(list(range(20)), 'b{{b}} {{item}}', "
        f"model='openai:{model}'))\n"
        "_during = _live_counts()",
        timeout=600,
    )
    out = kernel.run_ok(
        "del answers, jobs, i, b\n"
        "_llm = None\n"
        "_after = _live_counts()\n"
        "print(json.dumps({'base': _base, 'during': _during, 'after': _after}))"
    )
    counts = json.loads(out.stdout().strip().splitlines()[-1])
    base, during, after = counts["base"], counts["during"], counts["after"]
    print(counts)
    assert during["Response"] >= 500  # the answers were alive while named
    for name in (
        "StreamView",
        "ProgressView",
        "WidgetSink",
        "Stream",
        "Request",
        "Response",
        "Job",
    ):
        assert after[name] <= base[name], (name, base, after)
