#!/usr/bin/env python
"""Benchmark: ``nbstream.map`` over a 100,000-row DataFrame in one real kernel.

Usage::

    python bench/bench_map_100k.py                 # 100,000 rows, concurrency 256, 1 s answers
    python bench/bench_map_100k.py --rows 20000 --out -

One fake LLM server (``tests/fake_llm_server.py``; every answer echoes its prompt in 10
tokens 100 ms apart: ~1 s, streamed or whole) and ONE real ipykernel
(``tests/kernel_harness.py`` time-stamps every iopub message). In the kernel:
``out = await nbstream.map(df, "Say {q}", model="openai:…", concurrency=256)`` with the
progress widget and the map's defaults (resume state on: one pack file, history on).

Printed (and written to ``bench/results-map-100k.md`` unless ``--out -``):

* wall time (the batch's own clock) against the ideal ``N × t / c``: goal within 15 %;
* the kernel's memory: resident before the batch and its peak during it (VmHWM, reset
  before the batch): goal < 300 MB of growth;
* the progress view's messages per second (the most in any one second): goal ≤ 10;
* every row answered, in order (each answer echoes its own row's prompt);
* the files the batch left in the cache folder (goal: one).

Claims are printed PASS/FAIL, never asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fake_llm_server import FakeLLMServer  # noqa: E402
from kernel_harness import KernelSession  # noqa: E402

TOKENS = 10
DELAY = 0.1
CONCURRENCY = 256
LIVE_TYPES = frozenset({"comm_msg", "update_display_data"})

CELL = """
import json, os, time, pandas as pd, nbstream
def status(name):
    for line in open('/proc/self/status'):
        if line.startswith(name):
            return int(line.split()[1]) / 1024
    return float('nan')
df = pd.DataFrame({{'q': [f'row {{i}}' for i in range({rows})]}})
await nbstream.map(['warm up'], '{{item}}', model='openai:{model}', display='none', cache='off')
with open('/proc/self/clear_refs', 'w') as f:
    f.write('5')  # reset VmHWM: the peak is this batch's
rss0 = status('VmRSS:')
cpu0 = time.process_time()
t_map = time.monotonic()
out = await nbstream.map(df, 'Say {{q}}', model='openai:{model}', concurrency={concurrency})
t_map = time.monotonic() - t_map
cpu_map = time.process_time() - cpu0
"""

REPORT = """
answers = list(out['answer'])
print(json.dumps({
    'rss0': rss0, 'peak': status('VmHWM:'), 'rss1': status('VmRSS:'),
    'rows': len(out), 'ok': sum(r.ok for r in answers),
    'in_order': all(str(r) == f'echo: Say row {i}' for i, r in enumerate(answers)),
    'same_index': list(out.index) == list(df.index), 'wall': t_map, 'cpu': cpu_map,
}))
"""


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results-map-100k.md"))
    args = parser.parse_args(argv)
    ideal = args.rows * TOKENS * DELAY / args.concurrency
    with tempfile.TemporaryDirectory() as tmp, FakeLLMServer() as server:
        cache_dir = Path(tmp) / "cache"
        env = {
            "OPENAI_API_KEY": "sk-bench",
            "OPENAI_BASE_URL": server.openai_base_url,
            "NBSTREAM_HISTORY": str(Path(tmp) / "history.sqlite"),
            "NBSTREAM_CACHE_DIR": str(cache_dir),
        }
        model = server.script(echo=True, tokens=["w"] * TOKENS, delay=DELAY)
        with KernelSession(env=env) as kernel:
            kernel.run_ok("import nbstream")
            start = len(kernel.iopub)
            t0 = time.monotonic()
            cell = CELL.format(rows=args.rows, model=model, concurrency=args.concurrency)
            server_cpu0 = process_cpu(server.pid)
            kernel.run_ok(cell, timeout=ideal * 3 + 300)
            server_cpu = process_cpu(server.pid) - server_cpu0
            report = json.loads(kernel.run_ok(REPORT).stdout().strip().splitlines()[-1])
            wall = report["wall"]
            window = [m for m in kernel.iopub[start:] if m["msg_type"] in LIVE_TYPES]
        per_second: dict[int, int] = {}
        for m in window:
            second = int(m["_t"] - t0)
            per_second[second] = per_second.get(second, 0) + 1
        files = sorted(p.name for p in cache_dir.rglob("*") if p.is_file())
        history_mb = (Path(tmp) / "history.sqlite").stat().st_size / 1e6
    growth = report["peak"] - report["rss0"]
    peak_rate = max(per_second.values(), default=0)
    lines = [
        f"# map over {args.rows:,} rows in one kernel (bench/bench_map_100k.py)",
        "",
        f"Measured {dt.date.today()} on {os.cpu_count()} cores, python "
        f"{platform.python_version()}: answers of {TOKENS} tokens {DELAY * 1000:.0f} ms apart "
        f"(t = {TOKENS * DELAY:.1f} s), concurrency {args.concurrency}, the progress widget, "
        "the map's defaults (resume file and history on).",
        "",
        "| measure | value | goal | verdict |",
        "|---|---|---|---|",
        f"| wall time (the map call) | {wall:.1f} s (ideal N·t/c {ideal:.1f} s: "
        f"{wall / ideal:.3f}×) "
        f"| ≤ 1.15× | {'PASS' if wall <= ideal * 1.15 else 'FAIL'} |",
        f"| kernel memory | {report['rss0']:.0f} MB before, peak {report['peak']:.0f} MB "
        f"(+{growth:.0f} MB), {report['rss1']:.0f} MB after | < +300 MB | "
        f"{'PASS' if growth < 300 else 'FAIL'} |",
        f"| progress messages | {len(window):,} in all, at most {peak_rate} in one second "
        f"| ≤ 10/s | {'PASS' if peak_rate <= 10 else 'FAIL'} |",
        f"| rows answered, in order | {report['ok']:,}/{args.rows:,}, in order: "
        f"{report['in_order'] and report['same_index']} | all | "
        f"{'PASS' if report['ok'] == args.rows and report['in_order'] else 'FAIL'} |",
        f"| files in the cache folder | {len(files)} ({', '.join(files)[:80]}) | 1 | "
        f"{'PASS' if len(files) == 1 else 'FAIL'} |",
        f"| history file | {history_mb:.1f} MB | (prunable: `%llm history --prune`) | |",
        f"| CPU during the map | kernel {report['cpu']:.0f} s "
        f"({report['cpu'] / args.rows * 1000:.2f} ms a row), test server {server_cpu:.0f} s, "
        f"on {os.cpu_count()} cores | | |",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out != "-":
        Path(args.out).write_text(text, encoding="utf-8")
    return 0 if report["ok"] == args.rows else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
