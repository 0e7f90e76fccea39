#!/usr/bin/env python
"""Benchmark: the client's CPU for one prompt over many rows, nbstream against its peers.

Usage::

    python bench/bench_client_cpu.py                       # nbstream and the bare SDK loop
    python bench/bench_client_cpu.py --chatlas-python P    # and chatlas, from the venv of P
    python bench/bench_client_cpu.py --rows 1000 --reps 3 --out -

One fake LLM server (``tests/fake_llm_server.py``: every answer is 10 tokens 30 ms apart,
~0.3 s, streamed or whole) and, for each client and repetition, a fresh process that sends
``--rows`` prompts at concurrency 32 and reports its wall time and its CPU time (user +
system, every thread) for the batch alone (after a warm-up request):

* **nbstream**: ``nbstream.map_sync(rows, "Say {item}", model="openai:…",
  concurrency=32, display="none", cache="off")``;
* **chatlas**: ``parallel_chat_text(ChatOpenAICompletions(...), prompts, max_active=32)``
  (run with ``--chatlas-python``: a Python that has chatlas; it is not one of nbstream's
  dependencies);
* **sdk (floor)**: the bare ``openai.AsyncOpenAI().post("/chat/completions")`` loop with an
  ``asyncio.Semaphore(32)``: what any client built on the SDK pays at least.

Two scenarios: **clean**, and **429** (every 6th request answered 429 with
``Retry-After: 1``, ~16 % of them). The clients run interleaved (nbstream, chatlas, sdk,
nbstream, …) so that the machine's drift falls on all of them; medians are printed.
Claims are printed PASS/FAIL against the goals, never asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
TOKENS = 10
DELAY = 0.03
CONCURRENCY = 32

WORKER = r"""
import asyncio, json, os, resource, sys, time
client, base_url, model, rows = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
prompts = [f"Say row {i}" for i in range(rows)]

def usage():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

if client == "nbstream":
    os.environ.update(OPENAI_API_KEY="sk-bench", OPENAI_BASE_URL=base_url, NBSTREAM_HISTORY="off")
    import nbstream
    kw = dict(model=f"openai:{model}", concurrency=32, display="none", cache="off")
    nbstream.map_sync(["warm up"], "{item}", **kw)
    c0, t0 = usage(), time.monotonic()
    out = nbstream.map_sync(prompts, "{item}", **kw)
    wall, cpu = time.monotonic() - t0, usage() - c0
    ok = sum(r.ok for r in out)
elif client == "chatlas":
    import chatlas
    chat = chatlas.ChatOpenAICompletions(model=model, api_key="sk-bench", base_url=base_url)
    async def main():
        await chatlas.parallel_chat_text(chat, ["warm up"], max_active=32)
        c0, t0 = usage(), time.monotonic()
        out = await chatlas.parallel_chat_text(chat, prompts, max_active=32)
        return out, time.monotonic() - t0, usage() - c0
    out, wall, cpu = asyncio.run(main())
    ok = sum(isinstance(r, str) and r != "" for r in out)
else:
    import openai
    async def main():
        sdk = openai.AsyncOpenAI(api_key="sk-bench", base_url=base_url, max_retries=6)
        gate = asyncio.Semaphore(32)
        async def one(prompt):
            async with gate:
                body = {"model": model, "messages": [{"role": "user", "content": prompt}]}
                answer = await sdk.post("/chat/completions", body=body, cast_to=object)
                return answer["choices"][0]["message"]["content"]
        await one("warm up")
        c0, t0 = usage(), time.monotonic()
        out = await asyncio.gather(*[one(p) for p in prompts])
        return out, time.monotonic() - t0, usage() - c0
    out, wall, cpu = asyncio.run(main())
    ok = sum(bool(r) for r in out)
print(json.dumps({"wall": wall, "cpu": cpu, "ok": ok}))
"""


def run_one(python: str, client: str, base_url: str, model: str, rows: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [python, "-c", WORKER, client, base_url, model, str(rows)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{client} failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--chatlas-python", default=None, help="a Python with chatlas")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results-client-cpu.md"))
    args = parser.parse_args(argv)
    sys.path.insert(0, str(TESTS))
    from fake_llm_server import FakeLLMServer

    clients = {"nbstream": sys.executable, "sdk (floor)": sys.executable}
    if args.chatlas_python:
        clients["chatlas"] = args.chatlas_python
    ideal = args.rows * TOKENS * DELAY / CONCURRENCY
    table: dict[tuple[str, str], list[dict[str, Any]]] = {}
    with FakeLLMServer() as server:
        scenarios = {
            "clean": server.script(tokens=["word "] * TOKENS, delay=DELAY),
            "429": server.script(
                tokens=["word "] * TOKENS,
                delay=DELAY,
                status=429,
                status_every=6,
                retry_after="1",
            ),
        }
        for scenario, model in scenarios.items():
            for _ in range(args.reps):
                for name, python in clients.items():
                    kind = name.split()[0]
                    found = run_one(python, kind, server.openai_base_url, model, args.rows)
                    table.setdefault((scenario, name), []).append(found)
                    print(scenario, name, found, flush=True)
    lines = [
        f"# Client CPU over {args.rows:,} rows (bench/bench_client_cpu.py)",
        "",
        f"Measured {dt.date.today()} on {os.cpu_count()} cores, python "
        f"{platform.python_version()}; answers of {TOKENS} tokens {DELAY * 1000:.0f} ms apart, "
        f"concurrency {CONCURRENCY}: the server's floor is {ideal:.2f} s. Medians of "
        f"{args.reps} interleaved runs, each in a fresh process.",
        "",
        "| scenario | client | wall | wall / floor | CPU | CPU per row | rows ok |",
        "|---|---|---|---|---|---|---|",
    ]
    medians: dict[tuple[str, str], tuple[float, float]] = {}
    for (scenario, name), runs in table.items():
        wall = statistics.median(r["wall"] for r in runs)
        cpu = statistics.median(r["cpu"] for r in runs)
        ok = min(r["ok"] for r in runs)
        medians[scenario, name] = (wall, cpu)
        lines.append(
            f"| {scenario} | {name} | {wall:.2f} s | {wall / ideal:.3f} | {cpu:.2f} s | "
            f"{cpu / args.rows * 1000:.2f} ms | {ok}/{args.rows} |"
        )
    lines.append("")
    wall, cpu = medians["clean", "nbstream"]
    claims = [
        (f"clean: nbstream wall ≤ 1.10× the floor ({wall / ideal:.3f})", wall / ideal <= 1.10)
    ]
    if ("clean", "chatlas") in medians:
        for scenario in ("clean", "429"):
            ours, theirs = medians[scenario, "nbstream"], medians[scenario, "chatlas"]
            finished = min(r["ok"] for r in table[scenario, "chatlas"])
            if finished < args.rows:  # its SDK's retries ran out: it did less work
                lines.append(
                    f"- {scenario}: not comparable with chatlas, which finished {finished} of "
                    f"{args.rows} rows (nbstream: {ours[1]:.2f} s CPU, {ours[0]:.2f} s; the "
                    f"bare SDK loop with 6 retries: {medians[scenario, 'sdk (floor)'][0]:.2f} s)"
                )
                continue
            claims.append(
                (
                    f"{scenario}: nbstream CPU ≤ chatlas's ({ours[1]:.2f} vs {theirs[1]:.2f} s)",
                    ours[1] <= theirs[1],
                )
            )
            if scenario == "429":
                said = f"({ours[0]:.2f} vs {theirs[0]:.2f} s)"
                slower = ours[0] <= theirs[0] * 1.02
                claims.append((f"429: no slower than chatlas, within 2 % {said}", slower))
    for claim, passed in claims:
        lines.append(f"- {'PASS' if passed else 'FAIL'} {claim}")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out != "-":
        Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
