"""nbstream.batch.service against the fake server's batch services, through the real SDKs."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Coroutine
from typing import Any, TypeVar

import openai
import pytest

from fake_llm_fixture import point_sdks_at
from fake_llm_server import FakeLLMServer
from nbstream.batch import service as batch_service
from nbstream.batch.service import BatchStatus
from nbstream.errors import ProviderError
from nbstream.providers.base import Request
from nbstream.structured.schema import resolve_schema

OPENAI_KEY = "sk-batchtest-openai-5f1d3c9a7e2b4d60"
ANTHROPIC_KEY = "sk-ant-batchtest-8c4e2a1f9b7d3e50"
PROVIDERS = ["openai", "anthropic"]
LABEL = {"openai": "OpenAI", "anthropic": "Anthropic"}


def label(provider: str, server: Any) -> str:
    """How errors name the server: a base URL's own server is "the server at <URL>"."""
    if provider == "openai":
        return f"the server at {server.openai_base_url}"
    return LABEL[provider]


T = TypeVar("T")


@pytest.fixture
def server(fake_llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch) -> FakeLLMServer:
    point_sdks_at(monkeypatch, fake_llm, OPENAI_KEY, ANTHROPIC_KEY)
    return fake_llm


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def requests(model: str, n: int, **kw: Any) -> list[Request]:
    return [Request(prompt=f"question number {i}", model=model, **kw) for i in range(n)]


async def until_ended(provider: str, batch_id: str, timeout: float = 10.0) -> list[BatchStatus]:
    """Every status seen while polling, up to the first one in which results can be read."""
    seen: list[BatchStatus] = []
    deadline = time.monotonic() + timeout
    while True:
        seen.append(await batch_service.status(provider, batch_id))
        if seen[-1].state in batch_service.ENDED:
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"batch {batch_id} still running: {seen[-3:]}")
        await asyncio.sleep(0.02)


def raw_order(server: FakeLLMServer, batch_id: str) -> list[str]:
    """The custom_ids of the batch's raw output, in the order the server wrote them."""
    obj = server.batch(batch_id)["object"]
    url = (
        obj.get("results_url") or f"{server.openai_base_url}/files/{obj['output_file_id']}/content"
    )
    with urllib.request.urlopen(url, timeout=5) as resp:
        return [json.loads(line)["custom_id"] for line in resp.read().splitlines()]


# --------------------------------------------------------------------------- the happy path


@pytest.mark.parametrize("provider", PROVIDERS)
def test_submit_status_results_in_row_order(server: FakeLLMServer, provider: str) -> None:
    texts = ["zero", "one", "two", "three", "four"]
    model = server.script(texts=texts, batch_seconds=0.1)

    async def go() -> tuple[str, list[BatchStatus], list[Any]]:
        batch_id = await batch_service.submit(
            provider, requests(model, 5), metadata={"run": "row-order"}
        )
        seen = await until_ended(provider, batch_id)
        answers = await batch_service.results(provider, batch_id, 5, model_id=f"{provider}:{model}")
        return batch_id, seen, answers

    batch_id, seen, answers = run(go())
    assert batch_id.startswith("batch_" if provider == "openai" else "msgbatch_")
    assert [a.text for a in answers] == texts
    assert [a.finish_reason for a in answers] == ["stop"] * 5
    assert {a.model for a in answers} == {f"{provider}:{model}"}
    assert all(a.error is None and a.prompt == "" for a in answers)
    # the server wrote them out of order: the client mapped them by custom_id
    assert raw_order(server, batch_id) == [f"row-{i}" for i in reversed(range(5))]

    assert seen[0].state == "running"
    assert seen[-1] == BatchStatus(
        "ended", "completed" if provider == "openai" else "ended", 5, 5, 0, 0
    )
    running = [s for s in seen if s.state == "running"]
    if provider == "openai":  # counts move live
        assert any(0 < s.succeeded < 5 for s in running), running
    else:  # Anthropic reports row counts only once the batch has ended
        assert all(s.total == 5 and s.succeeded == 0 for s in running), running

    view = server.batch(batch_id)
    assert view["done"] == 5 and view["stop"] is None
    if provider == "openai":
        assert view["object"]["metadata"] == {"run": "row-order"}
    records = server.log(model)
    assert [r["custom_id"] for r in records] == [f"row-{i}" for i in range(5)]
    assert all(r["batch"] == batch_id and "stream" not in r["body"] for r in records)
    assert records[3]["body"]["messages"][-1] == {"role": "user", "content": "question number 3"}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_error_rows_keep_their_error(server: FakeLLMServer, provider: str) -> None:
    model = server.script(status=429, status_every=3, error_message="slow down", retry_after=1)

    async def go() -> tuple[list[BatchStatus], list[Any]]:
        batch_id = await batch_service.submit(provider, requests(model, 6))
        seen = await until_ended(provider, batch_id)
        return seen, await batch_service.results(provider, batch_id, 6, model_id="m")

    seen, answers = run(go())
    failed = [i for i, a in enumerate(answers) if a.finish_reason == "error"]
    assert failed == [2, 5]  # requests 3 and 6 to the model
    for i in failed:
        assert answers[i] == ""
        assert answers[i].error is not None
        assert answers[i].error.startswith(
            f"HTTP 429 from {label(provider, server)}: slow down — rate"
        )
    for i in (0, 1, 3, 4):
        assert (answers[i].text, answers[i].finish_reason) == ("Hello world!", "stop")
    assert (seen[-1].state, seen[-1].succeeded, seen[-1].failed) == ("ended", 4, 2)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_cancel_mid_way_keeps_the_finished_rows(server: FakeLLMServer, provider: str) -> None:
    model = server.script(texts=[f"answer {i}" for i in range(8)], batch_seconds=0.2)

    async def go() -> tuple[str, BatchStatus, list[BatchStatus], list[Any]]:
        batch_id = await batch_service.submit(provider, requests(model, 8))
        await asyncio.to_thread(server.wait_batch, batch_id, done=2)
        await batch_service.cancel(provider, batch_id)
        right_after = await batch_service.status(provider, batch_id)
        seen = await until_ended(provider, batch_id)
        await batch_service.cancel(provider, batch_id)  # already ended: nothing happens
        answers = await batch_service.results(provider, batch_id, 8, model_id="m")
        return batch_id, right_after, seen, answers

    batch_id, right_after, seen, answers = run(go())
    view = server.batch(batch_id)
    done = view["done"]
    assert 2 <= done < 8
    assert view["stop"] == "cancel"
    assert right_after.state in ("cancelling", "cancelled")
    assert seen[-1].state == "cancelled"
    assert (seen[-1].succeeded, seen[-1].cancelled, seen[-1].total) == (done, 8 - done, 8)
    assert [a.text for a in answers[:done]] == [f"answer {i}" for i in range(done)]
    assert all(a.finish_reason == "stop" for a in answers[:done])
    assert all(
        (a.text, a.finish_reason, a.error) == ("", "cancelled", None) for a in answers[done:]
    )
    assert len(server.log(model)) == done  # the cancelled rows never ran
    assert any(r["path"].endswith("/cancel") for r in server.batch_log(batch_id))


@pytest.mark.parametrize("provider", PROVIDERS)
def test_expired_rows_say_so(server: FakeLLMServer, provider: str) -> None:
    model = server.script(batch_seconds=0.2)

    async def go() -> tuple[list[BatchStatus], list[Any]]:
        batch_id = await batch_service.submit(provider, requests(model, 4))
        await asyncio.to_thread(server.wait_batch, batch_id, done=1)
        server.expire_batch(batch_id)
        seen = await until_ended(provider, batch_id)
        return seen, await batch_service.results(provider, batch_id, 4, model_id="m")

    seen, answers = run(go())
    assert seen[-1].state == "expired"
    assert answers[0].finish_reason == "stop"
    late = [a for a in answers if a.finish_reason != "stop"]
    assert late and all(
        (a.text, a.finish_reason, a.error)
        == ("", "error", "expired before the batch service ran it")
        for a in late
    )


# --------------------------------------------------------------------------- what rows carry


@pytest.mark.parametrize("provider", PROVIDERS)
def test_usage_options_and_length(server: FakeLLMServer, provider: str) -> None:
    model = server.script(
        tokens=["a", "b"],
        finish_reason="length",
        usage={"input_tokens": 12, "output_tokens": 7, "cached_input_tokens": 4},
    )
    reqs = requests(model, 1, system="be brief", max_tokens=7, temperature=0.3, stop=("x",))

    async def go() -> list[Any]:
        batch_id = await batch_service.submit(provider, reqs)
        await until_ended(provider, batch_id)
        return await batch_service.results(provider, batch_id, 2, model_id="m")

    answer, missing = run(go())
    assert (answer.text, answer.finish_reason) == ("ab", "length")
    assert answer.usage == {"input_tokens": 12, "output_tokens": 7, "cached_input_tokens": 4}
    assert (missing.text, missing.finish_reason, missing.error) == ("", "cancelled", None)
    [record] = server.log(model)
    body = record["body"]
    assert body["temperature"] == 0.3 and body["max_tokens"] == 7
    if provider == "openai":
        assert body["stop"] == ["x"]
        assert body["messages"][0] == {"role": "system", "content": "be brief"}
    else:
        assert (body["stop_sequences"], body["system"]) == (["x"], "be brief")


CITY = resolve_schema(
    {
        "type": "object",
        "title": "City",
        "properties": {"name": {"type": "string"}, "pop": {"type": "integer"}},
        "required": ["name", "pop"],
    }
).wire


@pytest.mark.parametrize("provider", PROVIDERS)
def test_schema_rows_answer_json(server: FakeLLMServer, provider: str) -> None:
    model = server.script(text='{"name": "Oslo", "pop": 700000}', token_size=5)

    async def go() -> list[Any]:
        batch_id = await batch_service.submit(provider, requests(model, 2, schema=CITY))
        await until_ended(provider, batch_id)
        return await batch_service.results(provider, batch_id, 2, model_id="m")

    answers = run(go())
    for answer in answers:
        assert json.loads(answer.text) == {"name": "Oslo", "pop": 700000}
        assert answer.finish_reason == "stop"
    body = server.log(model)[0]["body"]
    if provider == "openai":
        assert body["response_format"]["json_schema"]["name"] == "City"
    else:
        assert body["tool_choice"] == {"type": "tool", "name": "City"}
        assert body["tools"][0]["input_schema"] == CITY["schema"]


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("call", ["submit", "status", "results", "cancel"])
@pytest.mark.parametrize("provider", ["ollama", "local", "vllm"])
def test_unsupported_provider(provider: str, call: str) -> None:
    calls = {
        "submit": lambda: batch_service.submit(provider, [Request("hi", "m")]),
        "status": lambda: batch_service.status(provider, "b"),
        "results": lambda: batch_service.results(provider, "b", 1, model_id="m"),
        "cancel": lambda: batch_service.cancel(provider, "b"),
    }
    with pytest.raises(ValueError, match="only openai and anthropic have one") as info:
        run(calls[call]())
    assert "vLLM" in str(info.value)
    assert "--base-url with the normal streaming mode" in str(info.value)


def test_submit_needs_requests() -> None:
    with pytest.raises(ValueError, match="at least one request"):
        run(batch_service.submit("openai", []))


@pytest.mark.parametrize("provider", PROVIDERS)
def test_api_keys_never_in_error_messages(server: FakeLLMServer, provider: str) -> None:
    key = OPENAI_KEY if provider == "openai" else ANTHROPIC_KEY
    env = "OPENAI_API_KEY" if provider == "openai" else "ANTHROPIC_API_KEY"
    refused = server.script(
        batch_create_status=401, error_message=f"Incorrect API key provided: {key}"
    )
    with pytest.raises(ProviderError) as info:
        run(batch_service.submit(provider, requests(refused, 2)))
    message = str(info.value)
    assert message.startswith(
        f"HTTP 401 from {label(provider, server)}: Incorrect API key provided: ***"
    )
    assert f"check {env}" in message
    assert key[:8] not in message
    assert info.value.status == 401

    rows = server.script(status=403, status_every=2, error_message=f"key {key[:12]}… may not")

    async def go() -> list[Any]:
        batch_id = await batch_service.submit(provider, requests(rows, 2))
        await until_ended(provider, batch_id)
        return await batch_service.results(provider, batch_id, 2, model_id="m")

    ok, failed = run(go())
    assert ok.finish_reason == "stop"
    assert failed.error == (
        f"HTTP 403 from {label(provider, server)}: key ***… may not — the API key may not use this "
        f"model; check {env} and the model name"
    )

    with pytest.raises(ProviderError, match=r"^HTTP 404 from .*: .*nope") as missing:
        run(batch_service.status(provider, "batch_nope"))
    assert key[:8] not in str(missing.value)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_results_while_running_raise(server: FakeLLMServer, provider: str) -> None:
    model = server.script(batch_seconds=0.3)

    async def go() -> None:
        batch_id = await batch_service.submit(provider, requests(model, 3))
        try:
            with pytest.raises(ProviderError, match="has no results yet: it is"):
                await batch_service.results(provider, batch_id, 3, model_id="m")
        finally:
            await batch_service.cancel(provider, batch_id)

    run(go())


def test_openai_batch_rejected_as_a_whole(server: FakeLLMServer) -> None:
    model = server.script()
    lines = [
        {"custom_id": "row-0", "method": "POST", "url": "/v1/chat/completions", "body": {}},
        {"custom_id": "row-1", "method": "POST", "url": "/v1/embeddings", "body": {"model": model}},
    ]
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()

    async def go() -> tuple[list[BatchStatus], list[Any]]:
        async with openai.AsyncOpenAI(max_retries=0) as client:
            uploaded = await client.files.create(file=("in.jsonl", data), purpose="batch")
            batch = await client.batches.create(
                input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
            )
        seen = await until_ended("openai", batch.id)
        return seen, await batch_service.results("openai", batch.id, 2, model_id="m")

    seen, answers = run(go())
    final = seen[-1]
    assert (final.state, final.provider_status) == ("failed", "failed")
    assert final.error is not None
    assert final.error.startswith("OpenAI rejected the batch: line 1: body.model is missing.")
    assert "line 2: The url '/v1/embeddings' does not match" in final.error
    assert [(a.finish_reason, a.error) for a in answers] == [("error", final.error)] * 2


def test_missing_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ProviderError, match="No API key for OpenAI: set the OPENAI_API_KEY"):
        run(batch_service.submit("openai", [Request("hi", "m")]))
    with pytest.raises(ProviderError, match="No API key for Anthropic: set the ANTHROPIC_API_KEY"):
        run(batch_service.status("anthropic", "msgbatch_x"))


def test_base_url_overrides_the_environment(
    server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://user:pw@127.0.0.1:9/v1")  # nothing listens
    model = server.script(text="via base_url")
    url = server.openai_base_url

    async def go() -> list[Any]:
        batch_id = await batch_service.submit("openai", requests(model, 1, base_url=url))
        while (await batch_service.status("openai", batch_id, base_url=url)).state == "running":
            await asyncio.sleep(0.02)
        return await batch_service.results("openai", batch_id, 1, model_id="m", base_url=url)

    [answer] = run(go())
    assert answer.text == "via base_url"
    with pytest.raises(
        ProviderError, match=r"^Could not reach the server at http://\*\*\*@127"
    ) as info:
        run(batch_service.status("openai", "batch_x"))
    assert "pw" not in str(info.value)
