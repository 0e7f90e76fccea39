"""Tests proving the fake LLM server speaks both wire formats as the real SDKs expect."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import socket
import time
import urllib.error
import urllib.request
from typing import Any

import anthropic
import openai
import pytest

from fake_llm_server import FakeLLMServer
from nbstream.providers.common import transport_errors

# The SDK's own HTTP library's errors (httpx2 in recent releases, httpx before): these tests
# state what nbstream relies on, whichever library the installed SDK is built on.
TRANSPORT_ERRORS = transport_errors()

PROMPT = [{"role": "user", "content": "say hello to the world"}]  # 5 words


def oai(server: FakeLLMServer, **kw: Any) -> openai.OpenAI:
    kw.setdefault("max_retries", 0)
    return openai.OpenAI(base_url=server.openai_base_url, api_key="sk-test", **kw)


def aoai(server: FakeLLMServer, **kw: Any) -> openai.AsyncOpenAI:
    kw.setdefault("max_retries", 0)
    return openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="sk-test", **kw)


def ant(server: FakeLLMServer, **kw: Any) -> anthropic.Anthropic:
    kw.setdefault("max_retries", 0)
    return anthropic.Anthropic(base_url=server.anthropic_base_url, api_key="sk-ant-test", **kw)


def aant(server: FakeLLMServer, **kw: Any) -> anthropic.AsyncAnthropic:
    kw.setdefault("max_retries", 0)
    return anthropic.AsyncAnthropic(base_url=server.anthropic_base_url, api_key="sk-ant-test", **kw)


def oai_text(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def oai_finish(chunks: list[Any]) -> str | None:
    return [c.choices[0].finish_reason for c in chunks if c.choices][-1]


# --------------------------------------------------------------------------- OpenAI


def test_openai_sync_stream_with_usage(fake_llm: FakeLLMServer) -> None:
    model = fake_llm.script(tokens=["Hel", "lo", " there"])
    with oai(fake_llm) as client:
        stream = client.chat.completions.create(
            model=model, messages=PROMPT, stream=True, stream_options={"include_usage": True}
        )
        chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert oai_text(chunks) == "Hello there"
    assert oai_finish(chunks) == "stop"
    assert chunks[-1].choices == []
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (5, 3, 8)
    [record] = fake_llm.log(model)
    assert record["path"] == "/v1/chat/completions"
    assert record["body"]["messages"] == PROMPT
    assert record["stream"] is True
    assert (record["tokens_sent"], record["completed"]) == (3, True)
    assert record["client_disconnected"] is False


def test_openai_sync_stream_without_usage_and_length(fake_llm: FakeLLMServer) -> None:
    model = fake_llm.script(tokens=["a", "b"], finish_reason="length")
    with oai(fake_llm) as client:
        chunks = list(client.chat.completions.create(model=model, messages=PROMPT, stream=True))
    assert oai_text(chunks) == "ab"
    assert oai_finish(chunks) == "length"
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)


def test_openai_async_stream_chunked(fake_llm: FakeLLMServer) -> None:
    model = fake_llm.script(
        tokens=["x", "y", "z"], usage={"input_tokens": 11, "output_tokens": 7}, framing="chunked"
    )

    async def run() -> list[Any]:
        async with aoai(fake_llm) as client:
            stream = await client.chat.completions.create(
                model=model, messages=PROMPT, stream=True, stream_options={"include_usage": True}
            )
            return [chunk async for chunk in stream]

    chunks = asyncio.run(run())
    assert oai_text(chunks) == "xyz"
    assert oai_finish(chunks) == "stop"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 18


def test_openai_streams_incrementally(fake_llm: FakeLLMServer) -> None:
    model = fake_llm.script(tokens=["a", "b", "c"], delay=0.15, first_delay=0.2)
    arrivals: list[float] = []
    with oai(fake_llm) as client:
        stream = client.chat.completions.create(model=model, messages=PROMPT, stream=True)
        opened = time.monotonic()
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                arrivals.append(time.monotonic())
    assert len(arrivals) == 3
    assert arrivals[0] - opened >= 0.15
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert all(0.1 <= g < 0.5 for g in gaps), gaps


def test_openai_non_stream(fake_llm: FakeLLMServer) -> None:
    model = fake_llm.script(text="0123456789", token_size=4)
    with oai(fake_llm) as client:
        result = client.chat.completions.create(model=model, messages=PROMPT)
    assert result.choices[0].message.content == "0123456789"
    assert result.choices[0].finish_reason == "stop"
    assert result.usage is not None and result.usage.completion_tokens == 3


def test_large_text_split_into_tokens(fake_llm: FakeLLMServer) -> None:
    text = "".join(f"line {i} of a long markdown answer\n" for i in range(600))
    model = fake_llm.script(text=text, token_size=20)
    with oai(fake_llm) as client:
        chunks = list(client.chat.completions.create(model=model, messages=PROMPT, stream=True))
    assert oai_text(chunks) == text
    assert fake_llm.log(model)[-1]["tokens_sent"] == -(-len(text) // 20)


def test_unknown_model_gets_default_script(fake_llm: FakeLLMServer) -> None:
    with oai(fake_llm) as client:
        chunks = list(client.chat.completions.create(model="gpt-x", messages=PROMPT, stream=True))
    assert oai_text(chunks) == "Hello world!"


def test_script_rejects_bad_spec(fake_llm: FakeLLMServer) -> None:
    with pytest.raises(ValueError, match="unknown script keys"):
        fake_llm.script(tokenz=["a"])
    with pytest.raises(ValueError, match="finish_reason"):
        fake_llm.script(finish_reason="tool_calls")
    assert fake_llm.script() != fake_llm.script()


# --------------------------------------------------------------------------- Anthropic


def test_anthropic_create_stream(fake_llm: FakeLLMServer) -> None:
    model = fake_llm.script(tokens=["Bon", "jour"])
    with ant(fake_llm) as client:
        events = list(
            client.messages.create(model=model, max_tokens=50, messages=PROMPT, stream=True)
        )
    types = [e.type for e in events]
    assert types == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
    assert text == "Bonjour"
    start, delta = events[0], events[-2]
    assert start.type == "message_start" and delta.type == "message_delta"
    assert start.message.model == model
    assert start.message.usage.input_tokens == 5
    assert delta.delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens == 2
    [record] = fake_llm.log(model)
    assert record["path"] == "/v1/messages"
    assert record["body"]["max_tokens"] == 50
    assert record["completed"] is True


@pytest.mark.parametrize(
    ("finish", "stop_reason"), [("stop", "end_turn"), ("length", "max_tokens")]
)
def test_anthropic_stream_helper(
    fake_llm: FakeLLMServer,
    finish: str,
    stop_reason: str,
) -> None:
    model = fake_llm.script(tokens=["one", " two", " three"], finish_reason=finish)
    with (
        ant(fake_llm) as client,
        client.messages.stream(
            model=model, max_tokens=50, messages=PROMPT, system="be brief"
        ) as stream,
    ):
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "one two three"
    assert final.stop_reason == stop_reason
    assert final.content[0].type == "text" and final.content[0].text == text
    assert (final.usage.input_tokens, final.usage.output_tokens) == (7, 3)


def test_anthropic_async_stream_helper(fake_llm: FakeLLMServer) -> None:
    model = fake_llm.script(tokens=["a", "b", "c"], delay=0.01, framing="chunked")

    async def run() -> tuple[str, str | None]:
        async with (
            aant(fake_llm) as client,
            client.messages.stream(model=model, max_tokens=50, messages=PROMPT) as stream,
        ):
            text = "".join([t async for t in stream.text_stream])
            final = await stream.get_final_message()
        return text, final.stop_reason

    assert asyncio.run(run()) == ("abc", "end_turn")


def test_anthropic_non_stream(fake_llm: FakeLLMServer) -> None:
    model = fake_llm.script(tokens=["x", "y"], finish_reason="length")
    with ant(fake_llm) as client:
        message = client.messages.create(model=model, max_tokens=5, messages=PROMPT)
    assert message.content[0].type == "text" and message.content[0].text == "xy"
    assert message.stop_reason == "max_tokens"


# --------------------------------------------------------------------------- faults


def test_drop_after_ends_streams_silently(fake_llm: FakeLLMServer) -> None:
    tokens = [f"t{i} " for i in range(10)]
    model = fake_llm.script(tokens=tokens, drop_after=3)
    with oai(fake_llm) as client:
        chunks = list(client.chat.completions.create(model=model, messages=PROMPT, stream=True))
    assert oai_text(chunks) == "t0 t1 t2 "
    assert oai_finish(chunks) is None
    [record] = fake_llm.log(model)
    assert (record["tokens_sent"], record["completed"]) == (3, False)

    model = fake_llm.script(tokens=tokens, drop_after=4)
    with (
        ant(fake_llm) as client,
        client.messages.stream(model=model, max_tokens=50, messages=PROMPT) as stream,
    ):
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "t0 t1 t2 t3 "
    assert final.stop_reason is None
    [record] = fake_llm.log(model)
    assert (record["tokens_sent"], record["completed"]) == (4, False)


@pytest.mark.parametrize(
    ("framing", "mode"), [("chunked", "fin"), ("close", "reset"), ("chunked", "reset")]
)
def test_drop_after_that_sdks_report(
    fake_llm: FakeLLMServer,
    framing: str,
    mode: str,
) -> None:
    """nbstream relies on this SDK behaviour: a drop the transport notices raises — as the
    SDK's APIConnectionError or, in some releases of either SDK, as the raw transport error
    (nbstream maps both: providers/common.py sdk_exceptions)."""
    model = fake_llm.script(tokens=list("abcdef"), drop_after=2, drop_mode=mode, framing=framing)
    with oai(fake_llm) as client, pytest.raises((openai.APIConnectionError, *TRANSPORT_ERRORS)):
        list(client.chat.completions.create(model=model, messages=PROMPT, stream=True))
    # some anthropic releases let the raw transport error escape from the stream
    model2 = fake_llm.script(tokens=list("abcdef"), drop_after=2, drop_mode=mode, framing=framing)
    with (
        ant(fake_llm) as client,
        pytest.raises((anthropic.APIConnectionError, *TRANSPORT_ERRORS)),
        client.messages.stream(model=model2, max_tokens=50, messages=PROMPT) as stream,
    ):
        list(stream.text_stream)
    for name in (model, model2):
        [record] = fake_llm.log(name)
        assert (record["tokens_sent"], record["completed"]) == (2, False)


def test_malformed_after_raises_json_error(fake_llm: FakeLLMServer) -> None:
    model = fake_llm.script(tokens=list("abcd"), malformed_after=2)
    seen: list[str] = []
    with oai(fake_llm) as client, pytest.raises(json.JSONDecodeError):
        for chunk in client.chat.completions.create(model=model, messages=PROMPT, stream=True):
            seen.append(oai_text([chunk]))
    assert "".join(seen) == "ab"

    model = fake_llm.script(tokens=list("abcd"), malformed_after=1)
    with (
        ant(fake_llm) as client,
        pytest.raises(json.JSONDecodeError),
        client.messages.stream(model=model, max_tokens=50, messages=PROMPT) as stream,
    ):
        list(stream.text_stream)


@pytest.mark.parametrize(
    ("status", "oai_exc", "ant_exc", "ant_type"),
    [
        (401, openai.AuthenticationError, anthropic.AuthenticationError, "authentication_error"),
        (429, openai.RateLimitError, anthropic.RateLimitError, "rate_limit_error"),
        (500, openai.InternalServerError, anthropic.InternalServerError, "api_error"),
    ],
)
def test_status_errors(
    fake_llm: FakeLLMServer,
    status: int,
    oai_exc: type[openai.APIStatusError],
    ant_exc: type[anthropic.APIStatusError],
    ant_type: str,
) -> None:
    model = fake_llm.script(status=status, error_message="nope, fake")
    with oai(fake_llm) as client, pytest.raises(oai_exc) as oai_info:
        client.chat.completions.create(model=model, messages=PROMPT, stream=True)
    assert oai_info.value.status_code == status
    assert "nope, fake" in oai_info.value.message  # the wording around it differs by release
    assert isinstance(oai_info.value.body, dict) and oai_info.value.body["message"] == "nope, fake"

    with ant(fake_llm) as client, pytest.raises(ant_exc) as ant_info:
        client.messages.create(model=model, max_tokens=5, messages=PROMPT, stream=True)
    assert ant_info.value.status_code == status
    body = ant_info.value.body
    assert isinstance(body, dict)
    assert body["error"] == {"type": ant_type, "message": "nope, fake"}
    assert [r["status"] for r in fake_llm.log(model)] == [status, status]


def test_status_times_then_success_on_retry(fake_llm: FakeLLMServer) -> None:
    model = fake_llm.script(status=500, status_times=1, tokens=["ok"])
    with oai(fake_llm, max_retries=1) as client:
        chunks = list(client.chat.completions.create(model=model, messages=PROMPT, stream=True))
    assert oai_text(chunks) == "ok"
    log = fake_llm.log(model)
    assert [r["status"] for r in log] == [500, 200]
    assert log[1]["headers"]["x-stainless-retry-count"] == "1"
    assert log[1]["completed"] is True


# --------------------------------------------------------------------------- disconnects


def test_stall_then_async_close_is_seen_promptly(fake_llm: FakeLLMServer) -> None:
    model = fake_llm.script(tokens=list("abcdef"), stall_after=2, stall_seconds=30)

    async def run() -> float:
        async with aoai(fake_llm) as client:
            stream = await client.chat.completions.create(model=model, messages=PROMPT, stream=True)
            got = ""
            async for chunk in stream:
                got += oai_text([chunk])
                if got == "ab":
                    break
            closed_at = time.time()
            await stream.close()
            return closed_at

    closed_at = asyncio.run(run())
    record = fake_llm.wait_for_disconnect(model, timeout=1.0)
    assert record["disconnected_at"] - closed_at < 0.5
    assert (record["tokens_sent"], record["completed"]) == (2, False)


def test_stall_then_sync_anthropic_exit_is_seen(fake_llm: FakeLLMServer) -> None:
    model = fake_llm.script(tokens=list("abcdef"), stall_after=1, framing="chunked")
    with ant(fake_llm) as client:
        with client.messages.stream(model=model, max_tokens=50, messages=PROMPT) as stream:
            assert next(iter(stream.text_stream)) == "a"
        closed_at = time.time()
        record = fake_llm.wait_for_disconnect(model, timeout=1.0)
    assert record["disconnected_at"] - closed_at < 0.5
    assert (record["tokens_sent"], record["completed"]) == (1, False)


def test_cancelled_consumer_is_seen(fake_llm: FakeLLMServer) -> None:
    model = fake_llm.script(tokens=[f"w{i} " for i in range(200)], delay=0.05)

    async def run() -> float:
        async with aoai(fake_llm) as client:
            three = asyncio.Event()

            async def consume() -> None:
                stream = await client.chat.completions.create(
                    model=model, messages=PROMPT, stream=True
                )
                n = 0
                async for chunk in stream:
                    n += bool(oai_text([chunk]))
                    if n == 3:
                        three.set()

            task = asyncio.create_task(consume())
            await asyncio.wait_for(three.wait(), 5)
            cancelled_at = time.time()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return cancelled_at

    cancelled_at = asyncio.run(run())
    record = fake_llm.wait_for_disconnect(model, timeout=1.0)
    assert record["disconnected_at"] - cancelled_at < 0.5
    assert 3 <= record["tokens_sent"] < 10
    assert record["completed"] is False


def test_wait_for_disconnect_fails_without_disconnect(fake_llm: FakeLLMServer) -> None:
    model = fake_llm.script()
    with oai(fake_llm) as client:
        list(client.chat.completions.create(model=model, messages=PROMPT, stream=True))
    with pytest.raises(AssertionError, match="no client disconnect"):
        fake_llm.wait_for_disconnect(model, timeout=0.2)


# --------------------------------------------------------------------------- hygiene


def test_log_redacts_api_keys(fake_llm: FakeLLMServer) -> None:
    model = fake_llm.script()
    with oai(fake_llm) as client:
        list(client.chat.completions.create(model=model, messages=PROMPT, stream=True))
    # anthropic 2.x sends its key as "authorization: Bearer"; add x-api-key to check that too
    with ant(fake_llm, default_headers={"x-api-key": "sk-ant-test"}) as client:
        client.messages.create(model=model, max_tokens=5, messages=PROMPT)
    log = fake_llm.log(model)
    assert len(log) == 2
    dumped = json.dumps(log)
    assert "sk-test" not in dumped and "sk-ant-test" not in dumped
    assert log[0]["headers"]["authorization"] == "<redacted>"
    assert log[1]["headers"]["authorization"] == "<redacted>"
    assert log[1]["headers"]["x-api-key"] == "<redacted>"


def _listening_addresses(port: int) -> list[str]:
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                rows = fh.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            local, state = row.split()[1], row.split()[3]
            addr, port_hex = local.rsplit(":", 1)
            if state == "0A" and int(port_hex, 16) == port:
                found.append(addr)
    return found


def test_binds_loopback_only(fake_llm: FakeLLMServer) -> None:
    port = int(fake_llm.url.rsplit(":", 1)[1])
    if os.path.exists("/proc/net/tcp"):
        assert _listening_addresses(port) == ["0100007F"]  # 127.0.0.1, little-endian hex
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.254.254.254", 1))  # UDP: picks the outgoing interface, sends nothing
        own_ip = probe.getsockname()[0]
    except OSError:
        own_ip = "127.0.0.1"
    finally:
        probe.close()
    if not own_ip.startswith("127."):
        with pytest.raises(OSError):
            socket.create_connection((own_ip, port), timeout=1).close()


def test_stop_leaves_no_process() -> None:
    server = FakeLLMServer().start()
    pid = server.pid
    os.kill(pid, 0)  # alive
    with oai(server) as client:
        assert (
            oai_text(list(client.chat.completions.create(model="m", messages=PROMPT, stream=True)))
            == "Hello world!"
        )
    server.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    server.stop()  # idempotent


# --------------------------------------------------------------------------- retries and timing


def test_statuses_with_retry_after_openai(fake_llm: FakeLLMServer) -> None:
    model = fake_llm.script(statuses=[429, 200], retry_after="0.2", tokens=["ok"])
    with oai(fake_llm) as client:
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(model=model, messages=PROMPT, stream=True)
        assert info.value.status_code == 429
        assert info.value.response.headers["retry-after"] == "0.2"
        assert "retry-after-ms" not in info.value.response.headers
        assert info.value.body == {
            "message": "fake error 429",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
        chunks = list(client.chat.completions.create(model=model, messages=PROMPT, stream=True))
        assert oai_text(chunks) == "ok"
        # past the end of the list: normal answers
        chunks = list(client.chat.completions.create(model=model, messages=PROMPT, stream=True))
        assert oai_text(chunks) == "ok"
    log = fake_llm.log(model)
    assert [(r["attempt"], r["status"], r["completed"]) for r in log] == [
        (1, 429, True),
        (2, 200, True),
        (3, 200, True),
    ]


def test_statuses_counted_across_apis_with_anthropic_classes(fake_llm: FakeLLMServer) -> None:
    """nbstream maps errors by status code (the SDK's class names for 529 / 503 differ between
    releases: OverloadedError and ServiceUnavailableError are recent)."""
    model = fake_llm.script(
        statuses=[529, 503, 429, 200], retry_after_ms=250, error_message="busy", tokens=["ok"]
    )
    with ant(fake_llm) as client:
        with pytest.raises(anthropic.APIStatusError) as info:
            client.messages.create(model=model, max_tokens=5, messages=PROMPT, stream=True)
        assert info.value.status_code == 529
        assert info.value.response.headers["retry-after-ms"] == "250"
        assert info.value.body == {
            "type": "error",
            "error": {"type": "overloaded_error", "message": "busy"},
            "request_id": "req_fake",
        }
        with pytest.raises(anthropic.InternalServerError) as info2:
            client.messages.create(model=model, max_tokens=5, messages=PROMPT, stream=True)
        assert info2.value.status_code == 503
    with oai(fake_llm) as client:
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model=model, messages=PROMPT, stream=True)
        chunks = list(client.chat.completions.create(model=model, messages=PROMPT, stream=True))
    assert oai_text(chunks) == "ok"
    log = fake_llm.log(model)
    assert [(r["attempt"], r["path"], r["status"]) for r in log] == [
        (1, "/v1/messages", 529),
        (2, "/v1/messages", 503),
        (3, "/v1/chat/completions", 429),
        (4, "/v1/chat/completions", 200),
    ]
    assert all(r["received_at"] <= r["started"] for r in log)
    assert all(b["received_at"] > a["received_at"] for a, b in itertools.pairwise(log))


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_sdk_retries_honour_retry_after(fake_llm: FakeLLMServer, sdk: str) -> None:
    model = fake_llm.script(statuses=[429, 503, 200], retry_after="0.3", tokens=["ok"])
    fast = fake_llm.script(statuses=[429, 200], retry_after="5", retry_after_ms=100)
    for name in (model, fast):
        if sdk == "openai":
            with oai(fake_llm, max_retries=2) as client:
                list(client.chat.completions.create(model=name, messages=PROMPT, stream=True))
        else:
            with ant(fake_llm, max_retries=2) as client:
                list(client.messages.create(model=name, max_tokens=5, messages=PROMPT, stream=True))
    log = fake_llm.log(model)
    assert [(r["attempt"], r["status"]) for r in log] == [(1, 429), (2, 503), (3, 200)]
    assert [r["headers"]["x-stainless-retry-count"] for r in log] == ["0", "1", "2"]
    gaps = [b["received_at"] - a["received_at"] for a, b in itertools.pairwise(log)]
    assert all(0.28 <= g < 1.5 for g in gaps), gaps  # exactly Retry-After, no jitter
    log = fake_llm.log(fast)
    # retry-after-ms wins over retry-after in both SDKs
    assert log[1]["received_at"] - log[0]["received_at"] < 2, log


def test_retry_after_sent_as_given(fake_llm: FakeLLMServer) -> None:
    date = "Wed, 21 Oct 2037 07:28:00 GMT"
    model = fake_llm.script(status=503, retry_after=date)
    req = urllib.request.Request(
        fake_llm.openai_base_url + "/chat/completions",
        data=json.dumps({"model": model, "messages": PROMPT, "stream": True}).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=5)
    assert info.value.code == 503
    assert info.value.headers["Retry-After"] == date
    info.value.close()


def test_headers_delay_is_a_timeout_before_any_response(fake_llm: FakeLLMServer) -> None:
    model = fake_llm.script(headers_delay=0.3, tokens=["a"])
    with oai(fake_llm) as client:
        began = time.monotonic()
        stream = client.chat.completions.create(model=model, messages=PROMPT, stream=True)
        assert time.monotonic() - began >= 0.25  # create() itself waits, unlike first_delay
        assert oai_text(list(stream)) == "a"
    first = fake_llm.script(first_delay=0.3, tokens=["a"])
    with oai(fake_llm) as client:
        began = time.monotonic()
        stream = client.chat.completions.create(model=first, messages=PROMPT, stream=True)
        assert time.monotonic() - began < 0.25
        assert oai_text(list(stream)) == "a"

    slow = fake_llm.script(headers_delay=30)
    with (
        oai(fake_llm, timeout=openai.Timeout(5, read=0.2)) as client,
        pytest.raises(openai.APITimeoutError) as oai_info,
    ):
        client.chat.completions.create(model=slow, messages=PROMPT, stream=True)
    assert isinstance(oai_info.value.__cause__, TRANSPORT_ERRORS)
    record = fake_llm.wait_for_disconnect(slow, timeout=1.0)
    assert (record["tokens_sent"], record["completed"]) == (0, False)

    slow = fake_llm.script(headers_delay=30)
    with (
        ant(fake_llm, timeout=anthropic.Timeout(5, read=0.2)) as client,
        pytest.raises(anthropic.APITimeoutError) as ant_info,
    ):
        client.messages.create(model=slow, max_tokens=5, messages=PROMPT, stream=True)
    assert isinstance(ant_info.value.__cause__, TRANSPORT_ERRORS)
    fake_llm.wait_for_disconnect(slow, timeout=1.0)


def test_sdks_raise_on_a_mid_stream_read_timeout(fake_llm: FakeLLMServer) -> None:
    """nbstream relies on this SDK behaviour: a stream that stalls past the read timeout raises
    (the SDK's APITimeoutError or its HTTP library's timeout, as releases differ) instead of
    ending as if complete."""
    model = fake_llm.script(tokens=list("abc"), stall_after=1, stall_seconds=30)
    with (
        oai(fake_llm, timeout=openai.Timeout(5, read=0.2)) as client,
        pytest.raises((openai.APITimeoutError, *TRANSPORT_ERRORS)),
    ):
        list(client.chat.completions.create(model=model, messages=PROMPT, stream=True))
    model = fake_llm.script(tokens=list("abc"), stall_after=1, stall_seconds=30)
    with (
        ant(fake_llm, timeout=anthropic.Timeout(5, read=0.2)) as client,
        pytest.raises((anthropic.APITimeoutError, *TRANSPORT_ERRORS)),
    ):
        list(client.messages.create(model=model, max_tokens=5, messages=PROMPT, stream=True))


# --------------------------------------------------------------------------- mid-stream faults


@pytest.mark.parametrize("framing", ["close", "chunked"])
def test_error_event_after_anthropic(fake_llm: FakeLLMServer, framing: str) -> None:
    """nbstream relies on this SDK behaviour: an in-stream error event raises an APIStatusError
    whose body and type carry the event (its message wording differs between releases)."""
    model = fake_llm.script(tokens=list("abcd"), error_event_after=2, framing=framing)
    types: list[str] = []
    with ant(fake_llm) as client, pytest.raises(anthropic.APIStatusError) as info:
        for event in client.messages.create(
            model=model, max_tokens=50, messages=PROMPT, stream=True
        ):
            types.append(event.type)
    assert types == ["message_start", "content_block_start", *["content_block_delta"] * 2]
    exc = info.value
    # a plain APIStatusError: the class is chosen from the HTTP status, which was 200
    assert type(exc) is anthropic.APIStatusError
    assert exc.status_code == 200
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert exc.body == body
    assert "Overloaded" in exc.message
    assert exc.type == "overloaded_error"
    [record] = fake_llm.log(model)
    assert (record["tokens_sent"], record["completed"]) == (2, False)

    model = fake_llm.script(
        tokens=list("abcd"), error_event_after=0, error_type="api_error", error_message="boom"
    )
    with (
        ant(fake_llm) as client,
        pytest.raises(anthropic.APIStatusError) as info,
        client.messages.stream(model=model, max_tokens=50, messages=PROMPT) as stream,
    ):
        list(stream.text_stream)
    assert type(info.value) is anthropic.APIStatusError and info.value.status_code == 200
    assert info.value.body == {"type": "error", "error": {"type": "api_error", "message": "boom"}}


@pytest.mark.parametrize("framing", ["close", "chunked"])
def test_error_event_after_openai(fake_llm: FakeLLMServer, framing: str) -> None:
    model = fake_llm.script(tokens=list("abcd"), error_event_after=2, framing=framing)
    chunks: list[Any] = []
    with oai(fake_llm) as client, pytest.raises(openai.APIError) as info:
        for chunk in client.chat.completions.create(model=model, messages=PROMPT, stream=True):
            chunks.append(chunk)
    assert oai_text(chunks) == "ab" and len(chunks) == 3
    exc = info.value
    # not an APIStatusError: no status_code, no response
    assert type(exc) is openai.APIError
    assert not hasattr(exc, "status_code")
    message = "The server had an error while processing your request."
    assert exc.message == str(exc) == message
    assert exc.body == {"message": message, "type": "server_error", "param": None, "code": None}
    assert (exc.type, exc.code, exc.param) == ("server_error", None, None)
    [record] = fake_llm.log(model)
    assert (record["tokens_sent"], record["completed"]) == (2, False)

    model = fake_llm.script(error_event_after=1, error_type="overloaded", error_message="x")
    with oai(fake_llm) as client, pytest.raises(openai.APIError) as info:
        list(client.chat.completions.create(model=model, messages=PROMPT, stream=True))
    assert (info.value.message, info.value.type) == ("x", "overloaded")


def test_error_event_after_async(fake_llm: FakeLLMServer) -> None:
    m1 = fake_llm.script(tokens=list("abc"), error_event_after=1)
    m2 = fake_llm.script(tokens=list("abc"), error_event_after=1)

    async def run() -> tuple[BaseException, BaseException]:
        async with aoai(fake_llm) as oclient, aant(fake_llm) as aclient:
            stream = await oclient.chat.completions.create(model=m1, messages=PROMPT, stream=True)
            with pytest.raises(openai.APIError) as oinfo:
                async for _ in stream:
                    pass
            events = await aclient.messages.create(
                model=m2, max_tokens=5, messages=PROMPT, stream=True
            )
            with pytest.raises(anthropic.APIStatusError) as ainfo:
                async for _ in events:
                    pass
        return oinfo.value, ainfo.value

    oexc, aexc = asyncio.run(run())
    assert type(oexc) is openai.APIError and oexc.type == "server_error"
    assert type(aexc) is anthropic.APIStatusError and aexc.status_code == 200


@pytest.mark.parametrize(("then", "completed"), [("finish", True), ("close", False)])
def test_invalid_utf8_after(fake_llm: FakeLLMServer, then: str, completed: bool) -> None:
    model = fake_llm.script(tokens=list("abcd"), invalid_utf8_after=2, invalid_utf8_then=then)
    chunks: list[Any] = []
    # neither SDK wraps it: the SSE decoder's bytes.decode("utf-8") error escapes as is
    with oai(fake_llm) as client, pytest.raises(UnicodeDecodeError) as oinfo:
        for chunk in client.chat.completions.create(model=model, messages=PROMPT, stream=True):
            chunks.append(chunk)
    assert oai_text(chunks) == "ab"
    assert oinfo.value.object[oinfo.value.start : oinfo.value.end] == b"\xff"
    assert oinfo.value.object.startswith(b'data: {"id":"chatcmpl-fake"')

    model2 = fake_llm.script(tokens=list("abcd"), invalid_utf8_after=2, invalid_utf8_then=then)
    types: list[str] = []
    with ant(fake_llm) as client, pytest.raises(UnicodeDecodeError) as ainfo:
        for event in client.messages.create(
            model=model2, max_tokens=5, messages=PROMPT, stream=True
        ):
            types.append(event.type)
    assert types == ["message_start", "content_block_start", *["content_block_delta"] * 2]
    assert ainfo.value.object.startswith(b'data: {"type":"content_block_delta"')
    for name in (model, model2):
        [record] = fake_llm.log(name)
        assert (record["tokens_sent"], record["completed"]) == (4 if completed else 2, completed)

    # on the wire: one well-formed event carrying the bad bytes, then the rest (or nothing)
    req = urllib.request.Request(
        fake_llm.openai_base_url + "/chat/completions",
        data=json.dumps({"model": model, "messages": PROMPT, "stream": True}).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        events = resp.read().split(b"\n\n")
    bad = [e for e in events if b"\xff\xfe" in e]
    assert len(bad) == 1 and bad[0].startswith(b"data: {") and bad[0].endswith(b"}")
    json.loads(bad[0][len(b"data: ") :].decode("latin-1"))
    assert (events[-2] == b"data: [DONE]") is completed


@pytest.mark.parametrize("framing", ["close", "chunked"])
def test_empty_stream_ends_quietly(fake_llm: FakeLLMServer, framing: str) -> None:
    model = fake_llm.script(empty=True, framing=framing)
    with oai(fake_llm) as client:
        assert list(client.chat.completions.create(model=model, messages=PROMPT, stream=True)) == []
    with ant(fake_llm) as client:
        events = client.messages.create(model=model, max_tokens=5, messages=PROMPT, stream=True)
        assert list(events) == []
        with client.messages.stream(model=model, max_tokens=5, messages=PROMPT) as stream:
            assert list(stream.text_stream) == []
            # the helper has no message snapshot at all
            with pytest.raises(AssertionError):
                stream.get_final_message()
    log = fake_llm.log(model)
    assert [(r["status"], r["tokens_sent"], r["completed"]) for r in log] == [(200, 0, False)] * 3


@pytest.mark.parametrize("framing", ["close", "chunked"])
def test_preamble_only_ends_quietly(fake_llm: FakeLLMServer, framing: str) -> None:
    model = fake_llm.script(preamble_only=True, framing=framing)
    with oai(fake_llm) as client:
        chunks = list(client.chat.completions.create(model=model, messages=PROMPT, stream=True))
    assert len(chunks) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    assert oai_finish(chunks) is None
    with ant(fake_llm) as client:
        events = list(
            client.messages.create(model=model, max_tokens=5, messages=PROMPT, stream=True)
        )
        assert [e.type for e in events] == ["message_start", "content_block_start"]  # ping skipped
        with client.messages.stream(model=model, max_tokens=5, messages=PROMPT) as stream:
            assert list(stream.text_stream) == []
            final = stream.get_final_message()
    assert final.stop_reason is None
    assert final.content[0].type == "text" and final.content[0].text == ""
    log = fake_llm.log(model)
    assert [(r["tokens_sent"], r["completed"]) for r in log] == [(0, False)] * 3


def test_lone_surrogate_tokens_survive(fake_llm: FakeLLMServer) -> None:
    tokens = ["\ud83d", "\ude00", "ok"]
    model = fake_llm.script(tokens=tokens)  # the /_script round trip keeps them
    with oai(fake_llm) as client:
        chunks = list(client.chat.completions.create(model=model, messages=PROMPT, stream=True))
        whole = client.chat.completions.create(model=model, messages=PROMPT)
    deltas = [c.choices[0].delta.content for c in chunks[1:-1]]
    assert deltas == tokens  # each delta is a str holding one lone surrogate
    joined = oai_text(chunks)
    assert joined == "\ud83d\ude00ok" != "😀ok"  # concatenation does not pair them ...
    assert joined.encode("utf-16", "surrogatepass").decode("utf-16") == "😀ok"  # ... this does
    with pytest.raises(UnicodeEncodeError):
        joined.encode("utf-8")
    assert whole.choices[0].message.content == "😀ok"  # one JSON string: the escapes pair up

    with ant(fake_llm) as client:
        events = list(
            client.messages.create(model=model, max_tokens=5, messages=PROMPT, stream=True)
        )
        with client.messages.stream(model=model, max_tokens=5, messages=PROMPT) as stream:
            text = list(stream.text_stream)
            final = stream.get_final_message()
    assert [e.delta.text for e in events if e.type == "content_block_delta"] == tokens
    assert text == tokens
    assert final.content[0].type == "text" and final.content[0].text == "\ud83d\ude00ok"

    # on the wire: ASCII JSON escapes
    req = urllib.request.Request(
        fake_llm.openai_base_url + "/chat/completions",
        data=json.dumps({"model": model, "messages": PROMPT, "stream": True}).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        raw = resp.read()
    assert b'"content":"\\ud83d"' in raw and b'"content":"\\ude00"' in raw
    lone = fake_llm.script(text="a\udc80b", token_size=2)
    with oai(fake_llm) as client:
        chunks = list(client.chat.completions.create(model=lone, messages=PROMPT, stream=True))
    assert [c.choices[0].delta.content for c in chunks[1:-1]] == ["a\udc80", "b"]


def test_script_rejects_bad_new_keys(fake_llm: FakeLLMServer) -> None:
    bad: list[tuple[dict[str, Any], str]] = [
        ({"statuses": []}, "statuses"),
        ({"statuses": [429, 302]}, "statuses"),
        ({"statuses": ["429"]}, "statuses"),
        ({"statuses": [429], "status": 500}, "not both"),
        ({"retry_after": "1"}, "needs status"),
        ({"status": 429, "retry_after": "1\r\nx-evil: 1"}, "printable"),
        ({"status": 429, "retry_after_ms": [1]}, "string or a number"),
        ({"headers_delay": -1}, "headers_delay"),
        ({"error_event_after": -1}, "error_event_after"),
        ({"invalid_utf8_after": 1.5}, "invalid_utf8_after"),
        ({"invalid_utf8_then": "maybe"}, "invalid_utf8_then"),
        ({"error_type": 3}, "error_type"),
        ({"empty": "yes"}, "empty"),
        ({"empty": True, "preamble_only": True}, "not both"),
    ]
    for spec, match in bad:
        with pytest.raises(ValueError, match=match):
            fake_llm.script(**spec)
    fake_llm.script(status=429, retry_after=1, retry_after_ms=0.5, headers_delay=0)


# --------------------------------------------------------------------------- structured answers

TOOL = {
    "name": "City",
    "description": "the answer",
    "input_schema": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["name", "population"],
        "additionalProperties": False,
    },
}
CITY = '{"name": "Paris", "population": 2100000}'


def test_texts_give_one_answer_per_request(fake_llm: FakeLLMServer) -> None:
    model = fake_llm.script(texts=["first", "second"], token_size=3)
    with oai(fake_llm) as client:
        answers = [
            list(client.chat.completions.create(model=model, messages=PROMPT, stream=True))
            for _ in range(3)
        ]
    assert [oai_text(chunks) for chunks in answers] == ["first", "second", "second"]
    assert len(answers[0]) == 1 + 2 + 1  # role chunk, "fir" + "st", the finish chunk


def test_openai_response_format_streams_the_json_as_content(fake_llm: FakeLLMServer) -> None:
    model = fake_llm.script(text=CITY, token_size=5)
    response_format = {"type": "json_schema", "json_schema": {"name": "City", "schema": {}}}
    with oai(fake_llm) as client:
        chunks = list(
            client.chat.completions.create(
                model=model, messages=PROMPT, stream=True, response_format=response_format
            )
        )
    assert json.loads(oai_text(chunks)) == {"name": "Paris", "population": 2100000}
    assert fake_llm.log(model)[-1]["body"]["response_format"] == response_format


def test_anthropic_tool_use_streams_input_json_deltas(fake_llm: FakeLLMServer) -> None:
    model = fake_llm.script(text=CITY, token_size=7)
    with ant(fake_llm) as client:
        events = list(
            client.messages.create(
                model=model,
                max_tokens=50,
                messages=PROMPT,
                stream=True,
                tools=[TOOL],
                tool_choice={"type": "tool", "name": "City"},
            )
        )
        with client.messages.stream(
            model=model, max_tokens=50, messages=PROMPT, tools=[TOOL]
        ) as stream:
            final = stream.get_final_message()
    start = next(e for e in events if e.type == "content_block_start")
    assert start.content_block.type == "tool_use" and start.content_block.name == "City"
    deltas = [e.delta for e in events if e.type == "content_block_delta"]
    assert {d.type for d in deltas} == {"input_json_delta"}
    assert "".join(d.partial_json for d in deltas) == CITY
    stop = next(e for e in events if e.type == "message_delta")
    assert stop.delta.stop_reason == "tool_use"
    # the SDK's own accumulation parses the pieces into the tool's input
    assert final.stop_reason == "tool_use"
    assert final.content[0].type == "tool_use"
    assert final.content[0].input == {"name": "Paris", "population": 2100000}
    body = fake_llm.log(model)[0]["body"]
    assert body["tools"] == [TOOL] and body["tool_choice"] == {"type": "tool", "name": "City"}


def test_anthropic_tool_use_without_streaming(fake_llm: FakeLLMServer) -> None:
    model = fake_llm.script(text=CITY)
    with ant(fake_llm) as client:
        message = client.messages.create(model=model, max_tokens=50, messages=PROMPT, tools=[TOOL])
    assert message.stop_reason == "tool_use"
    assert message.content[0].type == "tool_use" and message.content[0].input["name"] == "Paris"


def test_reject_fields_answers_400_only_when_the_field_is_sent(fake_llm: FakeLLMServer) -> None:
    model = fake_llm.script(texts=["plain answer"], reject_fields=["response_format"])
    response_format = {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}
    with oai(fake_llm) as client:
        with pytest.raises(
            openai.BadRequestError, match="Unsupported parameter: 'response_format'"
        ):
            client.chat.completions.create(
                model=model, messages=PROMPT, stream=True, response_format=response_format
            )
        chunks = list(client.chat.completions.create(model=model, messages=PROMPT, stream=True))
    assert oai_text(chunks) == "plain answer"  # texts[0]: the rejected request was no answer
    assert [r["status"] for r in fake_llm.log(model)] == [400, 200]
    custom = fake_llm.script(reject_fields=["tools"], reject_status=422, error_message="no tools")
    with (
        ant(fake_llm) as client,
        pytest.raises(anthropic.UnprocessableEntityError, match="no tools"),
    ):
        client.messages.create(model=custom, max_tokens=5, messages=PROMPT, tools=[TOOL])


def test_script_rejects_bad_structured_keys(fake_llm: FakeLLMServer) -> None:
    bad: list[tuple[dict[str, Any], str]] = [
        ({"texts": []}, "texts"),
        ({"texts": ["a", 1]}, "texts"),
        ({"texts": ["a"], "text": "b"}, "one of"),
        ({"reject_fields": "response_format"}, "reject_fields"),
        ({"reject_status": 200}, "reject_status"),
    ]
    for spec, match in bad:
        with pytest.raises(ValueError, match=match):
            fake_llm.script(**spec)


# --------------------------------------------------------------------------- status_every


def test_status_every_errors_every_nth_request_across_apis(fake_llm: FakeLLMServer) -> None:
    model = fake_llm.script(
        tokens=["ok"], status=429, status_every=3, error_message="slow", retry_after="0.5"
    )
    outcomes: list[Any] = []
    with oai(fake_llm) as oclient, ant(fake_llm) as aclient:
        for i in range(7):
            try:
                if i % 2:
                    message = aclient.messages.create(model=model, max_tokens=5, messages=PROMPT)
                    outcomes.append(message.content[0].text)
                else:
                    completion = oclient.chat.completions.create(model=model, messages=PROMPT)
                    outcomes.append(completion.choices[0].message.content)
            except (openai.RateLimitError, anthropic.RateLimitError) as exc:
                assert exc.response.headers["retry-after"] == "0.5"
                assert "slow" in str(exc)
                outcomes.append(exc.status_code)
    assert outcomes == ["ok", "ok", 429, "ok", "ok", 429, "ok"]
    assert [r["status"] for r in fake_llm.log(model)] == [200, 200, 429, 200, 200, 429, 200]
    assert [r["attempt"] for r in fake_llm.log(model)] == list(range(1, 8))


def test_script_rejects_bad_batch_keys(fake_llm: FakeLLMServer) -> None:
    bad: list[tuple[dict[str, Any], str]] = [
        ({"status": 429, "status_every": 0}, "status_every"),
        ({"status": 429, "status_every": "2"}, "status_every"),
        ({"status": 429, "status_every": True}, "status_every"),
        ({"status_every": 2}, "needs status"),
        ({"status": 429, "status_every": 2, "status_times": 1}, "not both"),
        ({"statuses": [429], "status_every": 2}, "not both"),
        ({"batch_seconds": -1}, "batch_seconds"),
        ({"batch_seconds": "1"}, "batch_seconds"),
        ({"batch_create_status": 200}, "batch_create_status"),
        ({"batch_create_status": "401"}, "batch_create_status"),
    ]
    for spec, match in bad:
        with pytest.raises(ValueError, match=match):
            fake_llm.script(**spec)
    fake_llm.script(status=503, status_every=1, retry_after_ms=5, batch_seconds=0)


# --------------------------------------------------------------------------- batch services


def batch_lines(model: str, n: int, **body: Any) -> bytes:
    lines = [
        {
            "custom_id": f"c{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": model, "messages": PROMPT, **body},
        }
        for i in range(n)
    ]
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def anthropic_requests(model: str, n: int, **params: Any) -> list[Any]:
    return [
        {
            "custom_id": f"c{i}",
            "params": {"model": model, "max_tokens": 9, "messages": PROMPT, **params},
        }
        for i in range(n)
    ]


def post_json(server: FakeLLMServer, path: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(
        server.url + path,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def test_openai_files(fake_llm: FakeLLMServer) -> None:
    data = batch_lines("m", 2)
    with oai(fake_llm) as client:
        uploaded = client.files.create(
            file=("in.jsonl", data, "application/jsonl"), purpose="batch"
        )
        assert uploaded.id.startswith("file-")
        assert (uploaded.object, uploaded.bytes, uploaded.filename) == (
            "file",
            len(data),
            "in.jsonl",
        )
        assert (uploaded.purpose, uploaded.status) == ("batch", "processed")
        assert client.files.retrieve(uploaded.id) == uploaded
        assert client.files.content(uploaded.id).content == data
        with pytest.raises(openai.BadRequestError, match=r"Must be \.jsonl"):
            client.files.create(file=("in.txt", data), purpose="batch")
        with pytest.raises(openai.BadRequestError, match="Invalid purpose"):
            client.files.create(file=("in.jsonl", data), purpose="nonsense")
        with pytest.raises(openai.NotFoundError, match="No such File object"):
            client.files.content("file-nope")
    records = fake_llm.batch_log("*")
    assert {"path": "/v1/files", "method": "POST", "status": 200} in [
        {k: r[k] for k in ("path", "method", "status")} for r in records
    ]


def test_openai_batch_lifecycle(fake_llm: FakeLLMServer) -> None:
    model = fake_llm.script(
        tokens=["Hi", "!"], status=500, status_every=2, error_message="boom", batch_seconds=0.05
    )
    with oai(fake_llm) as client:
        uploaded = client.files.create(file=("in.jsonl", batch_lines(model, 4)), purpose="batch")
        created = client.batches.create(
            input_file_id=uploaded.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            metadata={"who": "test"},
        )
        assert created.id.startswith("batch_")
        assert (created.status, created.object, created.input_file_id) == (
            "validating",
            "batch",
            uploaded.id,
        )
        assert created.metadata == {"who": "test"}
        view = fake_llm.wait_batch(created.id, done=1)
        assert view["status"] == "in_progress" and view["rows"][0]["state"] == "succeeded"
        live = client.batches.retrieve(created.id)
        assert live.request_counts is not None and live.request_counts.total == 4
        assert live.request_counts.completed + live.request_counts.failed < 4
        fake_llm.wait_batch(created.id)
        done = client.batches.retrieve(created.id)
        assert done.status == "completed"
        assert done.request_counts is not None
        assert (done.request_counts.completed, done.request_counts.failed) == (2, 2)
        stamps = [done.created_at, done.in_progress_at, done.finalizing_at, done.completed_at]
        assert all(s is not None for s in stamps) and stamps == sorted(stamps)
        assert done.output_file_id and done.error_file_id
        output = [
            json.loads(x) for x in client.files.content(done.output_file_id).content.splitlines()
        ]
        errors = [
            json.loads(x) for x in client.files.content(done.error_file_id).content.splitlines()
        ]
        with pytest.raises(
            openai.BadRequestError, match="Cannot cancel a batch with status 'completed'"
        ):
            client.batches.cancel(done.id)
        with pytest.raises(openai.NotFoundError):
            client.batches.retrieve("batch_nope")
    assert [line["custom_id"] for line in output] == ["c2", "c0"]  # not in row order
    assert [line["custom_id"] for line in errors] == ["c3", "c1"]
    # a row's answer is the non-streaming endpoint's answer
    same = fake_llm.script(tokens=["Hi", "!"])
    direct = post_json(fake_llm, "/v1/chat/completions", {"model": same, "messages": PROMPT})
    direct["model"] = model
    row = output[0]
    assert row["id"].startswith("batch_req_") and row["error"] is None
    assert row["response"]["status_code"] == 200 and row["response"]["body"] == direct
    assert errors[0]["response"]["status_code"] == 500
    assert errors[0]["response"]["body"]["error"]["message"] == "boom"
    # rows are logged like requests, and the batch's requests too
    assert [(r["custom_id"], r["status"]) for r in fake_llm.log(model)] == [
        ("c0", 200),
        ("c1", 500),
        ("c2", 200),
        ("c3", 500),
    ]
    calls = [(r["method"], r["path"], r["status"]) for r in fake_llm.batch_log(done.id)]
    assert calls[:2] == [("POST", "/v1/files", 200), ("POST", "/v1/batches", 200)]
    assert ("POST", f"/v1/batches/{done.id}/cancel", 400) in calls
    assert ("GET", f"/v1/files/{done.output_file_id}/content", 200) in calls
    assert fake_llm.batch(done.id)["requests"] == fake_llm.batch_log(done.id)


def test_openai_batch_cancel(fake_llm: FakeLLMServer) -> None:
    model = fake_llm.script(batch_seconds=0.2)
    with oai(fake_llm) as client:
        uploaded = client.files.create(file=("in.jsonl", batch_lines(model, 6)), purpose="batch")
        batch = client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        fake_llm.wait_batch(batch.id, done=2)
        cancelling = client.batches.cancel(batch.id)
        assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
        view = fake_llm.wait_batch(batch.id)
        final = client.batches.retrieve(batch.id)
        assert final.output_file_id is not None
        output = client.files.content(final.output_file_id).content.splitlines()
    assert (final.status, final.error_file_id) == ("cancelled", None)
    assert final.cancelled_at is not None and final.completed_at is None
    done = view["done"]
    assert 2 <= done < 6 and view["stop"] == "cancel"
    assert [r["state"] for r in view["rows"]] == ["succeeded"] * done + ["canceled"] * (6 - done)
    assert sorted(json.loads(x)["custom_id"] for x in output) == [f"c{i}" for i in range(done)]
    assert final.request_counts is not None and final.request_counts.completed == done


def test_openai_batch_input_is_validated(fake_llm: FakeLLMServer) -> None:
    model = fake_llm.script()
    good = batch_lines(model, 1)
    with oai(fake_llm) as client:
        uploaded = client.files.create(
            file=("in.jsonl", good + b"{broken\n" + good), purpose="batch"
        )
        with pytest.raises(openai.BadRequestError, match="Invalid endpoint"):
            client.batches.create(
                input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h"
            )
        with pytest.raises(openai.NotFoundError):
            client.batches.create(
                input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h"
            )
        batch = client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        fake_llm.wait_batch(batch.id)
        failed = client.batches.retrieve(batch.id)
    assert failed.status == "failed" and failed.failed_at is not None
    assert failed.errors is not None and failed.errors.data is not None
    assert [(e.code, e.line) for e in failed.errors.data] == [
        ("invalid_json_line", 2),
        ("duplicate_custom_id", 3),
    ]
    assert fake_llm.log(model) == []  # nothing ran


def test_anthropic_batch_lifecycle(fake_llm: FakeLLMServer) -> None:
    model = fake_llm.script(
        tokens=["Yo"], status=529, status_every=3, error_message="busy", batch_seconds=0.05
    )
    with ant(fake_llm) as client:
        created = client.messages.batches.create(requests=anthropic_requests(model, 4))
        assert created.id.startswith("msgbatch_")
        assert (created.type, created.processing_status, created.results_url) == (
            "message_batch",
            "in_progress",
            None,
        )
        assert created.request_counts.processing == 4
        assert created.expires_at > created.created_at
        fake_llm.wait_batch(created.id, done=1)
        running = client.messages.batches.retrieve(created.id)
        assert running.request_counts.processing == 4 and running.request_counts.succeeded == 0
        with pytest.raises(anthropic.AnthropicError, match="No `results_url`"):
            list(client.messages.batches.results(created.id))
        fake_llm.wait_batch(created.id)
        ended = client.messages.batches.retrieve(created.id)
        results = list(client.messages.batches.results(created.id))
        with pytest.raises(anthropic.NotFoundError):
            client.messages.batches.retrieve("msgbatch_nope")
    assert ended.processing_status == "ended" and ended.ended_at is not None
    counts = ended.request_counts
    assert (counts.processing, counts.succeeded, counts.errored, counts.canceled) == (0, 3, 1, 0)
    assert ended.results_url == f"{fake_llm.url}/v1/messages/batches/{ended.id}/results"
    assert [r.custom_id for r in results] == ["c3", "c2", "c1", "c0"]
    by_id = {r.custom_id: r.result for r in results}
    assert by_id["c2"].type == "errored"
    assert by_id["c2"].error.error.type == "overloaded_error"
    assert by_id["c2"].error.error.message == "busy"
    same = fake_llm.script(tokens=["Yo"])
    direct = post_json(
        fake_llm, "/v1/messages", {"model": same, "max_tokens": 9, "messages": PROMPT}
    )
    direct["model"] = model
    with urllib.request.urlopen(str(ended.results_url), timeout=5) as resp:
        raw = {line["custom_id"]: line for line in map(json.loads, resp.read().splitlines())}
    assert raw["c0"] == {"custom_id": "c0", "result": {"type": "succeeded", "message": direct}}
    assert raw["c2"]["result"] == {
        "type": "errored",
        "error": {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}},
    }
    calls = [(r["method"], r["path"], r["status"]) for r in fake_llm.batch_log(ended.id)]
    assert calls[0] == ("POST", "/v1/messages/batches", 200)
    assert calls[-1] == ("GET", f"/v1/messages/batches/{ended.id}/results", 200)


def test_anthropic_batch_cancel_and_tools(fake_llm: FakeLLMServer) -> None:
    model = fake_llm.script(text='{"city": "Oslo"}', batch_seconds=0.2)
    with ant(fake_llm) as client:
        batch = client.messages.batches.create(
            requests=anthropic_requests(
                model, 5, tools=[TOOL], tool_choice={"type": "tool", "name": "City"}
            )
        )
        fake_llm.wait_batch(batch.id, done=1)
        canceling = client.messages.batches.cancel(batch.id)
        assert canceling.processing_status == "canceling"
        assert canceling.cancel_initiated_at is not None
        view = fake_llm.wait_batch(batch.id)
        ended = client.messages.batches.retrieve(batch.id)
        results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
        again = client.messages.batches.cancel(batch.id)
    done = view["done"]
    assert 1 <= done < 5
    assert (ended.processing_status, again.processing_status) == ("ended", "ended")
    assert (ended.request_counts.succeeded, ended.request_counts.canceled) == (done, 5 - done)
    assert [results[f"c{i}"].type for i in range(5)] == ["succeeded"] * done + ["canceled"] * (
        5 - done
    )
    message = results["c0"].message
    assert message.stop_reason == "tool_use"
    assert message.content[0].type == "tool_use"
    assert message.content[0].input == {"city": "Oslo"}


def test_anthropic_batch_requests_are_validated(fake_llm: FakeLLMServer) -> None:
    model = fake_llm.script()
    with ant(fake_llm) as client:
        with pytest.raises(anthropic.BadRequestError, match="not unique"):
            client.messages.batches.create(requests=anthropic_requests(model, 2) * 2)
        with pytest.raises(anthropic.BadRequestError, match="max_tokens"):
            client.messages.batches.create(
                requests=[{"custom_id": "a", "params": {"model": model, "messages": PROMPT}}]
            )


def test_batch_create_status_refuses_the_batch(fake_llm: FakeLLMServer) -> None:
    model = fake_llm.script(batch_create_status=401, error_message="Incorrect API key provided")
    before = len(fake_llm.batches())
    with oai(fake_llm) as oclient, ant(fake_llm) as aclient:
        uploaded = oclient.files.create(file=("in.jsonl", batch_lines(model, 2)), purpose="batch")
        with pytest.raises(openai.AuthenticationError, match="Incorrect API key"):
            oclient.batches.create(
                input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
            )
        with pytest.raises(anthropic.AuthenticationError, match="Incorrect API key"):
            aclient.messages.batches.create(requests=anthropic_requests(model, 2))
    assert len(fake_llm.batches()) == before
    assert fake_llm.log(model) == []
