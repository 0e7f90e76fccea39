"""OpenAI and Anthropic providers through the real SDKs, over HTTP, against the fake server."""

from __future__ import annotations

import asyncio
import time

import pytest

import nbstream
from fake_llm_fixture import point_sdks_at
from nbstream.engine import TRUNCATED, Stream
from nbstream.providers import get_provider
from nbstream.providers.base import Request
from nbstream.settings import Settings

OPENAI_KEY = "sk-test-openai-SECRET-0001"
ANTHROPIC_KEY = "sk-ant-test-SECRET-0002"


@pytest.fixture(autouse=True)
def _keys(monkeypatch, fake_llm):
    point_sdks_at(monkeypatch, fake_llm, OPENAI_KEY, ANTHROPIC_KEY)


PROVIDERS = ["openai", "anthropic"]


def stream(provider, model, *, settings=None, **request_fields):
    """Run one stream: ``request_fields`` go to the Request, ``settings`` to the engine."""
    request = Request(prompt="Say hello to the test", model=model, **request_fields)
    s = Stream(
        get_provider(provider),
        request,
        model_id=f"{provider}:{model}",
        settings=Settings(**{"idle_timeout": 10.0, **(settings or {})}),
    )
    return s, asyncio.run(s.run())


@pytest.mark.parametrize("provider", PROVIDERS)
def test_full_answer(fake_llm, provider):
    model = fake_llm.script(
        tokens=["Hello", ", ", "world", "!"], usage={"input_tokens": 7, "output_tokens": 4}
    )
    _, r = stream(provider, model, system="be brief", temperature=0.2, max_tokens=50)
    assert r == "Hello, world!" and r.finish_reason == "stop" and r.error is None
    assert r.usage == {"input_tokens": 7, "output_tokens": 4}
    body = fake_llm.log(model)[-1]["body"]
    assert body["stream"] is True and body["temperature"] == 0.2
    if provider == "openai":
        assert body["messages"][0] == {"role": "system", "content": "be brief"}
        assert body["stream_options"] == {"include_usage": True}
    else:
        assert body["system"] == "be brief" and body["max_tokens"] == 50


@pytest.mark.parametrize("provider", PROVIDERS)
def test_length(fake_llm, provider):
    model = fake_llm.script(tokens=["a", "b"], finish_reason="length")
    _, r = stream(provider, model)
    assert r == "ab" and r.finish_reason == "length"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_dropped_connection_is_an_error_with_partial_text(fake_llm, provider):
    model = fake_llm.script(tokens=[f"t{i} " for i in range(20)], drop_after=5)
    _, r = stream(provider, model)
    assert r == "t0 t1 t2 t3 t4 " and r.finish_reason == "error" and r.error == TRUNCATED


@pytest.mark.parametrize("provider", PROVIDERS)
def test_reset_connection_is_an_error_with_partial_text(fake_llm, provider):
    model = fake_llm.script(
        tokens=[f"t{i} " for i in range(20)], drop_after=3, drop_mode="reset", framing="chunked"
    )
    _, r = stream(provider, model)
    assert r == "t0 t1 t2 " and r.finish_reason == "error"
    assert "broke mid-stream" in r.error


@pytest.mark.parametrize("provider", PROVIDERS)
def test_malformed_event_is_an_error_with_partial_text(fake_llm, provider):
    model = fake_llm.script(tokens=["a", "b", "c", "d"], malformed_after=2)
    _, r = stream(provider, model)
    assert r == "ab" and r.finish_reason == "error"
    assert "malformed event" in r.error


@pytest.mark.parametrize(
    "provider, env", [("openai", "OPENAI_API_KEY"), ("anthropic", "ANTHROPIC_API_KEY")]
)
def test_http_401_says_what_to_fix_and_hides_the_key(fake_llm, provider, env):
    model = fake_llm.script(
        status=401, error_message=f"Incorrect API key provided: {OPENAI_KEY} {ANTHROPIC_KEY}"
    )
    _, r = stream(provider, model)
    assert r.finish_reason == "error" and r == ""
    assert r.error.startswith("HTTP 401 from ") and env in r.error
    assert OPENAI_KEY not in r.error and ANTHROPIC_KEY not in r.error and "***" in r.error
    assert OPENAI_KEY not in repr(r) and ANTHROPIC_KEY not in repr(r)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_http_500_is_retried_by_nbstream_then_reported(fake_llm, provider):
    model = fake_llm.script(status=500, error_message="upstream exploded")
    _, r = stream(provider, model, settings={"http_retries": 2, "retry_max_wait": 0.1})
    assert r.finish_reason == "error" and "HTTP 500" in r.error and "upstream exploded" in r.error
    assert r.error.endswith("(after 2 retries)")
    assert len(fake_llm.log(model)) == 3  # nbstream's retries; the SDK's own are off


@pytest.mark.parametrize("provider", PROVIDERS)
def test_http_429_once_then_success(fake_llm, provider):
    model = fake_llm.script(status=429, status_times=1, tokens=["ok"])
    _, r = stream(provider, model, settings={"retry_max_wait": 0.1})
    assert r == "ok" and r.finish_reason == "stop" and len(fake_llm.log(model)) == 2


@pytest.mark.parametrize("provider", PROVIDERS)
def test_stall_hits_the_idle_timeout_and_closes_the_connection(fake_llm, provider):
    model = fake_llm.script(tokens=["a", "b", "c", "d"], stall_after=2, stall_seconds=30)
    t0 = time.monotonic()
    _, r = stream(provider, model, settings={"idle_timeout": 0.5})
    assert time.monotonic() - t0 < 5
    assert r == "ab" and r.finish_reason == "error" and "(idle timeout)" in r.error
    record = fake_llm.wait_for_disconnect(model, timeout=3)
    assert record["tokens_sent"] == 2 and not record["completed"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_stop_closes_the_upstream_response_at_once(fake_llm, provider):
    model = fake_llm.script(tokens=[f"{i} " for i in range(500)], delay=0.01)
    request = Request(prompt="count", model=model)
    s = Stream(get_provider(provider), request, model_id=provider + ":x")

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
    print(f"{provider}: server saw the client go {latency * 1000:.1f} ms after stop()")
    assert latency < 1.0
    assert record["tokens_sent"] < 500


def test_missing_openai_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv("OPENAI_BASE_URL")
    _, r = stream("openai", "gpt-4o-mini")
    assert r.finish_reason == "error" and "OPENAI_API_KEY" in r.error and "getpass" in r.error


def test_missing_anthropic_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    _, r = stream("anthropic", "claude-x")
    assert r.finish_reason == "error" and "ANTHROPIC_API_KEY" in r.error


def test_openai_compatible_server_needs_no_key(fake_llm, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv("OPENAI_BASE_URL")
    model = fake_llm.script(tokens=["compatible"])
    _, r = stream("openai", model, base_url=fake_llm.openai_base_url, max_tokens=5)
    assert r == "compatible" and r.finish_reason == "stop"
    assert fake_llm.log(model)[-1]["body"]["max_tokens"] == 5  # compatible servers' name


def test_ollama_uses_ollama_host(fake_llm, monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", fake_llm.url.removeprefix("http://"))
    model = fake_llm.script(tokens=["llama", "!"])
    _, r = stream("ollama", model)
    assert r == "llama!" and r.finish_reason == "stop"


def test_unreachable_server_is_a_readable_error(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    _, r = stream("openai", "gpt-x", settings={"http_retries": 1, "retry_max_wait": 0.1})
    assert r.finish_reason == "error"
    assert r.error.startswith("Could not reach the server at http://127.0.0.1:9/v1:")
    assert "is the server running" in r.error and r.error.endswith("(after 1 retry)")


def test_errors_name_openai_only_for_api_openai_com():
    from nbstream.providers.openai_chat import connection

    assert connection("https://api.openai.com/v1")[2].label == "OpenAI"
    wire = connection("http://127.0.0.1:8080/v1?api-key=S3CRET")[2]
    assert wire.label == "the server at http://127.0.0.1:8080/v1?api-key=***"


def test_builtins_register_through_the_same_door_and_declare_what_they_can_do():
    from nbstream.providers import capabilities, registered

    names = [name for name, _ in registered()]
    assert names[:4] == ["openai", "ollama", "anthropic", "local"]
    assert capabilities("openai").default_if_set == ("OPENAI_API_KEY",)
    assert capabilities("openai").conversation_budget(None, None) == 100_000
    assert capabilities("openai").conversation_budget(None, "http://127.0.0.1:8000/v1") == 3_000
    assert capabilities("local").schema and not capabilities("local").batch
    assert capabilities("never-registered") == nbstream.Capabilities()


def test_a_registered_provider_declares_its_default_model_key_and_budget(monkeypatch):
    from nbstream.conversation import default_budget
    from nbstream.providers import DEFAULT_MODELS, capabilities, parse_model_id
    from nbstream.run import resolve_model
    from nbstream.settings import Settings

    async def gen(request):
        yield nbstream.Final("stop")

    caps = nbstream.Capabilities(
        default_model="m1", key_variables=("MINE_KEY",), default_if_set=("MINE_KEY",), budget=42
    )
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "NBSTREAM_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MINE_KEY", "k")
    nbstream.register_provider("mine_caps", gen, caps)
    try:
        assert parse_model_id("mine_caps") == ("mine_caps", "m1")
        assert resolve_model(Settings()) == ("mine_caps", "default: MINE_KEY is set")
        assert default_budget("mine_caps") == 42
    finally:
        from nbstream.providers import _PROVIDERS

        _PROVIDERS.pop("mine_caps")
        DEFAULT_MODELS.pop("mine_caps")
    assert capabilities("mine_caps") == nbstream.Capabilities()
