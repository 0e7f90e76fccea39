"""The stream engine, with providers written as plain async generators (the real contract)."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time

import pytest

from nbstream.engine import EMPTY, TRUNCATED, Stream
from nbstream.providers.base import Final, ProviderError, Request
from nbstream.settings import Settings


class RecordingSink:
    pumps_widget_messages = False

    def __init__(self):
        self.deltas: list[str] = []
        self.states: list[tuple[str, str]] = []
        self.ended = None
        self.started = False

    def on_status(self, stream):
        self.states.append((stream.state, stream.status_note))

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


def run(provider, sink=None, **settings):
    settings.setdefault("idle_timeout", 5.0)
    stream = Stream(
        provider, Request("hi", "m"), model_id="test:m", sink=sink, settings=Settings(**settings)
    )
    return stream, asyncio.run(stream.run())


def test_finished_stream():
    sink = RecordingSink()
    stream, r = run(provider_of(["a", "b", "c"]), sink=sink)
    assert r == "abc" and r.finish_reason == "stop" and r.error is None
    assert r.usage == {"input_tokens": 1, "output_tokens": 2}
    assert r.chunks == 3 and r.ttft is not None and r.elapsed >= r.ttft
    assert sink.started and sink.deltas == ["a", "b", "c"] and sink.ended is r
    assert stream.state == "stop" and sink.states == [("streaming", "")]


def test_length_is_reported():
    _, r = run(provider_of(["a"], final=Final("length")))
    assert r.finish_reason == "length"


def test_missing_final_is_an_error_not_success():
    _, r = run(provider_of(["a", "b"], final=None))
    assert r == "ab" and r.finish_reason == "error" and r.error == TRUNCATED


def test_ending_before_anything_is_told_apart_from_a_drop():
    _, r = run(provider_of([], final=None))
    assert r == "" and r.finish_reason == "error" and r.error == EMPTY
    assert "before sending anything" in r.error and "context" in r.error


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
    _stream, r = run(stalls, idle_timeout=0.3)
    assert time.monotonic() - t0 < 2
    assert r == "first" and r.finish_reason == "error" and "(idle timeout)" in r.error
    assert "after 1 token" in r.error and "the idle_timeout option" in r.error
    assert closed == [True]


def test_timeout_before_first_token_says_so():
    async def silent(request):
        await asyncio.sleep(30)
        yield "never"

    t0 = time.monotonic()
    _, r = run(silent, first_token_timeout=0.3, idle_timeout=0.1)
    assert 0.3 <= time.monotonic() - t0 < 2  # the idle timeout does not apply before
    assert r == "" and r.ttft is None and "(first-token timeout)" in r.error
    assert "the first_token_timeout option" in r.error


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
    assert stream.state == "cancelled"


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


def test_surrogate_pairs_split_across_deltas_are_joined_and_lone_ones_replaced():
    sink = RecordingSink()
    tokens = ["a\ud83d", "\ude00b", "\udc00", "c\ud83d"]  # split pair, lone low, lone high
    _, r = run(provider_of(tokens), sink=sink)
    assert r == "a\U0001f600b\ufffdc\ufffd"
    assert all(d.encode("utf-8") for d in sink.deltas)  # every delta can cross the wire


def failing_then(statuses, tokens=("ok",), retry_after=None, calls=None):
    """A provider that fails with HTTP statuses (one per attempt), then streams."""
    attempts = []

    async def stream(request):
        attempts.append(time.monotonic())
        if calls is not None:
            calls.append(len(attempts))
        if len(attempts) <= len(statuses):
            status = statuses[len(attempts) - 1]
            raise ProviderError(
                f"HTTP {status} from X: busy",
                status=status,
                retryable=True,
                retry_after=retry_after,
            )
        for t in tokens:
            yield t
        yield Final("stop")

    return stream, attempts


def test_retryable_errors_before_the_first_token_are_retried_with_backoff():
    provider, attempts = failing_then([429, 503])
    sink = RecordingSink()
    _, r = run(provider, sink=sink, http_retries=3)
    assert r == "ok" and r.finish_reason == "stop" and len(attempts) == 3
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert 0.25 <= gaps[0] <= 1.5 and 0.5 <= gaps[1] <= 2.5, gaps  # 0.5 s, 1 s, jittered
    notes = [note for state, note in sink.states if state == "retrying"]
    assert notes[0].startswith("HTTP 429 — retrying") and notes[0].endswith("(1/3)")
    assert notes[1].startswith("HTTP 503") and notes[1].endswith("(2/3)")


def test_retry_after_is_honoured_and_capped():
    provider, attempts = failing_then([429], retry_after=0.4)
    _, r = run(provider)
    assert r == "ok" and 0.4 <= attempts[1] - attempts[0] < 0.8
    provider, attempts = failing_then([429], retry_after=30)
    _, r = run(provider, retry_max_wait=5)
    assert len(attempts) == 1 and r.finish_reason == "error"
    assert "asked to retry after 30 s" in r.error and "the retry_max_wait option" in r.error


def test_the_last_error_names_the_real_cause_and_the_retries():
    provider, attempts = failing_then([500, 500, 500])
    _, r = run(provider, http_retries=2, retry_max_wait=0.1)
    assert len(attempts) == 3 and r.finish_reason == "error"
    assert r.error == "HTTP 500 from X: busy (after 2 retries)"


def test_nothing_is_retried_after_text_has_arrived():
    calls = []

    async def flaky(request):
        calls.append(1)
        yield "partial "
        raise ProviderError("dropped", retryable=True)

    _, r = run(flaky)
    assert calls == [1] and r == "partial " and r.error == "dropped"


def test_stop_cancels_a_retry_wait_at_once():
    provider, attempts = failing_then([429], retry_after=30)
    stream = Stream(provider, Request("hi", "m"), model_id="test:m")

    async def main():
        task = asyncio.ensure_future(stream.run())
        while stream.state != "retrying":
            await asyncio.sleep(0.01)
        t0 = time.monotonic()
        stream.stop()
        r = await task
        return r, time.monotonic() - t0

    r, latency = asyncio.run(main())
    assert r.finish_reason == "cancelled" and latency < 0.2 and len(attempts) == 1


@pytest.mark.parametrize("retryable", [False, True])
def test_a_retry_wait_is_not_idle_time(retryable):
    provider, attempts = failing_then([429], retry_after=0.5)
    _, r = run(provider, idle_timeout=0.2, first_token_timeout=0.3, http_retries=int(retryable))
    if retryable:
        assert r == "ok" and len(attempts) == 2
    else:
        assert r.finish_reason == "error" and len(attempts) == 1
