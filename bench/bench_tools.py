"""The cost of a tool round: from the end of the model's call to the next request.

    python bench/bench_tools.py [--answers 30]

One fake server (``tests/fake_llm_server.py``) answers each question with one tool call
(its arguments streamed in 8-character pieces), then with text. For every answer and each
provider, the overhead is the time from the server's last byte of round 1 (``finished_at``)
to its receipt of round 2 (``received_at``), minus the time the tool itself ran: parsing the
call, checking the arguments, deciding, rendering the result, building and sending the next
request. Prints the median and the 90th percentile; the goal is a median ≤ 5 ms. It
asserts nothing.

The server paces its chunks (``--pace``, default 5 ms apart: 200 tokens/s, faster than
hosted models stream). Unpaced, every chunk of round 1 arrives at once and the overhead
also counts the client still parsing the earlier ones when the last byte lands: ~2 ms more
for Gemini, whose SDK spends ~150 µs per chunk (bench_providers.py), and 0.4 ms for OpenAI.
``--pace 0`` shows that figure too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import nbstream  # noqa: E402
from fake_llm_server import FakeLLMServer  # noqa: E402
from nbstream.tools import tool  # noqa: E402

GOAL_MS = 5.0


@tool(approve=False)
def lookup_price(item: str, quantity: int = 1) -> dict:
    """The price of an item.

    Args:
        item: What to price.
        quantity: How many.
    """
    return {"item": item, "total": 2.5 * quantity}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--answers", type=int, default=30)
    parser.add_argument("--pace", type=float, default=0.005, help="seconds between chunks")
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
        call = {"name": "lookup_price", "arguments": '{"item": "tea", "quantity": 4}'}
        print(
            f"{args.answers} answers of 2 rounds each, chunks {args.pace * 1000:g} ms apart, "
            f"per provider (goal: median ≤ {GOAL_MS} ms)\n"
        )
        print("| provider | overhead median | p90 | tool's own time (median) | verdict |")
        print("|---|---|---|---|---|")
        for provider in ("openai", "anthropic", "gemini"):
            overheads, tool_times = [], []
            for i in range(args.answers + 1):  # the first one warms up
                model = server.script(
                    answers=[{"text": "Checking.", "tool_calls": [call]}, {"text": "It is 10."}],
                    delay=args.pace,
                )
                r = nbstream.ask_sync(
                    "Price?", model=f"{provider}:{model}", display="none", tools=[lookup_price]
                )
                assert r.finish_reason == "stop" and r.tool_calls, (r.error, r.tool_calls)
                first, second = server.log(model)
                ran = float(r.tool_calls[0]["elapsed"])
                if i:
                    overheads.append((second["received_at"] - first["finished_at"] - ran) * 1000)
                    tool_times.append(ran * 1000)
            median = statistics.median(overheads)
            p90 = statistics.quantiles(overheads, n=10)[-1]
            verdict = "PASS" if median <= GOAL_MS else "FAIL"
            print(
                f"| {provider} | {median:.2f} ms | {p90:.2f} ms | "
                f"{statistics.median(tool_times):.3f} ms | {verdict} |"
            )
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
