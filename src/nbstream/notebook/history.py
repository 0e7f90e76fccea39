"""``%llm history [N] [--search TEXT]``: the history file as a table in the notebook."""

from __future__ import annotations

import argparse
import shlex
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass
from nbstream.pricing import format_cost
from nbstream.retention import parse_cap, prune
from nbstream.settings import configured, resolve
from nbstream.store import _configured_path, flush, read

# -- %llm history --------------------------------------------------------------------------------


def _short(text: str | None, width: int) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def format_table(rows: list[dict[str, Any]]) -> str:
    """A compact table: id, when (local time), model, ending, tokens, cost, prompt → answer."""

    header = ("id", "when", "model", "ending", "tokens in/out", "cost", "prompt → answer")
    lines = []
    for r in rows:
        when = datetime.fromisoformat(r["created"]).astimezone().strftime("%Y-%m-%d %H:%M")
        ending = r["finish_reason"] + (" (cached)" if r["cached"] else "")
        tokens = "-"
        if r.get("input_tokens") is not None or r.get("output_tokens") is not None:
            tokens = f"{r.get('input_tokens') or 0}/{r.get('output_tokens') or 0}"
        answer = r["text"] or (f"[{r['error']}]" if r.get("error") else "")
        calls = r.get("tool_calls") or []
        if calls:  # e.g. "[ran load_sales, refused drop_region] The answer"
            done = (f"{c.get('decision') or ''} {c.get('name') or ''}".strip() for c in calls)
            answer = f"[{', '.join(done)}] {answer}"
        lines.append(
            (
                str(r["id"]),
                when,
                r["model"] or "",
                ending,
                tokens,
                format_cost(r["cost"]),
                f"{_short(r['prompt'], 40)} → {_short(answer, 40)}",
            )
        )
    widths = [max(len(x[i]) for x in [header, *lines]) for i in range(len(header) - 1)]
    out = []
    for row in [header, *lines]:
        middle = [c.ljust(w) for c, w in zip(row[1:-1], widths[1:], strict=True)]
        cells = [row[0].rjust(widths[0]), *middle]
        out.append("  ".join([*cells, row[-1]]))
    return "\n".join(out)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # raise, don't print usage and exit
        raise ValueError(message)


def history_command(line: str) -> str:
    """``%llm history [N] [--search TEXT]``: the report, as text."""
    parser = _Parser(prog="%llm history", add_help=False)
    parser.add_argument("n", nargs="?", type=int, default=20)  # 1 or more
    parser.add_argument("--search", "-s", default=None)
    parser.add_argument("--all", action="store_true")
    parser.add_argument("--prune", nargs="?", const="", default=None)
    try:
        args = parser.parse_args(shlex.split(line))
    except ValueError as exc:
        raise ValueError(
            f"%llm history [N] [--search TEXT] [--all] [--prune [CAP]]: {exc}"
        ) from None
    if args.prune is not None:
        return prune_command(args.prune)
    if args.n < 1:
        raise ValueError(
            f"%llm history {args.n}: N is how many recent answers to show (1 or more); "
            "--all shows every answer"
        )
    file = _configured_path()
    if file is None:
        return "the history is off (history option / $NBSTREAM_HISTORY is 'off')"
    rows = read(file, None if args.all else args.n, args.search)
    if not rows:
        found = f" matching {args.search!r}" if args.search else ""
        return f"no answers{found} in {file}"
    return format_table(rows) + f"\n({len(rows)} answer(s) from {file})"


def prune_command(cap: str) -> str:
    """``%llm history --prune [CAP]``: prune now by ``CAP`` or the ``history_cap`` option."""
    settings = resolve({}, configured())
    cap = cap or settings.history_cap or ""
    if not cap:
        return (
            "give a cap: %llm history --prune 90d (answers older than 90 days) or --prune "
            "200MB (the oldest beyond 200 MB), or set %config LLMMagics.history_cap"
        )
    file = _configured_path()
    if file is None or not file.exists():
        return "no history file to prune"
    flush(file)
    return f"{file}: {prune(file, parse_cap(cap))}"


__all__ = ["format_table", "history_command", "prune_command"]
