#!/usr/bin/env python
"""Benchmark: one prompt over 1,000 rows with ``nbstream.map`` in a real kernel.

Usage::

    python bench/bench_batch.py            # 1,000 rows, 300 ms per answer, concurrency 32
    python bench/bench_batch.py --quick    # 200 rows (CI)

One fake LLM server (``tests/fake_llm_server.py``: every answer is 10 tokens 30 ms apart,
~300 ms) and ONE real ipykernel (``tests/kernel_harness.py`` time-stamps every iopub
message). The batch runs in the background (``nbstream.map(..., background=True)``) with
the progress widget, the real ``openai`` SDK and real HTTP; while it runs, the benchmark
executes a trivial cell every 0.5 s and times its reply. Runs:

1. **clean**: every request answers. Wall time (the batch's own clock, first request to
   last answer) against the ideal ``rows × 0.3 s / concurrency``.
2. **429**: the server refuses every 10th request with HTTP 429 and ``Retry-After: 1``;
   every row must still finish (none lost).

Printed (and written to ``bench/results-batch.md`` unless ``--out -``): wall time and its
ratio to the ideal, trivial-cell latency (median / max), frontend traffic during the batch
(iopub messages and bytes, the most in any one second), the kernel's memory (max RSS before
and after), rows finished. Claims are printed PASS/FAIL, never asserted; the exit status is
0 when every run completed with every row accounted for.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fake_llm_server import FakeLLMServer  # noqa: E402
from kernel_harness import KernelSession  # noqa: E402

TOKENS = 10
DELAY = 0.03  # 10 tokens, 30 ms apart: ~300 ms per answer
ANSWER_SECONDS = TOKENS * DELAY
CONCURRENCY = 32
PUSH_TYPES = frozenset({"comm_msg", "update_display_data", "display_data", "comm_open"})
LIVE_TYPES = frozenset({"comm_msg", "update_display_data"})  # updates, not the setup
PROBE_EVERY = 0.5  # seconds between trivial cells (each one takes the kernel's main thread)


def value(execution: Any) -> Any:
    """The JSON printed by the last line of a cell."""
    return json.loads(execution.stdout().strip().splitlines()[-1])


def run_batch(
    kernel: KernelSession, model: str, rows: int, display: str = "widget"
) -> dict[str, Any]:
    kernel.run_ok(  # warm up: the SDK's import (~1 s) belongs to no batch but the first
        "import json, resource, nbstream\n"
        f"await nbstream.map(['warm up'], '{{item}}', model='openai:{model}', "
        "display='none', cache='off')\n"
        "rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss"
    )
    start_msgs = len(kernel.iopub)
    t0 = time.monotonic()
    kernel.run_ok(
        f"job = await nbstream.map([f'row {{i}}' for i in range({rows})], 'Say {{item}}', "
        f"model='openai:{model}', concurrency={CONCURRENCY}, background=True, cache='off', "
        f"display={display!r})"
    )
    latencies: list[float] = []
    while True:
        asked = time.monotonic()
        done = kernel.run_ok("print(json.dumps(job.done))")
        latencies.append(time.monotonic() - asked)
        if value(done):
            break
        if time.monotonic() - t0 > 600:
            raise TimeoutError("the batch did not end in 10 minutes")
        time.sleep(PROBE_EVERY)
    t_end = time.monotonic()
    report = value(
        kernel.run_ok(
            "res = job.wait()\n"
            "print(json.dumps({'elapsed': job.tally.elapsed, 'ok': sum(r.ok for r in res),"
            " 'rows': len(res), 'summary': job.tally.summary(),"
            " 'failed': [r.error for r in res if not r.ok][:3],"
            " 'rss0': rss0, 'rss1': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))"
        )
    )
    window = [m for m in kernel.iopub[start_msgs:] if t0 <= m["_t"] <= t_end]
    pushes = [m for m in window if m["msg_type"] in PUSH_TYPES]
    per_second: dict[int, int] = {}
    for m in pushes:
        if m["msg_type"] not in LIVE_TYPES:
            continue
        second = int(m["_t"] - t0)
        per_second[second] = per_second.get(second, 0) + 1
    report.update(
        latency_median=statistics.median(latencies),
        latency_max=max(latencies),
        latency_n=len(latencies),
        pushes=len(pushes),
        push_bytes=sum(len(json.dumps(m["content"], default=str)) for m in pushes),
        peak_per_second=max(per_second.values(), default=0),
        ideal=rows * ANSWER_SECONDS / CONCURRENCY,
    )
    kernel.run_ok("del job, res")
    return report


def run_in_process(server: FakeLLMServer, model: str, rows: int, tmp: str) -> dict[str, Any]:
    """The same batch with ``map_sync`` in this process: the library alone, no kernel."""
    import os
    import resource

    os.environ.update(
        OPENAI_API_KEY="sk-bench",
        OPENAI_BASE_URL=server.openai_base_url,
        NBSTREAM_HISTORY=str(Path(tmp) / "history-in-process.sqlite"),
    )
    import nbstream

    nbstream.map_sync(["warm up"], "{item}", model=f"openai:{model}", display="none", cache="off")
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    job = nbstream.map_sync(
        [f"row {i}" for i in range(rows)],
        "Say {item}",
        model=f"openai:{model}",
        concurrency=CONCURRENCY,
        cache="off",
        display="none",
        background=True,
    )
    results = job.wait()
    return {
        "elapsed": job.tally.elapsed,
        "ok": sum(r.ok for r in results),
        "rows": len(results),
        "latency_median": float("nan"),
        "latency_max": float("nan"),
        "latency_n": 0,
        "pushes": 0,
        "push_bytes": 0,
        "peak_per_second": 0,
        "rss0": rss0,
        "rss1": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "ideal": rows * ANSWER_SECONDS / CONCURRENCY,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 rows (CI)")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--display", default="widget", help="the progress display")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results-batch.md"))
    args = parser.parse_args(argv)
    rows = args.rows or (200 if args.quick else 1000)
    results: dict[str, dict[str, Any]] = {}
    ok = True
    with tempfile.TemporaryDirectory() as tmp, FakeLLMServer() as server:
        env = {
            "OPENAI_API_KEY": "sk-bench",
            "OPENAI_BASE_URL": server.openai_base_url,
            "NBSTREAM_HISTORY": str(Path(tmp) / "history.sqlite"),
            "NBSTREAM_CACHE_DIR": str(Path(tmp) / "cache"),
        }
        with KernelSession(env=env) as kernel:
            clean = server.script(tokens=["word "] * TOKENS, delay=DELAY)
            results["clean"] = run_batch(kernel, clean, rows, args.display)
            limited = server.script(
                tokens=["word "] * TOKENS,
                delay=DELAY,
                status=429,
                status_every=10,
                retry_after="1",
            )
            results["429"] = run_batch(kernel, limited, rows, args.display)
            refused = sum(1 for r in server.log(limited) if r["status"] == 429)
            results["429"]["refused"] = refused
        in_process = server.script(tokens=["word "] * TOKENS, delay=DELAY)
        results["clean, in-process"] = run_in_process(server, in_process, rows, tmp)
    lines = [
        f"# Batch benchmark ({dt.date.today()}, {platform.python_version()}, "
        f"{platform.machine()}, {rows} rows, {ANSWER_SECONDS * 1000:.0f} ms per answer, "
        f"concurrency {CONCURRENCY})",
        "",
        "| run | wall | ideal | ratio | rows ok | trivial cell median / max | pushes (peak/s) "
        "| bytes | kernel max RSS before → after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    claims = []
    for name, r in results.items():
        ratio = r["elapsed"] / r["ideal"]
        lines.append(
            f"| {name} | {r['elapsed']:.2f} s | {r['ideal']:.2f} s | {ratio:.3f} | "
            f"{r['ok']}/{r['rows']} | {r['latency_median'] * 1000:.0f} / "
            f"{r['latency_max'] * 1000:.0f} ms ({r['latency_n']} cells) | {r['pushes']} "
            f"({r['peak_per_second']}/s) | {r['push_bytes']:,} | {r['rss0'] / 1024:.0f} → "
            f"{r['rss1'] / 1024:.0f} MB |"
        )
        ok = ok and r["ok"] == r["rows"] == rows
        if name.startswith("clean"):
            claims.append(
                (f"{name}: wall time within 10 % of the ideal", ratio <= 1.10, f"{ratio:.3f}")
            )
        if name.endswith("in-process"):
            continue
        claims.append(
            (
                f"{name}: trivial cell answers in < 100 ms (median)",
                r["latency_median"] < 0.1,
                f"{r['latency_median'] * 1000:.0f} ms",
            )
        )
        claims.append(
            (
                f"{name}: ≤ ~10 widget updates per second",
                r["peak_per_second"] <= 12,
                f"{r['peak_per_second']}/s",
            )
        )
    for name, r in results.items():
        claims.append((f"{name}: no lost rows", r["ok"] == rows, f"{r['ok']}/{rows}"))
    lines.append("")
    lines.append(f"429 run: the server refused {results['429']['refused']} requests with 429.")
    lines.append("")
    for claim, passed, shown in claims:
        lines.append(f"- {'PASS' if passed else 'FAIL'} {claim}: {shown}")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out != "-" and not args.quick:
        Path(args.out).write_text(text, encoding="utf-8")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
