"""``nbstream.map`` / ``map_sync`` / ``Job`` (:mod:`nbstream.batch`), in-process, through the
real SDKs against the local fake server."""

from __future__ import annotations

import asyncio
import json
import time

import pandas as pd
import pytest
from pydantic import BaseModel

import nbstream
from fake_llm_fixture import point_sdks_at
from nbstream import batch


@pytest.fixture
def sdks(fake_llm, monkeypatch, tmp_path):
    point_sdks_at(monkeypatch, fake_llm, "sk-batch-test-key", "sk-ant-batch-test-key")
    monkeypatch.setenv("NBSTREAM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NBSTREAM_DISPLAY", "none")
    return fake_llm


def prompts_sent(server, model):
    return [r["body"]["messages"][-1]["content"] for r in server.log(model)]


def test_bad_arguments_are_refused_before_anything_is_sent(sdks):
    with pytest.raises(ValueError, match="concurrency must be an int from 1 to 256"):
        nbstream.map_sync(["x"], "{item}", concurrency=0)
    with pytest.raises(ValueError, match="rpm must be a positive int"):
        nbstream.map_sync(["x"], "{item}", rpm=0)
    with pytest.raises(ValueError, match="mode must be 'stream' or 'batch'"):
        nbstream.map_sync(["x"], "{item}", mode="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="leave chat out"):
        nbstream.map_sync(["x"], "{item}", chat="t")
    with pytest.raises(nbstream.SettingsError, match="temperature"):
        nbstream.map_sync(["x"], "{item}", temperature=7)
    with pytest.raises(TypeError, match=r"unknown keyword.*temprature"):
        nbstream.map_sync(["x"], "{item}", temprature=1)  # type: ignore[call-arg]


# -- streaming rows -------------------------------------------------------------------------------


def test_results_come_back_in_input_order_with_bounded_concurrency(sdks):
    model = sdks.script(tokens=["ok"], first_delay=0.3)
    items = [f"row {i}" for i in range(8)]
    results = nbstream.map_sync(items, "Say {item}", model=f"openai:{model}", concurrency=2)
    assert [r.prompt for r in results] == [f"Say row {i}" for i in range(8)]
    assert all(isinstance(r, nbstream.Response) and r == "ok" and r.ok for r in results)
    received = sorted(r["received_at"] for r in sdks.log(model))
    assert len(received) == 8
    # with two at a time, request k+2 is sent only after request k's 0.3 s answer ended
    gaps = [received[k + 2] - received[k] for k in range(6)]
    print("gaps between request k and k+2:", [round(g, 3) for g in gaps])
    assert min(gaps) >= 0.28


def test_awaited_map_on_a_series_returns_a_series(sdks):
    model = sdks.script(tokens=["a", "b"])
    s = pd.Series(["x", "y", "z"], index=[3, 1, 2], name="word")

    async def main():
        return await nbstream.map(s, "Spell {word}", model=f"openai:{model}")

    out = asyncio.run(main())
    assert isinstance(out, pd.Series) and list(out.index) == [3, 1, 2] and out.name == "answer"
    assert [r.prompt for r in out] == ["Spell x", "Spell y", "Spell z"]
    assert all(r == "ab" for r in out)


class Sentiment(BaseModel):
    label: str
    score: float


def test_a_dataframe_with_a_schema_gets_the_fields_as_columns(sdks):
    model = sdks.script(text='{"label": "pos", "score": 0.9}', token_size=5)
    df = pd.DataFrame({"review": ["great", "fine"]}, index=["r1", "r2"])
    out = nbstream.map_sync(df, "Rate: {review}", model=f"anthropic:{model}", schema=Sentiment)
    assert list(out.columns) == ["review", "label", "score"]
    assert list(out.index) == ["r1", "r2"]
    assert out.loc["r2", "label"] == "pos" and out.loc["r1", "score"] == 0.9
    assert "error" not in out.columns
    body = sdks.log(model)[0]["body"]
    assert body["tool_choice"]["type"] == "tool"  # the schema went out as a forced tool call


def test_a_failed_row_keeps_its_error_and_the_batch_goes_on(sdks):
    model = sdks.script(tokens=["fine"], statuses=[400])  # the first request is refused
    df = pd.DataFrame({"q": ["one", "two", "three"]})
    out = nbstream.map_sync(df, "{q}", model=f"openai:{model}", concurrency=1)
    assert list(out["answer"][1:]) == ["fine", "fine"]
    assert out.loc[0, "answer"] == "" and out.loc[0, "answer"].finish_reason == "error"
    assert out.loc[0, "error"].startswith("failed: ") and "400" in out.loc[0, "error"]
    assert out["error"][1:].isna().all()
    assert "sk-batch-test-key" not in out.to_string()


def test_rate_limited_rows_are_retried_and_none_is_lost(sdks):
    model = sdks.script(tokens=["y"], statuses=[429, 429, 200, 429], retry_after="0.2")
    results = nbstream.map_sync(list(range(6)), "n={item}", model=f"openai:{model}", concurrency=3)
    assert [r.ok for r in results] == [True] * 6
    assert [r.prompt for r in results] == [f"n={i}" for i in range(6)]
    assert len(sdks.log(model)) == 9  # 6 answers + 3 refusals retried


def test_stop_cancels_what_is_in_flight_and_keeps_what_finished(sdks):
    model = sdks.script(tokens=["t"] * 40, delay=0.05)
    job = nbstream.map_sync(
        [f"r{i}" for i in range(10)],
        "{item}",
        model=f"openai:{model}",
        background=True,
        concurrency=2,
    )
    assert isinstance(job, nbstream.Job)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # two rows done, a third one half-way
        log = sdks.log(model)
        if len(log) >= 3 and job.tally.done >= 2 and log[2]["tokens_sent"] >= 10:
            break
        time.sleep(0.02)
    sent_before_stop = len(sdks.log(model))
    job.stop()
    results = job.wait(timeout=20)
    finished = [r for r in results if r.finish_reason == "stop"]
    cancelled = [r for r in results if r.finish_reason == "cancelled"]
    print(f"{len(finished)} finished, {len(cancelled)} cancelled, {sent_before_stop} sent")
    assert len(finished) >= 2 and len(finished) + len(cancelled) == 10
    assert all(r == "t" * 40 for r in finished)
    # no row is watched (display "none"): every row was asked whole, so an in-flight row
    # ends cancelled with no text (a watched row streams and keeps its partial text)
    assert any(r.finish_reason == "cancelled" and r == "" for r in results)
    assert all(r["body"].get("stream") is None for r in sdks.log(model))
    log = sdks.log(model)
    assert len(log) <= sent_before_stop + 2  # nothing new was started after Stop
    cut = [r for r in log if not r["completed"]]
    assert cut and all(sdks.wait_for_disconnect(model)["client_disconnected"] for _ in cut)
    assert job.tally.cancelled == len(cancelled) and job.done


def test_a_rerun_resumes_finished_rows_from_the_cache(sdks, tmp_path):
    model = sdks.script(tokens=["t"] * 20, delay=0.05)
    items = [f"r{i}" for i in range(6)]
    job = nbstream.map_sync(
        items, "{item}", model=f"openai:{model}", background=True, concurrency=2
    )
    while job.tally.done < 2:
        time.sleep(0.05)
    job.stop()
    first = job.wait(timeout=20)
    finished = {i for i, r in enumerate(first) if r.ok}
    requests_before = len(sdks.log(model))
    again = nbstream.map_sync(items, "{item}", model=f"openai:{model}", concurrency=2)
    assert all(r.ok for r in again)
    assert {i for i, r in enumerate(again) if r.cached} == finished
    assert len(sdks.log(model)) - requests_before == 6 - len(finished)  # paid once per row
    assert all(r.cost == 0.0 for r in again if r.cached)
    [pack] = (tmp_path / "cache").glob("map-*.jsonl")  # one file for the batch, not six
    assert len(pack.read_text().splitlines()) == 6
    assert not list((tmp_path / "cache").glob("*.json"))


def test_history_records_every_row(sdks, tmp_path):
    model = sdks.script(tokens=["h"])
    path = tmp_path / "h.sqlite"
    nbstream.map_sync(["a", "b", "c"], "{item}?", model=f"openai:{model}", history=str(path))
    from nbstream import store

    store.flush(path)
    rows = store.read(path, None)
    assert sorted(r["prompt"] for r in rows) == ["a?", "b?", "c?"]


# -- provider batch services ----------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_mode_batch_submits_polls_and_maps_results_back(sdks, provider, tmp_path, monkeypatch):
    monkeypatch.setattr(batch.services, "POLL_FIRST", 0.1)
    model = sdks.script(tokens=["B", "!"], batch_seconds=0.01)
    df = pd.DataFrame({"q": [f"q{i}" for i in range(5)]}, index=list("abcde"))
    history = tmp_path / "h.sqlite"
    job = nbstream.map_sync(
        df, "{q}", model=f"{provider}:{model}", mode="batch", history=str(history)
    )
    assert isinstance(job, nbstream.Job) and job.id.startswith(f"{provider}:")
    out = job.wait(timeout=30)
    assert list(out.index) == list("abcde") and list(out["answer"]) == ["B!"] * 5
    assert [r.prompt for r in out["answer"]] == [f"q{i}" for i in range(5)]
    assert job.tally.done == 5 and job.tally.failed == 0
    from nbstream import pricing

    assert pricing.session()[f"{provider}:{model}"].answers == 5  # in %llm cost
    # a new kernel would collect it by id from the history file
    again = nbstream.collect(job.id, df, history=str(history)).wait(timeout=30)
    assert list(again["answer"]) == ["B!"] * 5
    # the finished rows are in the replay cache: a re-run submits nothing
    rerun = nbstream.map_sync(df, "{q}", model=f"{provider}:{model}", mode="batch").wait(30)
    assert all(r.cached for r in rerun["answer"])


def test_mode_batch_needs_a_batch_service(sdks):
    with pytest.raises(ValueError, match="mode='batch' needs a provider with a batch service"):
        nbstream.map_sync(["x"], "{item}", model="ollama:llama3.2", mode="batch")


def test_collect_an_unknown_id(sdks, tmp_path):
    with pytest.raises(ValueError, match="not in the history file"):
        nbstream.collect("openai:batch_nope", history=str(tmp_path / "none.sqlite"))
    with pytest.raises(ValueError, match="not an nbstream batch id"):
        nbstream.collect("batch_nope")


def test_results_pickle(sdks):
    model = sdks.script(tokens=["p"])
    (r,) = nbstream.map_sync(["x"], "{item}", model=f"openai:{model}")
    assert json.loads(json.dumps({"a": r})) == {"a": "p"}


# -- empty input ---------------------------------------------------------------------------------


def test_none_and_nan_rows_are_skipped_marked_and_counted_not_sent_as_nan(sdks):
    model = sdks.script(tokens=["positive"])
    df = pd.DataFrame(
        {"review": ["great", float("nan"), None, "awful", pd.NA], "stars": [5, 3, 1, 1, 2]}
    )
    job = nbstream.map_sync(df, "Classify {review}", model=f"openai:{model}", background=True)
    out = job.wait()
    sent = prompts_sent(sdks, model)
    assert sorted(sent) == ["Classify awful", "Classify great"]
    assert not any("nan" in p.lower() or "<NA>" in p or "None" in p for p in sent)
    assert list(out["error"]) == [None, "empty input", "empty input", None, "empty input"]
    assert list(out["answer"][[0, 3]]) == ["positive", "positive"]
    assert job.tally.skipped == 3 and job.tally.done == 2 and job.tally.failed == 0
    assert "3 empty (skipped)" in job.tally.summary()
    # a list with None; a prompt function gets the row itself
    results = nbstream.map_sync(["a", None], lambda r: f"Say {r}", model=f"openai:{model}")
    assert [r.error for r in results] == [None, "empty input"]
    assert len(sdks.log(model)) == 3


def test_missing_send_sends_an_empty_value_not_the_word_nan(sdks):
    model = sdks.script(tokens=["ok"])
    s = pd.Series(["x", float("nan")], name="word")
    out = nbstream.map_sync(s, "Spell [{word}]", model=f"openai:{model}", missing="send")
    assert sorted(prompts_sent(sdks, model)) == ["Spell []", "Spell [x]"]
    assert all(r.ok for r in out)
    with pytest.raises(ValueError, match="missing must be 'skip' or 'send'"):
        nbstream.map_sync(s, "{word}", missing="drop")  # type: ignore[arg-type]


def test_a_dict_row_without_a_named_field_is_an_error_before_anything_is_sent(sdks):
    model = sdks.script(tokens=["ok"])
    rows = [{"name": "Ada", "city": "Oslo"}, {"name": "Bob"}, {"name": "Cy", "city": "Rome"}]
    with pytest.raises(ValueError, match=r"\{city\} is missing from 1 of 3 rows \(rows 1\)"):
        nbstream.map_sync(rows, "{name} lives in {city}", model=f"openai:{model}")
    assert sdks.log(model) == []


def test_a_provider_batch_counts_empty_rows_once_as_skipped(sdks, monkeypatch):
    """The provider batch recounts every row when its results are in: a skipped row was
    counted as failed there, and as skipped too."""
    monkeypatch.setattr(batch.services, "POLL_FIRST", 0.1)
    model = sdks.script(tokens=["B"], batch_seconds=0.01)
    df = pd.DataFrame({"q": ["q0", None, "q2"]})
    job = nbstream.map_sync(df, "{q}", model=f"openai:{model}", mode="batch", cache="off")
    out = job.wait(timeout=30)
    assert list(out["error"]) == [None, "empty input", None]
    tally = job.tally
    assert (tally.done, tally.failed, tally.skipped, tally.finished) == (2, 0, 1, 3)
    assert tally.state == "finished" and "1 empty (skipped)" in tally.summary()
