"""Stale answers: ``Response.stale()``, ``%llm stale`` and the cache's "inputs unchanged"."""

from __future__ import annotations

import pandas as pd
import pytest

from fake_llm_fixture import point_sdks_at
from nbstream import response as responses


@pytest.fixture(autouse=True)
def _setup(monkeypatch, fake_llm, ip):
    point_sdks_at(monkeypatch, fake_llm, "sk-stale-openai", "sk-ant-stale")
    monkeypatch.setenv("NBSTREAM_HISTORY", "off")
    responses.ANSWERS.clear()
    yield
    responses.ANSWERS.clear()


def test_an_answer_is_stale_after_its_dataframe_changes(ip, fake_llm, capsys):
    ip.user_ns["df"] = pd.DataFrame({"region": ["n", "s"], "units": [3, 5]})
    model = fake_llm.script(texts=["Two regions.", "Two regions."])
    ip.run_cell_magic("llm", f"-m openai:{model} --display none -o summary", "Summarise {df}")
    summary = ip.user_ns["summary"]
    assert set(summary.inputs) == {"df"}
    assert summary.stale() == []
    ip.run_line_magic("llm", "stale")
    assert "No stale answers" in capsys.readouterr().out
    ip.run_cell("df = df[df['units'] > 3]")
    assert summary.stale() == ["df"]
    ip.run_line_magic("llm", "stale")
    out = capsys.readouterr().out
    assert "1 of 1 answers read inputs that have changed since:" in out
    assert "summary ('Summarise" in out and ": df changed" in out
    ip.run_cell("del df")
    assert summary.stale() == ["df"]  # gone counts as changed


def test_a_rerun_with_unchanged_inputs_is_served_from_the_cache_and_says_so(ip, fake_llm, tmp_path):
    from nbstream.prompts.interpolate import compose
    from nbstream.run import make_stream, run_blocking

    ip.user_ns["df"] = pd.DataFrame({"a": [1]})
    model = fake_llm.script(tokens=["ok"])
    call = {"model": f"openai:{model}", "display": "none", "cache": "auto",
            "cache_dir": str(tmp_path)}  # fmt: skip
    first = make_stream(compose("About {df}", ip.user_ns), call)
    run_blocking(first)
    again = make_stream(compose("About {df}", ip.user_ns), call)
    assert "cached: inputs unchanged" in (again.note or "")
    assert run_blocking(again).cached
    assert len(fake_llm.log(model)) == 1


def test_cells_and_threads_are_inputs_too(ip, fake_llm):
    ip.run_cell("x = 1", store_history=True)
    model = fake_llm.script(texts=["one", "two"])
    ip.run_cell_magic("llm", f"-m openai:{model} --display none --cells 1 --chat s -o a", "Q")
    a = ip.user_ns["a"]
    assert any(k.startswith("cell:") for k in a.inputs)
    assert "thread:s#0" in a.inputs
    assert a.stale() == []
    ip.run_cell_magic("llm", f"-m openai:{model} --display none --chat s -o b", "Q2")
    assert a.stale() == []  # a later turn is not an earlier one
    ip.run_line_magic("llm", "reset s")
    b = ip.user_ns["b"]
    assert [k for k in b.stale() if k.startswith("thread:")]  # its earlier turn is gone


def test_a_cell_read_with_cells_is_stale_once_re_run_differently(ip, fake_llm):
    from nbstream.prompts import cells

    def ran(source: str, count: int) -> None:  # what the watcher records for a cell run
        record = cells.CellRecord(count, source, cell_id="cell-a")
        cells.begin(record)
        cells.output(source.upper())
        cells.end(record)

    cells.reset()
    ran("print('v1')", 1)
    model = fake_llm.script(texts=["a", "b"])
    ip.run_cell_magic("llm", f"-m openai:{model} --display none --cells 1 -o a", "Q")
    a = ip.user_ns["a"]
    assert "cell:cell-a" in a.inputs and a.stale() == []
    ran("print('v1')", 3)  # re-run as it was: not stale
    assert a.stale() == []
    ran("print('v2')", 4)  # re-run with another source
    assert a.stale() == ["cell:cell-a"]
