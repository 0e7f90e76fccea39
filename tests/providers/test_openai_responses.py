"""OpenAI's Responses API (``--api responses``, the default at api.openai.com) through the
real SDK to the test server speaking the Responses event stream. The fault suite
(tests/test_faults.py) runs for it too, as ``responses``."""

from __future__ import annotations

import io
import json
import time

import pytest

import nbstream
from fake_llm_fixture import point_sdks_at
from nbstream.providers.openai_responses import to_responses

pytestmark = pytest.mark.usefixtures("_keys")


@pytest.fixture
def _keys(monkeypatch, fake_llm, tmp_path):
    point_sdks_at(monkeypatch, fake_llm, "sk-resp-openai", "sk-ant-resp")
    monkeypatch.setenv("NBSTREAM_HISTORY", "off")


def ask(model, prompt="What is 2 + 3?", **options):
    options = {"api": "responses", "display": "none", **options}
    return nbstream.ask_sync(prompt, model=f"openai:{model}", **options)


def test_text_usage_and_the_path(fake_llm):
    model = fake_llm.script(tokens=["It ", "is ", "5."], usage={"cached_input_tokens": 2})
    r = ask(model, system="Be brief.", max_tokens=50)
    assert r == "It is 5." and r.finish_reason == "stop"
    record = fake_llm.log(model)[0]
    assert record["path"] == "/v1/responses"
    body = record["body"]
    assert body["instructions"] == "Be brief." and body["max_output_tokens"] == 50
    assert body["input"] == [{"role": "user", "content": "What is 2 + 3?"}]
    assert body["store"] is False
    assert r.usage["output_tokens"] == 3 and r.usage["cached_input_tokens"] == 2


def test_auto_is_chat_for_a_server_set_by_url(fake_llm):
    model = fake_llm.script(tokens=["ok"])
    nbstream.ask_sync("hi", model=f"openai:{model}", display="none")  # OPENAI_BASE_URL is set
    assert fake_llm.log(model)[0]["path"] == "/v1/chat/completions"


def test_reasoning_summaries_stream_as_thinking(fake_llm):
    thoughts = ["Adding ", "two and three."]
    model = fake_llm.script(tokens=["5."], thinking=thoughts)
    r = ask(model, reasoning_effort="medium")
    assert r == "5." and r.thinking == "Adding two and three."
    assert r.usage["reasoning_tokens"] == 2
    assert fake_llm.log(model)[0]["body"]["reasoning"] == {"effort": "medium", "summary": "auto"}


def test_length_is_a_cut_answer(fake_llm):
    model = fake_llm.script(tokens=["It ", "is"], finish_reason="length")
    r = ask(model, max_tokens=2)
    assert r == "It is" and r.finish_reason == "length"


def test_a_tool_round_goes_back_as_function_call_items(fake_llm):
    ran = []

    @nbstream.tool(approve=False)
    def add(a: int, b: int) -> int:
        """Adds."""
        ran.append((a, b))
        return a + b

    model = fake_llm.script(
        answers=[
            {"text": "Adding.", "tool_calls": [{"name": "add", "arguments": '{"a": 2, "b": 3}'}]},
            {"text": "It is 5."},
        ]
    )
    r = ask(model, tools=[add])
    assert r.finish_reason == "stop", r.error
    assert ran == [(2, 3)] and r == "Adding.\n\nIt is 5."
    first, second = fake_llm.log(model)
    assert first["body"]["tools"][0]["name"] == "add"  # flat function tools
    items = second["body"]["input"]
    call = next(i for i in items if i.get("type") == "function_call")
    output = next(i for i in items if i.get("type") == "function_call_output")
    assert call["name"] == "add" and json.loads(call["arguments"]) == {"a": 2, "b": 3}
    assert output["call_id"] == call["call_id"] and output["output"] == "5"


def test_a_schema_goes_as_text_format(fake_llm):
    model = fake_llm.script(text='{"city": "Paris", "population": 2100000}')
    r = ask(model, schema=dict[str, str | int])
    assert r.finish_reason == "stop", r.error
    fmt = fake_llm.log(model)[0]["body"]["text"]["format"]
    assert fmt["type"] == "json_schema" and "schema" in fmt
    assert r.data == {"city": "Paris", "population": 2100000}


def test_images_go_as_input_image_parts(fake_llm):
    pil = pytest.importorskip("PIL.Image")
    buffer = io.BytesIO()
    pil.new("RGB", (8, 8)).save(buffer, "PNG")
    model = fake_llm.script(tokens=["A square."])
    ask(model, prompt=["What is this?", buffer.getvalue()])
    content = fake_llm.log(model)[0]["body"]["input"][-1]["content"]
    assert [c["type"] for c in content] == ["input_text", "input_image"]
    assert content[1]["image_url"].startswith("data:image/png;base64,")


def test_conversation_items():
    history = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "Q1"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "c1", "name": "f", "arguments": "{}"}],
        },
        {"role": "tool", "tool_call_id": "c1", "name": "f", "content": "r"},
    ]
    instructions, items = to_responses(history, "")
    assert instructions == "S"
    assert items == [
        {"role": "user", "content": "Q1"},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "r"},
    ]


def test_stop_closes_the_responses_stream_upstream(fake_llm):
    model = fake_llm.script(tokens=["word "] * 200, delay=0.02)
    pending = nbstream.ask_sync(
        "Q", model=f"openai:{model}", api="responses", display="none", background=True
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        log = fake_llm.log(model)
        if log and log[0]["tokens_sent"] >= 5:
            break
        time.sleep(0.01)
    pending.stop()
    r = pending.wait(timeout=10)
    assert r.finish_reason == "cancelled" and r.startswith("word ")
    assert fake_llm.wait_for_disconnect(model)["client_disconnected"]
