"""What an answer cost (:mod:`nbstream.pricing`): the dated table, name matching, your own
prices, ``Response.cost`` from the usage the server reports, and ``%llm cost``."""

from __future__ import annotations

import json
import pickle

import pytest

import nbstream
from nbstream import pricing
from nbstream.errors import SettingsError
from nbstream.pricing import Price
from nbstream.settings import resolve

OPENAI_KEY = "sk-test-pricing-SECRET-0001"
PROVIDERS = ["openai", "anthropic"]


@pytest.fixture(autouse=True)
def _clean(monkeypatch, fake_llm):
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-pricing-SECRET")
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.openai_base_url)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_llm.anthropic_base_url)
    monkeypatch.delenv("NBSTREAM_PRICES", raising=False)
    pricing.clear_prices()
    pricing.reset_session()
    yield
    pricing.clear_prices()
    pricing.reset_session()


def ask(model_id, **options):
    return nbstream.ask_sync("one two three", model=model_id, display="none", **options)


# -- the table and name matching -------------------------------------------------------------


@pytest.mark.parametrize(
    "model_id, expected",
    [
        ("openai:gpt-4o-mini", (0.15, 0.60, 0.075)),
        ("openai:gpt-4o-mini-2024-07-18", (0.15, 0.60, 0.075)),  # dated snapshot
        ("openai:gpt-4o", (2.50, 10.00, 1.25)),
        ("openai:gpt-4o-2024-08-06", (2.50, 10.00, 1.25)),
        ("openai:gpt-4o-2024-05-13", (5.00, 15.00, None)),  # its own, older price
        ("openai:gpt-4.1-nano", (0.10, 0.40, 0.025)),
        ("openai:o4-mini", (1.10, 4.40, 0.275)),
        ("openai:gpt-5-mini", (0.25, 2.00, 0.025)),
        ("anthropic:claude-sonnet-4-5-20250929", (3.00, 15.00, 0.30)),
        ("anthropic:claude-sonnet-4.5", (3.00, 15.00, 0.30)),
        ("anthropic:claude-opus-4-1-20250805", (15.00, 75.00, 1.50)),
        ("anthropic:claude-opus-4-5", (5.00, 25.00, 0.50)),
        ("anthropic:claude-opus-4-0", (15.00, 75.00, 1.50)),  # alias
        ("anthropic:claude-haiku-4-5-20251001", (1.00, 5.00, 0.10)),
        ("anthropic:claude-3-5-haiku-latest", (0.80, 4.00, 0.08)),
        ("anthropic:claude-3-5-haiku-20241022", (0.80, 4.00, 0.08)),
    ],
)
def test_the_table_matches_dated_ids_and_aliases(model_id, expected):
    price = pricing.price_of(model_id)
    assert price is not None, model_id
    assert (price.input, price.output, price.cached_input) == expected


@pytest.mark.parametrize(
    "model_id",
    [
        "openai:gpt-4o-mini-realtime-preview",  # not gpt-4o-mini, and surely not gpt-4o
        "openai:gpt-9",
        "openai:my-finetune",
        "anthropic:claude-sonnet-9",
        "ollama:gpt-4o",  # a local model that happens to share a name
    ],
)
def test_a_model_nobody_priced_has_no_price(model_id):
    assert pricing.price_of(model_id) is None


def test_the_table_is_dated_and_covers_the_current_models():
    assert pricing.PRICES_TAKEN == "2026-11-25" and "2026-11-25" in (pricing.__doc__ or "")
    for name in (
        "openai:gpt-4o",
        "openai:gpt-4o-mini",
        "openai:gpt-4.1",
        "openai:gpt-4.1-mini",
        "openai:o3",
        "openai:o4-mini",
        "openai:gpt-5",
        "anthropic:claude-opus-4-1",
        "anthropic:claude-sonnet-4-5",
        "anthropic:claude-haiku-4-5",
        "anthropic:claude-3-5-haiku",
    ):
        assert name in pricing.TABLE, name
    for price in pricing.TABLE.values():
        assert 0 < price.input <= price.output
        assert price.cached_input is None or price.cached_input < price.input


def test_cost_arithmetic():
    price = Price(input=2.0, output=8.0, cached_input=0.5)
    usage = {"input_tokens": 1_000_000, "output_tokens": 500_000, "cached_input_tokens": 400_000}
    assert price.cost(usage) == pytest.approx(0.6 * 2.0 + 0.4 * 0.5 + 0.5 * 8.0)
    no_cache_price = Price(input=2.0, output=8.0)  # cached tokens are charged as input
    assert no_cache_price.cost(usage) == pytest.approx(2.0 + 4.0)


def test_unknown_is_none_never_zero_and_local_is_free():
    usage = {"input_tokens": 10, "output_tokens": 10}
    assert pricing.cost("openai:my-finetune", usage) is None
    assert pricing.cost("openai:gpt-4o", None) is None  # stopped before usage arrived
    assert pricing.cost("local:gemma3-270m", None) == 0.0
    assert pricing.cost("ollama:llama3.2", usage) == 0.0
    assert pricing.cost("openai:gpt-4o", usage, cached=True) == 0.0
    assert pricing.format_cost(None) == "unknown" and pricing.format_cost(0.0) == "$0"
    assert pricing.format_cost(0.0012) == "$0.0012" and pricing.format_cost(2.4e-5) == "$0.000024"
    assert pricing.format_cost(0.5) == "$0.5000" and pricing.format_cost(1234.5) == "$1,234.5000"


# -- your own prices ---------------------------------------------------------------------------


def test_set_price_wins_over_the_table():
    pricing.set_price("openai:gpt-4o", input=1.0, output=1.0)
    assert pricing.price_of("openai:gpt-4o-2024-08-06") == Price(1.0, 1.0, None)
    pricing.set_price("openai:my-model", 3, 4, cached_input=1)
    assert pricing.cost("openai:my-model", {"input_tokens": 10**6, "output_tokens": 0}) == 3.0
    with pytest.raises(ValueError, match="provider:model"):
        pricing.set_price("my-model", 1, 2)
    with pytest.raises(ValueError, match="input must be a finite number >= 0"):
        pricing.set_price("openai:x", -1, 2)
    assert nbstream.pricing is pricing  # reachable without importing it first


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_a_prices_file_in_json_or_toml(tmp_path, suffix):
    path = tmp_path / f"prices{suffix}"
    if suffix == ".json":
        path.write_text(
            json.dumps({"openai:my-model": {"input": 1.0, "output": 2.0, "cached_input": 0.5}})
        )
    else:
        path.write_text('["openai:my-model"]\ninput = 1.0\noutput = 2.0\ncached_input = 0.5\n')
    settings = resolve({"prices": str(path)}, {}, {})
    assert settings.prices == str(path)
    price = pricing.price_of("openai:my-model", settings.prices)
    assert price == Price(1.0, 2.0, 0.5)
    assert pricing.price_of("openai:my-model") is None  # only with the file


def test_a_bad_prices_file_is_refused_before_anything_is_sent(tmp_path, fake_llm):
    bad = tmp_path / "prices.json"
    bad.write_text('{"my-model": {"input": 1}}')
    with pytest.raises(SettingsError, match=r"\$NBSTREAM_PRICES: .*not a 'provider:model' id"):
        resolve({}, {}, {"NBSTREAM_PRICES": str(bad)})
    bad.write_text('{"openai:m": {"input": 1}}')
    with pytest.raises(SettingsError, match="output price missing"):
        resolve({"prices": str(bad)}, {}, {})
    model = fake_llm.script(tokens=["x"])
    with pytest.raises(SettingsError, match="cannot read the prices file"):
        ask(f"openai:{model}", prices=str(tmp_path / "missing.toml"))
    assert fake_llm.log(model) == []


# -- Response.cost from what the server reports ------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_cost_from_the_usage_the_server_reports(fake_llm, provider):
    usage = {"input_tokens": 2_000_000, "output_tokens": 500_000, "cached_input_tokens": 1_500_000}
    model = fake_llm.script(tokens=["a", "b"], usage=usage)
    pricing.set_price(f"{provider}:{model}", input=2.0, output=8.0, cached_input=0.2)
    r = ask(f"{provider}:{model}")
    assert r.finish_reason == "stop"
    # the same usage through both wire formats (Anthropic counts cache reads apart)
    assert r.usage == usage
    assert r.cost == pytest.approx(0.5 * 2.0 + 1.5 * 0.2 + 0.5 * 8.0)
    assert r.summary().endswith(" · $5.3000") and r.cached is False
    restored = pickle.loads(pickle.dumps(r))
    assert restored.cost == r.cost and restored.cached is False


def test_cost_of_a_table_model_from_the_default_script(fake_llm):
    # an unscripted model name gets the server's default answer: usage = prompt words, 3 tokens
    r = ask("openai:gpt-4o-mini")
    assert r.usage == {"input_tokens": 3, "output_tokens": 3}
    assert r.cost == pytest.approx((3 * 0.15 + 3 * 0.60) / 1e6)
    assert "$" in r.summary()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_unknown_model_cost_is_none_and_not_shown(fake_llm, provider):
    model = fake_llm.script(tokens=["a"], usage={"input_tokens": 5, "output_tokens": 1})
    r = ask(f"{provider}:{model}")
    assert r.finish_reason == "stop" and r.usage == {"input_tokens": 5, "output_tokens": 1}
    assert r.cost is None and "$" not in r.summary()


def test_a_stopped_answer_has_unknown_cost(fake_llm):
    model = fake_llm.script(tokens=["a"] * 50, drop_after=3)
    pricing.set_price(f"openai:{model}", 1, 1)
    r = ask(f"openai:{model}")
    assert r.finish_reason == "error" and r.usage is None and r.cost is None


# -- %llm cost ---------------------------------------------------------------------------------


def test_llm_cost_shows_the_session_total_by_model(fake_llm, ip, capsys):
    priced = fake_llm.script(tokens=["a"], usage={"input_tokens": 1000, "output_tokens": 2000})
    unpriced = fake_llm.script(tokens=["b"], usage={"input_tokens": 7, "output_tokens": 1})
    pricing.set_price(f"openai:{priced}", input=1.0, output=2.0)
    ask(f"openai:{priced}")
    ask(f"openai:{priced}")
    ask(f"openai:{unpriced}")
    ip.run_line_magic("llm", "cost")
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert lines[f"openai:{priced}"].split()[1:] == ["2", "0", "2,000", "4,000", "$0.0100"]
    assert lines[f"openai:{unpriced}"].split()[1:] == ["1", "0", "7", "1", "unknown"]
    assert lines["total"].split()[1:6] == ["3", "0", "2,007", "4,001", "$0.0100"]
    assert "1 answer(s) of unknown cost" in lines["total"] and "set_price" in out
    assert pricing.session()[f"openai:{priced}"].cost == pytest.approx(0.01)
