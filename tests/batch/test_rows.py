"""The rows of a batch (:mod:`nbstream.batch.rows`): namespaces per row, prompts, result shapes."""

from __future__ import annotations

import pandas as pd
import pytest

from nbstream.batch.rows import fill_prompts, shape, take_rows
from nbstream.response import Response


def test_a_dataframe_row_names_its_columns_and_its_index():
    df = pd.DataFrame({"review": ["good", "bad"], "stars": [5, 1]}, index=["a", "b"])
    rows = take_rows(df)
    assert rows.kind == "dataframe" and rows.labels == ["a", "b"]
    prompts = fill_prompts("{index}: {review} ({stars}★) {x + 1} {{review}}", rows, {}, 4000)
    assert prompts == ["a: good (5★) {x + 1} {review}", "b: bad (1★) {x + 1} {review}"]


def test_list_rows_scalars_dicts_and_a_series():
    assert fill_prompts("Q: {item}", take_rows(["x", "y"]), {}, 4000) == ["Q: x", "Q: y"]
    rows = take_rows([{"name": "Ada"}, {"name": "Bob"}])
    assert fill_prompts("Hi {name} #{index}", rows, {}, 4000) == ["Hi Ada #0", "Hi Bob #1"]
    s = pd.Series(["p", "q"], name="text", index=[10, 20])
    assert fill_prompts("{text}/{item}/{index}", take_rows(s), {}, 4000) == ["p/p/10", "q/q/20"]


def test_a_field_falls_back_to_the_callers_variables():
    rows = take_rows(["x"])
    assert fill_prompts("{tone}: {item}", rows, {"tone": "brief"}, 4000) == ["brief: x"]


def test_a_misspelt_column_is_refused_before_anything_is_sent():
    df = pd.DataFrame({"review": ["good"]})
    with pytest.raises(ValueError, match=r"\{reveiw\} names no column.*review"):
        fill_prompts("Classify {reveiw}", take_rows(df), {}, 4000)


def test_a_prompt_function_gets_the_row():
    rows = take_rows([{"a": 1}, {"a": 2}])
    assert fill_prompts(lambda r: f"n={r['a']}", rows, {}, 4000) == ["n=1", "n=2"]
    with pytest.raises(TypeError, match="must return the prompt as a str"):
        fill_prompts(lambda r: 3, rows, {}, 4000)


@pytest.mark.parametrize("items", ["a string", {"a": 1}, 42])
def test_items_that_are_not_rows(items):
    with pytest.raises(TypeError, match="list, a pandas Series or a DataFrame"):
        take_rows(items)


def test_new_columns_that_exist_in_the_input_get_a_suffix():
    df = pd.DataFrame({"answer": ["mine"]})
    out = shape(take_rows(df), [Response("theirs")], "answer", None)
    assert list(out.columns) == ["answer", "answer_llm"]
    assert out.loc[0, "answer"] == "mine" and out.loc[0, "answer_llm"] == "theirs"


def test_a_stopped_row_is_named_in_the_error_column():
    df = pd.DataFrame({"q": ["a", "b"]})
    responses = [Response("x"), Response("", finish_reason="cancelled")]
    out = shape(take_rows(df), responses, "answer", None)
    assert list(out["error"]) == [None, "stopped"]
