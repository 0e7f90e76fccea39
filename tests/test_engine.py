"""The stream engine, with providers written as plain async generators (the real contract)."""

from __future__ import annotations

import asyncio
import threading
import time

from nbstream.engine import TRUNCATED, Stream
from nbstream.providers.base import Final, ProviderError, Request


class RecordingSink:
    def __init__(self):
        self.deltas: list[str] = []
        self.ended = None
        self.started = False

    def on_start(self, stream):
        self.started = True

    def on_delta(self, stream, delta):
        self.deltas.append(delta)

    def on_end(self, stream, response):
        self.ended = response


_FINAL = Final("stop", {"input_tokens": 1, "output_tokens": 2})


def provider_of(
    tokens,
    *,
    delay=0.0,
    final=_FINAL,
    fail=None,
    closed=None,
):
    async def stream(request):
        try:
            for t in tokens:
                if delay:
                    await asyncio.sleep(delay)
                yield t
            if fail is not None:
                raise fail
            if final is not None:
                yield final
        finally:
            if closed is not None:
                closed.append(True)

    return stream


def run(provider, timeout=5.0, sink=None):
    stream = Stream(provider, Request("hi", "m", timeout=timeout), model_id="test:m", sink=sink)
    return stream, asyncio.run(stream.run())


def test_finished_stream():
    sink = RecordingSink()
    stream, r = run(provider_of(["a", "b", "c"]), sink=sink)
    assert r == "abc" and r.finish_reason == "stop" and r.error is None
    assert r.usage == {"input_tokens": 1, "output_tokens": 2}
    assert r.chunks == 3 and r.ttft is not None and r.elapsed >= r.ttft
    assert sink.started and sink.deltas == ["a", "b", "c"] and sink.ended is r
    assert stream.state == "done"


def test_length_is_reported():
    _, r = run(provider_of(["a"], final=Final("length")))
    assert r.finish_reason == "length"


def test_missing_final_is_an_error_not_success():
    _, r = run(provider_of(["a", "b"], final=None))
    assert r == "ab" and r.finish_reason == "error" and r.error == TRUNCATED


def test_provider_error_keeps_partial_text():
    _, r = run(provider_of(["par", "tial"], fail=ProviderError("HTTP 500 from X: boom")))
    assert r == "partial" and r.finish_reason == "error" and r.error == "HTTP 500 from X: boom"


def test_unexpected_exception_keeps_partial_text():
    _, r = run(provider_of(["x"], fail=KeyError("surprise")))
    assert r == "x" and r.finish_reason == "error" and "KeyError" in r.error


def test_idle_timeout_cancels_the_provider():
    closed = []

    async def stalls(request):
        try:
            yield "first"
            await asyncio.sleep(30)
            yield "never"
        finally:
            closed.append(True)

    t0 = time.monotonic()
    _stream, r = run(stalls, timeout=0.3)
    assert time.monotonic() - t0 < 2
    assert r == "first" and r.finish_reason == "error" and "idle timeout" in r.error
    assert "next token" in r.error and closed == [True]


def test_timeout_before_first_token_says_so():
    async def silent(request):
        await asyncio.sleep(30)
        yield "never"

    _, r = run(silent, timeout=0.2)
    assert r == "" and r.ttft is None and "first token" in r.error


def test_stop_from_another_thread_cancels_within_a_token():
    closed = []
    provider = provider_of([f"t{i} " for i in range(1000)], delay=0.01, closed=closed)
    stream = Stream(provider, Request("hi", "m"), model_id="test:m")

    async def main():
        task = asyncio.ensure_future(stream.run())
        while stream.chunks < 5:
            await asyncio.sleep(0.005)
        stopped_at = time.monotonic()
        threading.Thread(target=stream.stop).start()  # as a subshell click handler would
        response = await task
        return response, time.monotonic() - stopped_at

    r, latency = asyncio.run(main())
    assert r.finish_reason == "cancelled" and r.error is None
    assert 5 <= r.chunks < 1000 and r.startswith("t0 t1 t2 t3 t4 ")
    assert closed == [True]
    assert latency < 0.5, latency
    assert stream.state == "stopped"


def test_cancelling_the_awaiting_task_is_an_interrupt():
    closed = []
    provider = provider_of([f"{i} " for i in range(1000)], delay=0.01, closed=closed)
    stream = Stream(provider, Request("hi", "m"), model_id="test:m")

    async def main():
        task = asyncio.ensure_future(stream.run())
        while stream.chunks < 3:
            await asyncio.sleep(0.005)
        task.cancel()  # what a kernel interrupt does to an awaited cell
        return await task

    r = asyncio.run(main())
    assert stream.interrupted and r.finish_reason == "cancelled" and r.chunks >= 3
    assert closed == [True]


def test_stop_after_final_keeps_the_final_verdict():
    stream = Stream(provider_of(["a"]), Request("hi", "m"), model_id="test:m")

    async def main():
        r = await stream.run()
        stream.stop()
        return r

    assert asyncio.run(main()).finish_reason == "stop"
