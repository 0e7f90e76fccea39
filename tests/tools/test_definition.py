"""Tools from the user's functions: the schema a model sees, arguments checked before any call,
names found without evaluating anything, ``%llm tools``."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import shutil
from typing import Literal

import pytest
from pydantic import BaseModel, Field

import nbstream
from nbstream.tools import (
    Tool,
    ToolArgumentsError,
    ToolError,
    marked_tools,
    resolve_tools,
    tool,
    tool_of,
    tools_report,
)


def load_sales(quarter: str, region: str | None = None, limit: int = 10) -> list[dict]:
    """Sales rows of one quarter.

    Args:
        quarter: The quarter, e.g. '2026-Q3'.
        region: Only this region; all regions when left out.
        limit: At most this many rows, the
            largest first.
    """
    return [{"quarter": quarter, "region": region, "limit": limit}]


def test_the_schema_comes_from_the_signature_hints_and_docstring():
    made = tool_of(load_sales)
    assert made.name == "load_sales" and made.description == "Sales rows of one quarter."
    params = made.parameters
    assert params["type"] == "object" and params["required"] == ["quarter"]
    assert params["additionalProperties"] is False
    props = params["properties"]
    assert props["quarter"] == {"type": "string", "description": "The quarter, e.g. '2026-Q3'."}
    assert props["limit"]["default"] == 10 and props["limit"]["type"] == "integer"
    assert props["limit"]["description"] == "At most this many rows, the largest first."
    assert {"type": "null"} in props["region"]["anyOf"]
    assert made.approve is True and made.is_async is False


def numpy_style(city: str, days: int = 3) -> str:
    """Weather forecast.

    Parameters
    ----------
    city : str
        A city name.
    days : int
        How many days
        ahead.
    """
    return f"{city}:{days}"


def sphinx_style(city: str, units: Literal["C", "F"] = "C") -> str:
    """Current temperature.

    :param city: A city name.
    :param units: Celsius or Fahrenheit.
    """
    return f"{city}{units}"


@pytest.mark.parametrize(
    "function, described",
    [
        (numpy_style, {"city": "A city name.", "days": "How many days ahead."}),
        (sphinx_style, {"city": "A city name.", "units": "Celsius or Fahrenheit."}),
    ],
)
def test_numpy_and_sphinx_docstrings_describe_the_parameters(function, described):
    made = tool_of(function)
    got = {k: v.get("description") for k, v in made.parameters["properties"].items()}
    assert got == described
    assert made.description in ("Weather forecast.", "Current temperature.")


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Filter(BaseModel):
    column: str
    at_least: float = Field(ge=0)


@dataclasses.dataclass
class Window:
    start: int
    end: int


def rich(colour: Colour, filters: list[Filter], window: Window, tags: dict[str, int]) -> str:
    """Rich types."""
    return f"{colour.value} {filters[0].column} {window.end} {tags}"


def test_arguments_are_validated_and_converted_before_the_call():
    made = tool_of(rich)
    args = made.arguments(
        '{"colour": "red", "filters": [{"column": "x", "at_least": 1}],'
        ' "window": {"start": 1, "end": 2}, "tags": {"a": 1}}'
    )
    assert args["colour"] is Colour.RED and isinstance(args["filters"][0], Filter)
    assert args["window"] == Window(1, 2)
    assert (
        made.call(
            args
            | {
                "colour": "blue",
                "filters": [{"column": "y", "at_least": 0}],
                "window": {"start": 0, "end": 5},
            }
        )
        == "blue y 5 {'a': 1}"
    )


@pytest.mark.parametrize(
    "raw, words",
    [
        ({"region": "EU"}, ["'quarter'", "Field required"]),
        ({"quarter": "Q1", "limit": "many"}, ["'limit'", "valid integer"]),
        ({"quarter": "Q1", "colour": "red"}, ["'colour'", "no such parameter"]),
        ("{not json", ["load_sales", "do not fit"]),
    ],
)
def test_bad_arguments_are_a_message_for_the_model_and_nothing_is_called(raw, words):
    calls = []
    made = dataclasses.replace(tool_of(load_sales), function=lambda **kw: calls.append(kw))
    with pytest.raises(ToolArgumentsError) as info:
        made.call(raw)
    assert all(w in str(info.value) for w in words), str(info.value)
    assert calls == []


def test_an_async_tool_is_awaited():
    async def fetch(n: int) -> int:
        """Fetch."""
        await asyncio.sleep(0)
        return n * 2

    made = tool_of(fetch)
    assert made.is_async and asyncio.run(made.acall({"n": 21})) == 42
    assert made.call('{"n": 2}') == 4


def test_a_parameter_typed_by_code_is_refused_when_the_tool_is_made():
    def danger(path: shutil.rmtree) -> None:  # type: ignore[valid-type]
        """Never."""

    with pytest.raises(ToolError, match="danger: parameter 'path'"):
        tool_of(danger)


@pytest.mark.parametrize(
    "value, words",
    [(Colour, "not a function"), (lambda x: x, "not a usable tool name"), (len, "positional-only")],
)
def test_what_cannot_be_a_tool_says_why(value, words):
    with pytest.raises(ToolError, match=words):
        tool_of(value)


def test_the_decorator_marks_and_returns_the_same_function():
    @tool(approve=False, name="sales-by-region", description="Sales per region.")
    def by_region(quarter: str) -> dict:
        """Own docstring."""
        return {"EU": 1}

    assert by_region("Q1") == {"EU": 1}  # still the user's function
    made = tool_of(by_region)
    assert (made.name, made.description, made.approve) == (
        "sales-by-region",
        "Sales per region.",
        False,
    )
    assert tool_of(by_region, approve=True).approve is True

    def plain(q: str) -> str:
        """Plain."""
        return q

    bare = tool(plain)
    assert bare is plain and tool_of(bare).approve is True
    assert nbstream.tool is tool


class Sales:
    def by_region(self, quarter: str) -> str:
        """Per region."""
        return quarter

    def _secret(self) -> None:
        """Hidden."""


def test_names_and_attribute_chains_are_looked_up_never_evaluated():
    sales = Sales()
    namespace = {"load_sales": load_sales, "sales": sales, "x": 1}
    found = resolve_tools("load_sales, sales.by_region", namespace)
    assert [t.name for t in found] == ["load_sales", "by_region"]
    assert found[1].call({"quarter": "Q2"}) == "Q2"
    assert found[1].parameters["required"] == ["quarter"]  # self is not a parameter
    for bad, words in [
        ("load_sales()", "is not a name"),
        ("__import__('os').system", "is not a name"),
        ("sales._secret", "no function 'sales._secret'"),
        ("nowhere", "no function 'nowhere'"),
        ("x", "not a function"),
    ]:
        with pytest.raises(ToolError, match=words.replace("(", r"\(").replace(")", r"\)")):
            resolve_tools(bad, namespace)


def test_two_tools_with_one_name_are_an_error():
    def a(q: str) -> str:
        """A."""
        return q

    def b(q: str) -> str:
        """B."""
        return q

    b.__name__ = "a"
    with pytest.raises(ToolError, match="two tools are named 'a'"):
        resolve_tools([a, b], {})
    assert len(resolve_tools([a, a, tool_of(a)], {})) == 1


def test_llm_tools_shows_what_a_model_would_see(ip, capsys):
    ip.user_ns["load_sales"] = load_sales
    ip.run_line_magic("llm", "tools load_sales")
    out = capsys.readouterr().out
    assert out.startswith("load_sales (asks before each call)")
    assert '"quarter"' in out and "The quarter, e.g. '2026-Q3'." in out

    @tool(approve=False)
    def plot_region(region: str) -> None:
        """Plot one region."""

    ip.user_ns["plot_region"] = plot_region
    ip.run_line_magic("llm", "tools")
    out = capsys.readouterr().out
    assert "plot_region (runs without asking)" in out and "load_sales" not in out
    assert [t.name for t in marked_tools(ip.user_ns)] == ["plot_region"]
    from IPython.core.error import UsageError

    with pytest.raises(UsageError, match="no function 'missing'"):
        ip.run_line_magic("llm", "tools missing")
    ip.user_ns.pop("plot_region")
    ip.user_ns.pop("load_sales")
    assert "no tools" in tools_report([])


def test_a_tool_is_data_about_a_function():
    made = tool_of(load_sales)
    assert isinstance(made, Tool) and "function" not in repr(made)
