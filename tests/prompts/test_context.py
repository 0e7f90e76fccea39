"""``to_prompt``: values rendered for a model within a character budget.

The budget is exact: ``len(to_prompt(v, budget)) <= max(budget, MIN_BUDGET)`` (the "small
constant" is 0 above ``MIN_BUDGET`` = 200).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbstream.prompts.context import MAX_CELL, MIN_BUDGET, to_prompt
from nbstream.prompts.interpolate import interpolate

# -- scalars, objects, strings ----------------------------------------------------------------


def test_short_values_are_plain_str():
    class Thing:
        def __str__(self) -> str:
            return "a thing"

    assert to_prompt(3) == "3"
    assert to_prompt(0.5) == "0.5"
    assert to_prompt(True) == "True"
    assert to_prompt(None) == "None"
    assert to_prompt("hello {x}") == "hello {x}"
    assert to_prompt(Thing()) == "a thing"
    assert to_prompt(b"bytes") == "b'bytes'"


def test_a_one_megabyte_string_keeps_head_and_tail_and_says_how_much_was_cut():
    text = "".join(f"line {i:07d}\n" for i in range(1_000_000 // 13)) + "THE END"
    out = to_prompt(text)
    assert len(out) <= 4000
    assert out.startswith("line 0000000\nline 0000001\n")
    assert out.endswith("THE END")
    m = re.search(r"\n… \[truncated: ([\d,]+) of ([\d,]+) characters omitted\] …\n", out)
    assert m, out[1900:2200]
    omitted, total = (int(g.replace(",", "")) for g in m.groups())
    assert total == len(text)
    assert len(out) - len(m.group(0)) == total - omitted  # what is shown is what is left


def test_long_objects_are_truncated_like_strings():
    class Big:
        def __str__(self) -> str:
            return "x" * 10_000

    out = to_prompt(Big(), budget=500)
    assert len(out) <= 500
    assert "[truncated: " in out and "of 10,000 characters omitted" in out


def test_budget_below_the_minimum_is_raised():
    out = to_prompt("y" * 1000, budget=5)
    assert len(out) <= MIN_BUDGET
    assert "truncated" in out


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=3000), budget=st.integers(min_value=-5, max_value=2500))
def test_strings_never_exceed_the_budget(text, budget):
    out = to_prompt(text, budget)
    assert len(out) <= max(budget, MIN_BUDGET)
    if len(text) <= max(budget, MIN_BUDGET):
        assert out == text


# -- containers --------------------------------------------------------------------------------


def test_nested_dict_is_compact_json():
    value = {"user": {"name": "Zoë", "tags": ["a", "b"], "age": 3, "ok": True, "x": None}}
    out = to_prompt(value)
    assert out == json.dumps(value, ensure_ascii=False)
    assert "\n" not in out and "Zoë" in out
    assert json.loads(out) == value


def test_values_that_are_not_plain_json_use_repr():
    assert to_prompt({1: "a"}) == "{1: 'a'}"  # JSON would turn the key into "1"
    assert to_prompt([float("nan")]) == "[nan]"
    assert to_prompt({"when": {1, 2}}) == "{'when': {1, 2}}"
    assert to_prompt((1000, 5)) == "(1000, 5)"
    assert to_prompt({3}) == "{3}"
    loop: list = [1]
    loop.append(loop)
    assert to_prompt(loop) == "[1, [...]]"


def test_big_nested_dict_is_truncated_with_a_note():
    value = {f"key{i}": {"values": list(range(20)), "label": f"item {i}"} for i in range(1000)}
    full = json.dumps(value, ensure_ascii=False)
    out = to_prompt(value)
    assert len(out) <= 4000
    assert out.startswith(full[:3000])
    note = re.search(r"… \(truncated: showing ([\d,]+) of ([\d,]+) characters\)$", out)
    assert note, out[-100:]
    assert int(note.group(2).replace(",", "")) == len(full)
    assert out[: int(note.group(1).replace(",", ""))] == full[: int(note.group(1).replace(",", ""))]


def test_huge_list_is_sliced_before_it_is_rendered():
    out = to_prompt(list(range(1_000_000)), budget=1000)
    assert len(out) <= 1000
    assert out.startswith("[0, 1, 2, 3")
    assert out.endswith("characters of a list of 1,000,000 items)")


@settings(max_examples=150, deadline=None)
@given(
    value=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=8)
            | st.dictionaries(st.text(max_size=5), inner, max_size=8)
            | st.sets(st.integers(), max_size=5).map(frozenset)
        ),
        max_leaves=200,
    ),
    budget=st.integers(min_value=0, max_value=1500),
)
def test_containers_never_exceed_the_budget(value, budget):
    assert len(to_prompt(value, budget)) <= max(budget, MIN_BUDGET)


# -- pandas -------------------------------------------------------------------------------------


def make_frame(n: int = 1000):
    pd = pytest.importorskip("pandas")
    return pd.DataFrame(
        {
            "name": [f"item {i}" for i in range(n)],
            "price": [i * 1.25 for i in range(n)],
            "qty": list(range(n)),
            "day": pd.date_range("2024-01-01", periods=n),
            "note": ["x" * 100 if i % 2 else "a|b" for i in range(n)],
        }
    )


def table_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("|")]


def test_thousand_row_frame_states_shape_dtypes_first_and_last_rows():
    df = make_frame()
    out = to_prompt(df)
    assert len(out) <= 4000
    lines = out.splitlines()
    assert lines[0] == "DataFrame: 1,000 rows × 5 columns"
    assert lines[1].startswith("columns: name (")
    assert "price (float64), qty (int64), day (datetime64" in lines[1]
    rows = table_lines(out)
    assert rows[0] == "| name | price | qty | day | note |"  # default index: not a column
    assert rows[1] == "|---|---|---|---|---|"
    assert rows[2] == "| item 0 | 0.0 | 0 | 2024-01-01 | a\\|b |"
    assert rows[-1].startswith("| item 999 | 1248.75 | 999 | 2026-09-26 | ")
    assert "| … | … | … | … | … |" in rows
    m = re.search(r"\(showing (\d+) of 1,000 rows: first (\d+) and last (\d+)\)$", out)
    assert m, out[-200:]
    shown, first, last = map(int, m.groups())
    assert shown == first + last == len(rows) - 3 and 10 <= shown < 1000
    assert f"| item {first - 1} |" in out and f"| item {first} |" not in out
    assert f"| item {1000 - last} |" in out and f"| item {999 - last} |" not in out


def test_long_cells_are_shortened():
    out = to_prompt(make_frame(4))
    assert "| " + "x" * (MAX_CELL - 1) + "… |" in out
    assert "x" * MAX_CELL not in out


def test_rows_shown_adapt_to_the_budget():
    df = make_frame()
    shown = []
    for budget in (MIN_BUDGET, 400, 1000, 4000, 20_000):
        out = to_prompt(df, budget)
        assert len(out) <= budget, budget
        assert out.startswith("DataFrame: 1,000 rows × 5 columns")
        shown.append(len(table_lines(out)))
    assert shown == sorted(shown) and shown[-1] > shown[2] > shown[1]


def test_small_frame_is_shown_whole_without_a_note():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"a": [1, 2], "b": [0.1, float("nan")]})
    assert to_prompt(df) == (
        "DataFrame: 2 rows × 2 columns\n"
        "columns: a (int64), b (float64)\n"
        "| a | b |\n|---|---|\n| 1 | 0.1 |\n| 2 | NaN |"
    )
    assert to_prompt(pd.DataFrame({"a": [1.0 / 3]})).endswith("| 0.333333 |")


def test_two_hundred_columns_show_first_and_last_and_count_the_rest():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({f"c{i}": range(50) for i in range(200)})
    out = to_prompt(df)
    assert len(out) <= 4000
    assert out.startswith("DataFrame: 50 rows × 200 columns\ncolumns: c0 (int64), c1 (int64)")
    assert "more …" in out and "c199 (int64)" in out
    assert "dtypes: int64 ×200" in out
    header = table_lines(out)[0]
    assert header.startswith("| c0 | c1 |") and header.endswith("| c198 | c199 |")
    assert " … " in header
    m = re.search(
        r"\(showing (\d+) of 200 columns: first (\d+) and last (\d+); (\d+) omitted\)", out
    )
    assert m, out[-300:]
    shown, first, last, omitted = map(int, m.groups())
    assert shown == first + last and shown + omitted == 200
    assert header.count("|") == shown + 1 + 1  # shown columns and the "…" column, plus one
    assert "(showing " in out and "of 50 rows" in out


def test_non_default_index_is_a_table_column():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(
        {"temp": [20.5, 21.0, 19.8]}, index=pd.Index(["Oslo", "Rome", "Lima"], name="city")
    )
    out = to_prompt(df)
    assert out.splitlines()[1].startswith("index: city (")
    assert table_lines(out)[:3] == ["| city | temp |", "|---|---|", "| Oslo | 20.5 |"]
    shifted = pd.DataFrame({"v": [1, 2]}, index=[5, 6])
    assert "| 5 | 1 |" in to_prompt(shifted)
    dated = pd.DataFrame({"v": [1, 2]}, index=pd.date_range("2024-03-01", periods=2))
    assert "| 2024-03-01 | 1 |" in to_prompt(dated)


def test_multiindex_rows_and_columns_do_not_crash():
    pd = pytest.importorskip("pandas")
    rows = pd.MultiIndex.from_product([["a", "b"], range(300)], names=["grp", None])
    cols = pd.MultiIndex.from_product([["price", "qty"], ["mean", "max"]])
    df = pd.DataFrame([[float(i), i, i, i] for i in range(600)], index=rows, columns=cols)
    out = to_prompt(df, budget=1500)
    assert len(out) <= 1500
    assert out.startswith("DataFrame: 600 rows × 4 columns\nindex: grp (")
    assert "price / mean (float64)" in out
    assert table_lines(out)[0] == "| grp |  | price / mean | price / max | qty / mean | qty / max |"
    assert "| a | 0 | 0.0 | 0 | 0 | 0 |" in out and "| b | 299 | 599.0 |" in out


def test_empty_frames():
    pd = pytest.importorskip("pandas")
    assert to_prompt(pd.DataFrame()) == "DataFrame: 0 rows × 0 columns"
    assert to_prompt(pd.DataFrame({"a": []})).startswith("DataFrame: 0 rows × 1 column\n")


def test_series_has_name_dtype_length_and_head_and_tail():
    pd = pytest.importorskip("pandas")
    s = pd.Series(range(5000), name="count")
    out = to_prompt(s, budget=600)
    assert len(out) <= 600
    assert out.startswith("Series 'count': 5,000 values, dtype int64\n| count |\n|---|\n| 0 |")
    assert "| 4999 |" in out and "| … |" in out
    assert re.search(r"\(showing \d+ of 5,000 values: first \d+ and last \d+\)$", out)
    short = pd.Series([1.5, 2.5], index=["x", "y"])
    assert to_prompt(short) == (
        f"Series: 2 values, dtype float64\nindex: {short.index.dtype}\n"
        "|  | value |\n|---|---|\n| x | 1.5 |\n| y | 2.5 |"
    )


def test_interpolating_a_frame_uses_the_renderer():
    df = make_frame()
    out = interpolate("Here: {df}\nShape {df.shape}; {df['qty'].dtype}", {"df": df}, budget=900)
    assert out.startswith("Here: DataFrame: 1,000 rows × 5 columns\n")
    assert out.endswith("Shape (1000, 5); int64")
    assert "(showing " in out
    column = interpolate('{df["price"]}', {"df": df})
    assert column.startswith("Series 'price': 1,000 values, dtype float64")


# -- numpy --------------------------------------------------------------------------------------


def test_small_array_is_shown_whole():
    np = pytest.importorskip("numpy")
    arr = np.arange(12, dtype=np.float64).reshape(3, 4)
    out = to_prompt(arr)
    assert out.splitlines()[0] == "ndarray shape=(3, 4) dtype=float64"
    assert out.split("\n", 1)[1] == str(arr)


def test_big_array_is_summarised_by_numpy_within_budget():
    np = pytest.importorskip("numpy")
    arr = np.arange(1_000_000).reshape(1000, 1000)
    out = to_prompt(arr, budget=800)
    assert len(out) <= 800
    assert out.startswith("ndarray shape=(1000, 1000) dtype=int64\n[[     0      1      2 ...")
    assert "999999]]" in out
    assert "..." in out


def test_high_dimensional_array_respects_the_budget():
    np = pytest.importorskip("numpy")
    arr = np.zeros((7, 7, 7, 7, 7, 7))
    out = to_prompt(arr, budget=300)
    assert len(out) <= 300
    assert out.startswith("ndarray shape=(7, 7, 7, 7, 7, 7) dtype=float64\n")


# -- optional dependencies ------------------------------------------------------------------------


def test_rendering_plain_values_imports_neither_pandas_nor_numpy():
    code = textwrap.dedent(
        """
        import sys
        from nbstream.prompts.context import to_prompt
        from nbstream.prompts.interpolate import interpolate
        before = {m for m in ("pandas", "numpy") if m in sys.modules}
        to_prompt({"a": [1, 2]}); to_prompt("x" * 10000); to_prompt(3.5)
        interpolate("{a} {b:.1f} {c[0]}", {"a": "t", "b": 1.25, "c": [object()]})
        after = {m for m in ("pandas", "numpy") if m in sys.modules}
        assert after == before, (before, after)
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
