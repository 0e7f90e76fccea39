"""What an answer cost: the providers' dated price lists, your own prices, and the session's total.

Prices are USD per **million** tokens: ``input``, ``output`` and ``cached_input`` (prompt
tokens the provider served from its prompt cache; when a model has no cached price, cached
tokens are charged as input). Each provider declares its own list, with the date it was
taken and its source, in its module under :mod:`nbstream.providers` (``Capabilities.prices``);
the built-in lists were taken on **2026-11-25**.

Prices change: check them before you rely on a total, and override with the ``prices``
option (a TOML or JSON file) or :func:`set_price`. Lookup order: :func:`set_price` → the
``prices`` file → the provider's list. Model names match exactly, after dropping a date suffix
(``claude-sonnet-4-5-20250929``, ``gpt-4o-mini-2024-07-18``), ``-latest``, or the provider's
own spelling rule (Anthropic: ``4.5`` for ``4-5``); ``gpt-4o-mini`` is never priced as ``gpt-4o``.

A model with no price has cost ``None`` ("unknown"), never 0. A provider that runs on your
machine (``Capabilities.free``: ``local``, ``ollama``) costs 0.0; an answer replayed from the
cache costs 0.0.

Usage dicts (``Response.usage``) count ``input_tokens`` including cached ones (as OpenAI
reports them; the Anthropic provider adds its cache reads and writes to match), and
``cached_input_tokens`` when the provider reported any.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbstream.providers import capabilities, registered
from nbstream.providers.base import Price

if TYPE_CHECKING:
    from nbstream.response import Response

PRICES_TAKEN = "2026-11-25"
"""When the built-in lists were taken from the providers' pricing pages."""

_DATE_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|latest)$")

_overrides: dict[str, Price] = {}
_lock = threading.Lock()


def _normalise(model_id: str) -> str:
    provider, _, name = model_id.strip().partition(":")
    provider = provider.strip().lower()
    name = name.strip().lower()
    prices = capabilities(provider).prices
    if prices is not None and prices.spelling is not None:
        name = prices.spelling(name)
    return f"{provider}:{name}"


def _candidates(model_id: str) -> list[str]:
    """``model_id`` as given, normalised, without its date suffix, and its alias."""
    names = [model_id, _normalise(model_id)]
    stripped = _DATE_SUFFIX.sub("", names[-1])
    names.append(stripped)
    aliases = _aliases()
    names += [aliases[n] for n in list(names) if n in aliases]
    return list(dict.fromkeys(names))


def table() -> dict[str, Price]:
    """Every registered provider's price list, as ``"provider:model"`` → :class:`Price`."""
    found: dict[str, Price] = {}
    for provider, caps in registered():
        if caps.prices is not None:
            found.update({f"{provider}:{name}": p for name, p in caps.prices.table.items()})
    return found


def _aliases() -> dict[str, str]:
    found: dict[str, str] = {}
    for provider, caps in registered():
        if caps.prices is not None:
            found.update(
                {f"{provider}:{a}": f"{provider}:{n}" for a, n in caps.prices.aliases.items()}
            )
    return found


def __getattr__(name: str) -> Any:
    if name == "TABLE":  # the merged lists, as the module attribute of earlier versions
        return table()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _find(table: dict[str, Price], model_id: str) -> Price | None:
    for name in _candidates(model_id):
        if name in table:
            return table[name]
    return None


# -- your own prices -------------------------------------------------------------------------


def set_price(
    model_id: str, input: float, output: float, cached_input: float | None = None
) -> None:
    """Price ``model_id`` (``"provider:name"``) at ``input`` / ``output`` / ``cached_input``
    USD per million tokens, for this session; it wins over the ``prices`` file and the table.
    """
    provider, sep, name = model_id.partition(":")
    if not sep or not provider or not name:
        raise ValueError(f"set_price needs a 'provider:model' id, got {model_id!r}")
    price = _price_from({"input": input, "output": output, "cached_input": cached_input}, model_id)
    with _lock:
        _overrides[_normalise(model_id)] = price


def clear_prices() -> None:
    """Forget every :func:`set_price`."""
    with _lock:
        _overrides.clear()


def _price_from(entry: Any, where: str) -> Price:
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected a table of input/output/cached_input prices")
    unknown = set(entry) - {"input", "output", "cached_input"}
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    values: dict[str, float | None] = {}
    for key in ("input", "output", "cached_input"):
        value = entry.get(key)
        if value is None:
            if key != "cached_input":
                raise ValueError(f"{where}: {key} price missing (USD per million tokens)")
            values[key] = None
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: {key} must be a number, got {value!r}")
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{where}: {key} must be a finite number >= 0, got {value!r}")
        values[key] = float(value)
    assert values["input"] is not None and values["output"] is not None
    return Price(values["input"], values["output"], values["cached_input"])


_files: dict[str, tuple[float, dict[str, Price]]] = {}


def load_prices(path: str | os.PathLike[str]) -> dict[str, Price]:
    """Read a prices file (TOML or JSON, by its extension; JSON if it is neither):
    ``{"provider:model": {"input": …, "output": …, "cached_input": …}}``. Raises
    ``ValueError`` saying what is wrong. Re-read only when the file changes."""
    file = Path(path).expanduser()
    try:
        mtime = file.stat().st_mtime
    except OSError as exc:
        raise ValueError(f"cannot read the prices file {str(file)!r}: {exc.strerror}") from None
    key = str(file.resolve())
    cached = _files.get(key)
    if cached is not None and cached[0] == mtime:
        return cached[1]
    raw = file.read_bytes()
    try:
        if file.suffix.lower() == ".toml":
            data: Any = _toml(raw)
        else:
            data = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        raise ValueError(f"the prices file {str(file)!r} is not valid: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"the prices file {str(file)!r} must map 'provider:model' to prices")
    prices: dict[str, Price] = {}
    for model_id, entry in data.items():
        if ":" not in model_id:
            raise ValueError(
                f"the prices file {str(file)!r}: {model_id!r} is not a 'provider:model' id"
            )
        prices[_normalise(model_id)] = _price_from(entry, f"{file.name}: {model_id}")
    _files[key] = (mtime, prices)
    return prices


def _toml(raw: bytes) -> Any:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            tomllib = importlib.import_module("tomli")
        except ImportError:
            raise ValueError("TOML needs Python 3.11 or the tomli package; use JSON") from None
    return tomllib.loads(raw.decode("utf-8"))


# -- cost --------------------------------------------------------------------------------


BATCH_DISCOUNT = 0.5
"""What a provider batch (OpenAI Batch API, Anthropic Message Batches) costs, relative to
the same requests sent one by one."""


def price_of(model_id: str, prices_file: str | None = None) -> Price | None:
    """The price of ``"provider:name"``: :func:`set_price`, then ``prices_file``, then the
    table; ``None`` when nobody priced it."""
    with _lock:
        found = _find(_overrides, model_id)
    if found is None and prices_file:
        found = _find(load_prices(prices_file), model_id)
    return found if found is not None else _find(table(), model_id)


def cost(
    model_id: str,
    usage: dict[str, int] | None,
    *,
    cached: bool = False,
    prices_file: str | None = None,
) -> float | None:
    """USD for one answer, or ``None`` when unknown (no price, or no usage reported).
    A replayed answer (``cached``) and a local model cost 0.0."""
    if cached:
        return 0.0
    provider = model_id.partition(":")[0].strip().lower()
    price = price_of(model_id, prices_file)
    if price is None:
        return 0.0 if capabilities(provider).free else None
    if not usage:
        return None
    return price.cost(usage)


def format_cost(value: float | None) -> str:
    """``$1.2345``, ``$0.0012``, ``$0.000024`` (two significant digits below a cent),
    ``$0`` when free, ``unknown``."""
    if value is None:
        return "unknown"
    if value <= 0:
        return "$0"
    if value >= 0.01:
        return f"${value:,.4f}"
    digits = min(12, 1 - math.floor(math.log10(value)))
    return f"${value:.{digits}f}"


# -- the session's total ---------------------------------------------------------------------


@dataclass
class Tally:
    """What one model cost this session."""

    answers: int = 0
    cached: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    unknown: int = 0
    """Answers whose cost is unknown (no price, or stopped / failed before the provider
    reported usage)."""


_session: dict[str, Tally] = {}


def add_to_session(response: Response) -> None:
    """Count ``response`` in the session's total (cached answers cost nothing and their
    tokens were not billed: they are counted apart)."""
    with _lock:
        tally = _session.setdefault(response.model or "?", Tally())
        tally.answers += 1
        if response.cached:
            tally.cached += 1
            return
        usage = response.usage or {}
        tally.input_tokens += int(usage.get("input_tokens") or 0)
        tally.output_tokens += int(usage.get("output_tokens") or 0)
        if response.cost is None:
            tally.unknown += 1
        else:
            tally.cost += response.cost


def session() -> dict[str, Tally]:
    """This session's totals by model (a copy)."""
    with _lock:
        return {k: Tally(**vars(v)) for k, v in _session.items()}


def reset_session() -> None:
    with _lock:
        _session.clear()


def cost_report() -> str:
    """``%llm cost``: the session's tokens and cost by model."""
    tallies = session()
    if not tallies:
        return "no answers yet in this session"
    header = ("model", "answers", "cached", "input tok", "output tok", "cost")
    rows = []
    total = Tally()
    for model, t in sorted(tallies.items()):
        billed = t.answers - t.cached
        if billed and t.unknown == billed:
            shown = "unknown"
        else:
            shown = format_cost(t.cost) + (f" + {t.unknown} unknown" if t.unknown else "")
        counts = (str(t.answers), str(t.cached), f"{t.input_tokens:,}", f"{t.output_tokens:,}")
        rows.append((model, *counts, shown))
        for field in ("answers", "cached", "input_tokens", "output_tokens", "cost", "unknown"):
            setattr(total, field, getattr(total, field) + getattr(t, field))
    total_cost = format_cost(total.cost)
    if total.unknown:
        total_cost += f" + {total.unknown} answer(s) of unknown cost"
    sums = (str(total.answers), str(total.cached), f"{total.input_tokens:,}")
    rows.append(("total", *sums, f"{total.output_tokens:,}", total_cost))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(row: tuple[str, ...]) -> str:
        cells = [row[0].ljust(widths[0])]
        cells += [row[i].rjust(widths[i]) for i in range(1, 5)]
        cells.append(row[5])
        return "  ".join(cells)

    out = [line(header), *(line(r) for r in rows)]
    if total.unknown:
        out.append(
            "unknown: no price for the model (nbstream.pricing.set_price or the prices "
            "option), or the answer was stopped or failed before the provider reported usage"
        )
    out.append(f"prices: nbstream's table of {PRICES_TAKEN} unless you set your own")
    return "\n".join(out)


__all__ = [
    "PRICES_TAKEN",
    "Price",
    "Tally",
    "add_to_session",
    "clear_prices",
    "cost",
    "cost_report",
    "format_cost",
    "load_prices",
    "price_of",
    "reset_session",
    "session",
    "set_price",
    "table",
]
