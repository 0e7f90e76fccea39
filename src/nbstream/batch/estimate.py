"""A price before it starts: :func:`quote` (and ``map(..., dry_run=True)``).

The estimate's basis is stated with it. Input tokens: the prompts as ``map`` would send them
(the same filling, the system prompt included), counted by the provider's token-counting
endpoint on :data:`SAMPLE_ROWS` sampled rows where it has one (Anthropic ``count_tokens``,
OpenAI ``/v1/responses/input_tokens``, Gemini ``countTokens``; ``Capabilities.count_tokens``)
and extrapolated by characters, else (an OpenAI-compatible server without it, Ollama, no key)
as characters ÷ 4 — about right for English prose, off by up to ±25 % for
code, numbers and other languages (:data:`ERROR`).
Output tokens: ``max_tokens`` per row when given (an upper bound), else
:data:`GUESS_OUTPUT` per row (a guess; ``map(budget=…)`` recalibrates on the rows that
finish). Dollars: the model's price (:mod:`nbstream.pricing`), streamed ("realtime") and
through the provider's batch service (:data:`~nbstream.pricing.BATCH_DISCOUNT`), and 0 on
the embedded local model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from nbstream.background import run_in_background
from nbstream.batch.job import MAP_DEFAULTS
from nbstream.batch.rows import empty_rows, fill_prompts, take_rows
from nbstream.pricing import BATCH_DISCOUNT, format_cost, price_of
from nbstream.providers import capabilities
from nbstream.run import caller_namespace, make_request, plan

CHARS_PER_TOKEN = 4
ERROR = 0.25
GUESS_OUTPUT = 256
SAMPLE_ROWS = 8
"""Rows whose tokens a provider with a token-counting endpoint counts for a quote."""


@dataclass(frozen=True)
class Quote:
    """What a ``map`` would cost, estimated before anything is sent."""

    model: str
    rows: int
    """Rows that would be sent (rows skipped for missing values are not)."""
    input_tokens: int
    output_tokens: int
    realtime: float | None
    """USD streamed row by row (``None``: no price known for the model)."""
    batch: float | None
    """USD through the provider's batch service (``None``: it has none, or no price)."""
    local: float
    """USD on the embedded local model: 0."""
    basis: str
    """How the numbers were made, and how far to trust them."""

    @property
    def low(self) -> float | None:
        return None if self.realtime is None else self.realtime * (1 - ERROR)

    @property
    def high(self) -> float | None:
        return None if self.realtime is None else self.realtime * (1 + ERROR)

    def __str__(self) -> str:
        batch = format_cost(self.batch) if self.batch is not None else "no batch service"
        rows = [
            f"{self.rows:,} rows on {self.model}: ~{self.input_tokens:,} tokens in, "
            f"~{self.output_tokens:,} out",
            f"  realtime (streamed): {format_cost(self.realtime)}"
            + (
                f" (range {format_cost(self.low)} – {format_cost(self.high)})"
                if self.realtime
                else ""
            ),
            f"  provider batch:      {batch}",
            f"  local model:         {format_cost(self.local)}",
            f"  basis: {self.basis}",
        ]
        return "\n".join(rows)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))


def estimate(
    prompts: list[str | None],
    model_id: str,
    *,
    system: str | None,
    max_tokens: int | None,
    prices_file: str | None = None,
    tokens_per_char: tuple[float, str] | None = None,
) -> Quote:
    """The quote for prompts already filled (``None``: a row that is not sent);
    ``tokens_per_char``: a measured ratio and how it was measured (else ÷ 4)."""
    sent = [p for p in prompts if p is not None]
    chars = sum(len(p) + len(system or "") for p in sent)
    ratio = tokens_per_char[0] if tokens_per_char else 1 / CHARS_PER_TOKEN
    tokens_in = round(chars * ratio)
    per_row = max_tokens if max_tokens is not None else GUESS_OUTPUT
    tokens_out = per_row * len(sent)
    provider = model_id.partition(":")[0]
    caps = capabilities(provider)
    price = price_of(model_id, prices_file)
    if price is None and caps.free:
        realtime: float | None = 0.0
    elif price is None:
        realtime = None
    else:
        realtime = price.cost({"input_tokens": tokens_in, "output_tokens": tokens_out})
    batch = realtime * BATCH_DISCOUNT if realtime is not None and caps.batch else None
    output_basis = (
        f"max_tokens={max_tokens} per row (an upper bound)"
        if max_tokens is not None
        else f"{GUESS_OUTPUT} tokens per row (a guess: pass max_tokens= for a bound; "
        "map(budget=…) recalibrates on the rows that finish)"
    )
    priced = (
        "no price known for this model (nbstream.pricing.set_price sets one)"
        if realtime is None
        else f"prices of {model_id}"
    )
    input_basis = (
        tokens_per_char[1]
        if tokens_per_char
        else f"the filled prompts' characters ÷ {CHARS_PER_TOKEN} (±{ERROR:.0%} for prose; "
        "code, numbers and other languages differ)"
    )
    basis = f"input: {input_basis}; output: {output_basis}; {priced}" + (
        f", batch at {BATCH_DISCOUNT:.0%} of it" if batch is not None else ""
    )
    return Quote(model_id, len(sent), tokens_in, tokens_out, realtime, batch, 0.0, basis)


def quote(
    items: Any,
    prompt: str | Callable[[Any], str],
    *,
    missing: str = "skip",
    **options: Any,
) -> Quote:
    """What ``map(items, prompt, **options)`` would cost, estimated before anything is sent:
    tokens in and out, and dollars streamed, through the provider's batch service and on the
    local model, with the estimate's basis (see the module docstring). Nothing is sent."""
    return quote_in(items, prompt, missing, options, caller_namespace())


def quote_in(
    items: Any,
    prompt: str | Callable[[Any], str],
    missing: str,
    options: dict[str, Any],
    namespace: Mapping[str, Any],
) -> Quote:
    decided = plan(dict(options), namespace=namespace, defaults=MAP_DEFAULTS)
    settings = decided.settings
    rows = take_rows(items)
    skipped = empty_rows(prompt, rows) if missing == "skip" else []
    prompts: list[str | None] = list(
        fill_prompts(
            prompt,
            rows,
            namespace,
            settings.context_budget,
            skip=skipped,
            blank_missing=missing == "send",
        )
    )
    for index in skipped:
        prompts[index] = None
    counter = decided.capabilities.count_tokens
    measured = None
    if counter is not None:
        sample = [p for p in prompts if p is not None][:SAMPLE_ROWS]
        requests = [make_request(settings, p, decided.name) for p in sample]
        try:
            counts = run_in_background(lambda: _count_all(counter, requests)).result(60)
        except Exception as exc:  # no key, no network: characters it is, and say why
            measured = None
            reason = f"; the provider's token counting failed ({type(exc).__name__})"
        else:
            chars = sum(len(r.prompt) + len(r.system or "") for r in requests) or 1
            measured = (
                sum(counts) / chars,
                f"the provider's token counting on {len(sample)} sampled rows "
                f"({sum(counts):,} tokens for {chars:,} characters), extrapolated by characters",
            )
            reason = ""
    quoted = estimate(
        prompts,
        decided.model_id,
        system=settings.system,
        max_tokens=settings.max_tokens,
        prices_file=settings.prices,
        tokens_per_char=measured,
    )
    if counter is not None and measured is None:
        quoted = replace(quoted, basis=quoted.basis + reason)
    return quoted


async def _count_all(counter: Any, requests: list[Any]) -> list[int]:
    return [await counter(request) for request in requests]


__all__ = ["Quote", "estimate", "quote"]
