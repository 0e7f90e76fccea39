"""A price before it starts and a budget while it runs: quote(), map(dry_run=, budget=),
--max-cost on a stream, and the kernel-wide budget; through the real SDKs to the test server."""

from __future__ import annotations

import pytest

import nbstream
from fake_llm_fixture import point_sdks_at
from nbstream import pricing

PRICE = pricing.Price(input=1_000.0, output=2_000.0)  # USD per million: $0.001 / $0.002 a token


@pytest.fixture(autouse=True)
def _setup(monkeypatch, fake_llm, tmp_path):
    point_sdks_at(monkeypatch, fake_llm, "sk-spend-openai", "sk-ant-spend")
    monkeypatch.setenv("NBSTREAM_HISTORY", "off")
    monkeypatch.setenv("NBSTREAM_CACHE_DIR", str(tmp_path / "cache"))
    pricing.reset_session()
    yield
    pricing.clear_prices()
    pricing.reset_session()


def test_quote_states_tokens_dollars_and_its_basis(fake_llm, monkeypatch):
    """A server without a token-counting endpoint: characters ÷ 4, and the quote says why."""
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.url + "/no-counting/v1")
    pricing.set_price("openai:quoted", input=1_000.0, output=2_000.0)
    rows = ["x" * 400] * 10  # 100 tokens in each
    q = nbstream.quote(rows, "{item}", model="openai:quoted", max_tokens=50)
    assert (q.rows, q.input_tokens, q.output_tokens) == (10, 1_000, 500)
    assert q.realtime == pytest.approx(1_000 * 0.001 + 500 * 0.002)
    assert q.batch == pytest.approx(q.realtime / 2) and q.local == 0.0
    assert "÷ 4" in q.basis and "upper bound" in q.basis and "batch at 50%" in q.basis
    assert "token counting failed" in q.basis
    text = str(q)
    assert "10 rows on openai:quoted" in text and "$2.0000" in text
    assert [r for r in fake_llm.log("quoted") if "count" not in r["path"]] == []  # nothing sent
    dry = nbstream.map_sync(rows, "{item}", model="openai:quoted", max_tokens=50, dry_run=True)
    assert dry == q


def test_a_quote_without_a_price_says_so():
    q = nbstream.quote(["a"], "{item}", model="openai:unpriced-model")
    assert q.realtime is None and "no price known" in q.basis
    assert nbstream.quote(["a"], "{item}", model="local").realtime == 0.0


def test_map_stops_starting_rows_at_the_budget(fake_llm):
    pricing.set_price("openai:budgeted", input=1_000.0, output=2_000.0)
    model = fake_llm.script(name="budgeted", tokens=["ok"], usage={"input_tokens": 100,
                            "output_tokens": 100})  # fmt: skip
    rows = [f"{i:03d}" + "y" * 397 for i in range(10)]  # each row: $0.1 + $0.2 = $0.30
    out = nbstream.map_sync(
        rows, "{item}", model=f"openai:{model}", max_tokens=100, budget=1.0, concurrency=1
    )
    done = [r for r in out if r.finish_reason == "stop"]
    left = [r for r in out if r.finish_reason == "cancelled"]
    assert len(done) == 3 and len(left) == 7  # 3 × $0.30 spent; a 4th would pass $1
    assert all("budget of $1" in r.error for r in left)
    assert len(fake_llm.log(model)) == 3
    assert sum(r.cost for r in done) == pytest.approx(0.9)


def test_a_provider_batch_over_the_budget_is_not_submitted(fake_llm):
    pricing.set_price("openai:batchy", input=1_000.0, output=2_000.0)
    with pytest.raises(ValueError, match=r"over the budget of \$0.5"):
        nbstream.map_sync(["z" * 400] * 10, "{item}", model="openai:batchy", max_tokens=100,
                          mode="batch", budget=0.5)  # fmt: skip


def test_max_cost_ends_a_stream_whose_estimate_passes_it(fake_llm):
    pricing.set_price("openai:capped", input=1_000.0, output=2_000.0)
    model = fake_llm.script(name="capped", tokens=["t "] * 100, delay=0.005)
    r = nbstream.ask_sync("hi", model=f"openai:{model}", display="none", max_cost=0.02)
    assert r.finish_reason == "length"
    assert 5 <= r.chunks <= 11  # $0.002 per token: the 10th passes $0.02
    assert len(r) < 200 and r.startswith("t t")
    assert fake_llm.wait_for_disconnect(model)["client_disconnected"]  # closed upstream


def test_max_cost_needs_a_price():
    with pytest.raises(nbstream.SettingsError, match="no price is known"):
        nbstream.ask_sync("hi", model="openai:nobody-priced-me", display="none", max_cost=1.0)


def test_the_kernel_budget_warns_at_80_percent_and_refuses_at_100(fake_llm):
    pricing.set_price("openai:kb", input=1_000.0, output=2_000.0)
    model = fake_llm.script(
        name="kb", tokens=["ok"], usage={"input_tokens": 400, "output_tokens": 0}
    )  # fmt: skip — $0.40 an answer
    ask = {"model": f"openai:{model}", "display": "none", "kernel_budget": 1.0}
    nbstream.ask_sync("a", **ask)
    nbstream.ask_sync("b", **ask)  # $0.80 spent
    with pytest.warns(RuntimeWarning, match=r"over 80 % of its \$1 budget"):
        nbstream.ask_sync("c", **ask)  # $1.20 spent after it
    with pytest.raises(nbstream.SettingsError, match=r"spent \$1.2000 of its \$1 budget"):
        nbstream.ask_sync("d", **ask)
    assert len(fake_llm.log(model)) == 3


def test_map_keeps_its_resume_state_in_one_file(fake_llm, tmp_path):
    cache_dir = tmp_path / "cache"
    model = fake_llm.script(tokens=["a"])
    rows = [f"row {i}" for i in range(20)]
    first = nbstream.map_sync(rows, "{item}", model=f"openai:{model}", concurrency=4)
    assert all(r.ok for r in first)
    files = sorted(p.name for p in cache_dir.iterdir())
    assert len(files) == 1 and files[0].startswith("map-") and files[0].endswith(".jsonl")
    assert len((cache_dir / files[0]).read_text().splitlines()) == 20
    again = nbstream.map_sync(rows, "{item}", model=f"openai:{model}", concurrency=4)
    assert all(r.cached for r in again) and [str(r) for r in again] == ["a"] * 20
    assert len(fake_llm.log(model)) == 20  # the re-run sent nothing
    explicit = nbstream.map_sync(rows[:3], "{item}", model=f"openai:{model}", cache="auto")
    assert all(r.cached is False for r in explicit)  # another file layout: not in the pack
    assert len(list(cache_dir.glob("*.json"))) == 3  # cache= chosen: one committable file each


def test_a_pack_survives_a_cut_last_line(tmp_path):
    from nbstream.cache import Pack

    path = tmp_path / "map-x.jsonl"
    path.write_text('{"key": "k1", "deltas": ["a"], "finish_reason": "stop", "model": "m"}\n'
                    '{"key": "k2", "deltas": ["b"], "fin')  # fmt: skip
    pack = Pack(path)
    assert len(pack) == 1 and pack.get("k1").deltas == ["a"] and pack.get("k2") is None


COUNTING_PATHS = {
    "openai": "/v1/responses/input_tokens",
    "anthropic": "/v1/messages/count_tokens",
    "gemini": "/v1beta/models/counted-gemini:countTokens",
}


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
def test_quote_uses_the_providers_token_counting(fake_llm, provider):
    name = f"counted-{provider}"
    pricing.set_price(f"{provider}:{name}", input=1_000.0, output=2_000.0)
    rows = [f"word {i:02d} " * 30 for i in range(20)]  # 60 words a row, all as long
    q = nbstream.quote(rows, "{item}", model=f"{provider}:{name}", max_tokens=10)
    log = fake_llm.log(name)
    counted = [r for r in log if r["path"] == COUNTING_PATHS[provider]]
    assert len(counted) == 8 and len(log) == 8  # the sampled rows; nothing else was sent
    assert "token counting on 8 sampled rows" in q.basis
    # the server counts 60 words × 4/3 + 3 = 83 tokens a row: extrapolated to 20 rows
    assert q.input_tokens == pytest.approx(20 * 83, rel=0.02)
    assert nbstream.quote(rows, "{item}", model="ollama:x").basis.startswith("input: the filled")
