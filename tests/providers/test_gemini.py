"""The Gemini provider (``gemini:``) through the real google-genai SDK against the test
server's Gemini wire format (``:streamGenerateContent?alt=sse``). The fault table's rows run
for Gemini in test_faults.py; this file covers its request format, Stop, schemas,
conversations, prices and its registration."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time

import pytest

import nbstream
from fake_llm_fixture import GEMINI_KEY, point_sdks_at
from nbstream.engine import TRUNCATED, Stream
from nbstream.providers import capabilities, get_provider, parse_model_id
from nbstream.providers.base import Request
from nbstream.providers.gemini import to_gemini


@dataclasses.dataclass
class City:
    city: str
    population: int


@pytest.fixture(autouse=True)
def _keys(monkeypatch, fake_llm):
    point_sdks_at(monkeypatch, fake_llm, "sk-gemini-suite-openai", "sk-ant-gemini-suite")
    monkeypatch.delenv("NBSTREAM_MODEL", raising=False)


def ask(model: str, prompt: str = "Say hello", **options):
    return nbstream.ask_sync(prompt, model=f"gemini:{model}", display="none", **options)


def test_a_full_answer_and_the_request_in_gemini_format(fake_llm):
    model = fake_llm.script(
        tokens=["Hello", ", ", "world", "!"], usage={"input_tokens": 7, "output_tokens": 4}
    )
    r = ask(model, system="be brief", temperature=0.2, max_tokens=50, top_p=0.9, stop=["END"])
    assert r == "Hello, world!" and r.finish_reason == "stop" and r.error is None
    assert r.usage == {"input_tokens": 7, "output_tokens": 4} and r.model == f"gemini:{model}"
    record = fake_llm.log(model)[-1]
    assert record["path"] == f"/v1beta/models/{model}:streamGenerateContent"
    body = record["body"]
    assert body["contents"] == [{"role": "user", "parts": [{"text": "Say hello"}]}]
    assert body["systemInstruction"]["parts"] == [{"text": "be brief"}]
    assert body["generationConfig"] == {
        "temperature": 0.2,
        "topP": 0.9,
        "maxOutputTokens": 50,
        "stopSequences": ["END"],
    }
    assert record["headers"]["x-goog-api-key"] == "<redacted>"  # the key travels as a header


def test_max_tokens_is_a_length_finish(fake_llm):
    r = ask(fake_llm.script(tokens=["a", "b"], finish_reason="length"))
    assert r == "ab" and r.finish_reason == "length"


def test_a_safety_stop_is_an_error_that_keeps_the_text(fake_llm):
    r = ask(fake_llm.script(tokens=["Once ", "upon"], finish_reason="SAFETY"))
    assert r == "Once upon" and r.finish_reason == "error"
    assert r.error == "Gemini stopped the answer: SAFETY"


def test_a_drop_without_finish_reason_is_a_truncation(fake_llm):
    r = ask(fake_llm.script(tokens=[f"t{i} " for i in range(20)], drop_after=5))
    assert r == "t0 t1 t2 t3 t4 " and r.finish_reason == "error" and r.error == TRUNCATED


def test_a_reset_connection_keeps_the_text(fake_llm):
    model = fake_llm.script(
        tokens=[f"t{i} " for i in range(9)],
        drop_after=3,
        drop_mode="reset",
        framing="chunked",
        delay=0.05,
    )
    r = ask(model)
    assert r == "t0 t1 t2 " and r.finish_reason == "error"
    assert "broke mid-stream" in r.error


def test_stop_closes_the_upstream_response_at_once(fake_llm):
    model = fake_llm.script(tokens=[f"{i} " for i in range(500)], delay=0.01)
    s = Stream(get_provider("gemini"), Request(prompt="count", model=model), model_id="gemini:x")

    async def main():
        task = asyncio.ensure_future(s.run())
        while s.chunks < 10:
            await asyncio.sleep(0.002)
        stopped_wall = time.time()
        s.stop()
        return await task, stopped_wall

    r, stopped_wall = asyncio.run(main())
    assert r.finish_reason == "cancelled" and 10 <= r.chunks < 500
    record = fake_llm.wait_for_disconnect(model, timeout=3)
    latency = record["disconnected_at"] - stopped_wall
    print(f"gemini: server saw the client go {latency * 1000:.1f} ms after stop()")
    assert latency < 1.0 and record["tokens_sent"] < 500


def test_401_names_the_key_variable_and_hides_the_key(fake_llm):
    model = fake_llm.script(status=401, error_message=f"API key not valid: {GEMINI_KEY}")
    r = ask(model)
    assert r.error.startswith("HTTP 401 from Gemini") and "check GEMINI_API_KEY" in r.error
    assert GEMINI_KEY not in r.error and GEMINI_KEY[:10] not in r.error


def test_google_api_key_works_too_and_is_named(fake_llm, monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY")
    monkeypatch.setenv("GOOGLE_API_KEY", "AIza-google-key-SECRET-42424242")
    assert ask(fake_llm.script(tokens=["ok"])) == "ok"
    r = ask(fake_llm.script(status=403, error_message="denied"))
    assert "check GOOGLE_API_KEY" in r.error


def test_no_key_says_which_variable_to_set(monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY")
    r = ask("gemini-2.5-flash")
    assert r.finish_reason == "error" and "set the GEMINI_API_KEY environment variable" in r.error


def test_a_schema_goes_as_gemini_native_response_schema(fake_llm):
    text = json.dumps({"city": "Paris", "population": 2100000})
    model = fake_llm.script(text=text, token_size=7)
    r = ask(model, "Biggest French city?", schema=City)
    assert r.finish_reason == "stop" and r.data == City("Paris", 2100000)
    config = fake_llm.log(model)[-1]["body"]["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    schema = config["responseJsonSchema"]
    assert schema["type"] == "object" and set(schema["properties"]) == {"city", "population"}
    body = fake_llm.log(model)[-1]["body"]
    assert "systemInstruction" not in body  # native: no instructions in the prompt


def test_a_conversation_goes_as_gemini_contents(fake_llm):
    model = fake_llm.script(texts=["Blue.", "It is the sky's colour."])
    first = ask(model, "Name a colour.", chat="gemini-suite")
    second = ask(model, "Why that one?", chat="gemini-suite")
    assert (first, second) == ("Blue.", "It is the sky's colour.")
    contents = fake_llm.log(model)[-1]["body"]["contents"]
    assert contents == [
        {"role": "user", "parts": [{"text": "Name a colour."}]},
        {"role": "model", "parts": [{"text": "Blue."}]},
        {"role": "user", "parts": [{"text": "Why that one?"}]},
    ]


def test_to_gemini_merges_around_an_empty_answer_and_keeps_the_system_apart():
    history = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "b"},
    ]
    system, contents = to_gemini(history, "c")
    assert system == "sys"
    assert contents == [{"role": "user", "parts": [{"text": "a\n\nb\n\nc"}]}]


def test_prices_are_in_its_table_and_cached_tokens_count_as_cached(fake_llm):
    usage = {"input_tokens": 1_000_000, "output_tokens": 1_000_000, "cached_input_tokens": 0}
    model = "gemini-2.5-flash"
    fake_llm.script(tokens=["x"])  # the default script answers any model name
    plain = ask(model)
    assert plain.finish_reason == "stop" and plain.cost is not None and plain.cost > 0
    price = nbstream.pricing.price_of("gemini:gemini-2.5-flash")
    assert price is not None and price.cost(usage) == pytest.approx(0.30 + 2.50)
    cached = {**usage, "cached_input_tokens": 1_000_000}
    assert price.cost(cached) == pytest.approx(0.03 + 2.50)
    assert nbstream.pricing.cost("gemini:gemini-2.5-flash-001", {"input_tokens": 1}) is None


def test_cached_tokens_reported_by_the_server_reach_the_usage(fake_llm):
    model = fake_llm.script(
        tokens=["x"], usage={"input_tokens": 100, "output_tokens": 1, "cached_input_tokens": 60}
    )
    r = ask(model)
    assert r.usage == {"input_tokens": 100, "output_tokens": 1, "cached_input_tokens": 60}


def test_gemini_registers_through_the_public_door_with_its_capabilities():
    caps = capabilities("gemini")
    assert parse_model_id("gemini") == ("gemini", caps.default_model)
    assert caps.key_variables == ("GEMINI_API_KEY", "GOOGLE_API_KEY")
    assert caps.conversation and caps.schema and caps.prices is not None
    assert ("gemini", caps) in nbstream.providers.registered()


def test_the_key_is_masked_wherever_a_configured_key_is(monkeypatch):
    from nbstream.providers.common import redact

    assert GEMINI_KEY not in redact(f"echo {GEMINI_KEY} and {GEMINI_KEY[:12]}")
