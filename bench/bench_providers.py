"""CPU per token of each HTTP provider, through its real SDK, against the test server.

    python bench/bench_providers.py [--answers 20] [--tokens 500]

One fake server (``tests/fake_llm_server.py``) streams ``--tokens`` tokens with no delay;
each provider answers ``--answers`` times through ``nbstream.ask_sync`` (display none, no
history, no cache). Prints the wall and CPU time per answer and the CPU per token, best of
the answers' median — the SDKs' parsing cost is what differs. It asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import nbstream  # noqa: E402
from fake_llm_server import FakeLLMServer  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--answers", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=500)
    args = parser.parse_args()
    server = FakeLLMServer().start()
    try:
        os.environ.update(
            OPENAI_API_KEY="sk-bench",
            OPENAI_BASE_URL=server.openai_base_url,
            ANTHROPIC_API_KEY="sk-ant-bench",
            ANTHROPIC_BASE_URL=server.anthropic_base_url,
            GEMINI_API_KEY="AIza-bench",
            GOOGLE_GEMINI_BASE_URL=server.gemini_base_url,
            NBSTREAM_HISTORY="off",
        )
        model = server.script(tokens=[f"w{i} " for i in range(args.tokens)])
        print(f"{args.answers} answers of {args.tokens} tokens each, per provider\n")
        print("| provider | wall / answer | CPU / answer | CPU / token |")
        print("|---|---|---|---|")
        for provider in ("openai", "anthropic", "gemini"):
            nbstream.ask_sync("warm up", model=f"{provider}:{model}", display="none")
            walls, cpus = [], []
            for _ in range(args.answers):
                wall, cpu = time.perf_counter(), time.process_time()
                r = nbstream.ask_sync("go", model=f"{provider}:{model}", display="none")
                cpus.append(time.process_time() - cpu)
                walls.append(time.perf_counter() - wall)
                assert r.finish_reason == "stop", r.error
            wall_ms = statistics.median(walls) * 1000
            cpu_ms = statistics.median(cpus) * 1000
            per_token = cpu_ms * 1000 / args.tokens
            print(f"| {provider} | {wall_ms:.1f} ms | {cpu_ms:.1f} ms | {per_token:.1f} µs |")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
