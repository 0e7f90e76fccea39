#!/usr/bin/env python
"""Benchmark: the embedded local model through nbstream against raw llama-cpp-python.

Usage::

    python bench/bench_local.py                  # 5 prompts, ~500-token answers, 3 rounds
    python bench/bench_local.py --tokens 100 --rounds 1 --out -

The same ``llama_cpp.Llama`` object (``nbstream.providers.local.load_model()``) answers each
prompt twice per round, in alternating order: once through ``nbstream.ask_sync(prompt,
model="local", max_tokens=N, display="none")`` (the engine, the provider's worker thread and
queue, the response), and once raw: ``llm.reset()`` and ``llm.create_completion(document,
stream=True, **settings)`` iterated to the end, with the document and settings nbstream's
provider builds for that request and ``max_tokens`` set to the number of tokens nbstream's
answer had (greedy decoding: the same tokens). Printed: the time per token of each (from
the first token to the last), their ratio (median over prompts and rounds; goal ≤ 1.05×),
and the whole call's ratio. Claims are printed, never asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROMPTS = [  # lists: the 270M model writes them to the 500-token limit
    "List 60 Python tips, numbered, one line each.",
    "List 70 pandas tips, numbered, one line each.",
    "List 60 SQL tips, numbered, one line each.",
    "List 80 shell tips, numbered, one line each.",
    "List 60 Git tips, numbered, one line each.",
]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results-local.md"))
    args = parser.parse_args(argv)
    os.environ.setdefault("NBSTREAM_HISTORY", "off")
    import nbstream
    from nbstream.providers import local
    from nbstream.providers.base import Request

    llm = local.load_model()
    nbstream.ask_sync("Say hi.", model="local", max_tokens=5, display="none", cache="off")

    def through_nbstream(prompt: str) -> tuple[float, float, int]:
        """Wall time, time per token after the first, tokens."""
        t0 = time.perf_counter()
        answer = nbstream.ask_sync(
            prompt, model="local", max_tokens=args.tokens, display="none", cache="off"
        )
        wall = time.perf_counter() - t0
        n = answer.output_tokens
        return wall, (answer.elapsed - (answer.ttft or 0.0)) / max(1, n - 1), n

    def raw(prompt: str, tokens: int) -> tuple[float, float, int]:
        request = Request(prompt=prompt, model="", max_tokens=tokens)
        document, settings = local.document(request), local.completion_settings(request)
        t0 = time.perf_counter()
        llm.reset()
        count, first, last = 0, 0.0, 0.0
        for _ in llm.create_completion(document, stream=True, **settings):
            last = time.perf_counter()
            first = first or last
            count += 1
        return last - t0, (last - first) / max(1, count - 1), count

    rows = []
    ratios = []
    walls = []
    for rnd in range(args.rounds):
        for prompt in PROMPTS:
            if rnd % 2 == 0:
                nb_wall, per_nb, tokens = through_nbstream(prompt)
                raw_wall, per_raw, _ = raw(prompt, tokens)
            else:  # the other order: whichever runs first pays no warm-up of the other
                _, _, tokens = through_nbstream(prompt)
                raw_wall, per_raw, _ = raw(prompt, tokens)
                nb_wall, per_nb, tokens = through_nbstream(prompt)
            ratios.append(per_nb / per_raw)
            walls.append(nb_wall / raw_wall)
            rows.append((rnd, prompt[:40], tokens, per_raw * 1e3, per_nb * 1e3, ratios[-1]))
            print(rows[-1], f"whole answer {walls[-1]:.3f}x", flush=True)
    ratio = statistics.median(ratios)
    lines = [
        "# The embedded model: nbstream vs raw llama-cpp-python (bench/bench_local.py)",
        "",
        f"Measured {dt.date.today()} on {os.cpu_count()} cores, python "
        f"{platform.python_version()}; answers up to {args.tokens} tokens, greedy, the same "
        f"`Llama` object; {args.rounds} rounds of {len(PROMPTS)} prompts, alternating order.",
        "",
        "| round | prompt | tokens | raw ms/token | nbstream ms/token | ratio |",
        "|---|---|---|---|---|---|",
        *(f"| {r} | {p}… | {n} | {a:.2f} | {b:.2f} | {c:.3f}× |" for r, p, n, a, b, c in rows),
        "",
        f"- {'PASS' if ratio <= 1.05 else 'FAIL'} time per token ≤ 1.05× raw: median "
        f"{ratio:.3f}× (min {min(ratios):.3f}×, max {max(ratios):.3f}×; mean tokens "
        f"{statistics.mean(r[2] for r in rows):.0f})",
        f"- whole answer (the call, prompt evaluation included) vs raw: median "
        f"{statistics.median(walls):.3f}×",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out != "-":
        Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
