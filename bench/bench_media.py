"""The cost of a figure in a prompt: encoding a 1600×1200 matplotlib figure and building each
provider's request with it.

    python bench/bench_media.py [--repeat 7]

For each provider: ``compose`` (the figure → PNG → attachment; drawn at the provider's size,
1568 px for Anthropic, as ``make_stream`` does), fitting it to the provider's limits and the
provider's request body (base64 and all), timed together; median and max of ``--repeat``
runs after one warm-up. The goal is ≤ 150 ms. Also prints whether two encodings of the same
figure are byte-identical (the replay cache depends on it). It asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import matplotlib  # noqa: E402

matplotlib.use("agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from nbstream.prompts.interpolate import compose  # noqa: E402
from nbstream.prompts.media import RENDER_MAX_SIDE  # noqa: E402
from nbstream.providers import anthropic_messages, gemini, openai_chat  # noqa: E402
from nbstream.providers.base import Request  # noqa: E402
from nbstream.run import fit_parts  # noqa: E402

GOAL_MS = 150.0


def figure() -> object:
    rng = np.random.default_rng(7)
    fig, axes = plt.subplots(2, 2, figsize=(16, 12), dpi=100)
    for ax in axes.flat:
        ax.plot(rng.normal(size=2000).cumsum())
        ax.scatter(rng.normal(size=300), rng.normal(size=300), s=4)
        ax.set_title("a panel")
    return fig


def build(provider: str, fig: object) -> object:
    caps = {"openai": openai_chat.CAPABILITIES, "anthropic": anthropic_messages.CAPABILITIES,
            "gemini": gemini.CAPABILITIES}[provider]  # fmt: skip
    side = RENDER_MAX_SIDE.set(caps.image_max_side)  # as make_stream does
    try:
        composed = compose("What does this show? {fig}", {"fig": fig})
    finally:
        RENDER_MAX_SIDE.reset(side)
    parts, _ = fit_parts(composed.parts, provider, caps)
    request = Request(prompt=composed.text, model="m", parts=parts)
    if provider == "openai":
        body = openai_chat.request_options(request, official=True)
    elif provider == "anthropic":
        body = anthropic_messages.request_options(request)
    else:
        body = gemini.request_config(request)
    return body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    fig = figure()
    first = compose("{fig}", {"fig": fig}).attachments[0]
    again = compose("{fig}", {"fig": fig}).attachments[0]
    print(
        f"1600×1200 figure → PNG {first.width}×{first.height}, {len(first.data) / 1024:.0f} KB; "
        f"two encodings identical: {first.data == again.data}\n"
    )
    values = {"x": "hello", "n": 3}
    started = time.perf_counter()
    for _ in range(5_000):
        compose("Review: {x} ({n} stars)", values)
    per = (time.perf_counter() - started) / 5_000 * 1e6
    print(f"filling a two-field text prompt (every map row does): {per:.1f} µs\n")
    print("| provider | encode + fit + request, median | max | verdict |")
    print("|---|---|---|---|")
    for provider in ("openai", "anthropic", "gemini"):
        build(provider, fig)  # warm-up
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            build(provider, fig)
            times.append((time.perf_counter() - started) * 1000)
        median = statistics.median(times)
        verdict = "PASS" if median <= GOAL_MS else "FAIL"
        print(f"| {provider} | {median:.0f} ms | {max(times):.0f} ms | {verdict} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
