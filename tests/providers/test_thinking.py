"""Reasoning models: every thinking format parsed into one stream of thinking deltas, kept out
of the answer; through the real SDKs to the test server."""

from __future__ import annotations

import time

import pytest

import nbstream
from fake_llm_fixture import point_sdks_at
from nbstream.providers.base import ThinkingDelta
from nbstream.providers.thinking import ThinkTags

THOUGHTS = ["The user asks ", "for a sum. ", "2 + 3 is 5."]


@pytest.fixture(autouse=True)
def _keys(monkeypatch, fake_llm, tmp_path):
    point_sdks_at(monkeypatch, fake_llm, "sk-think-openai", "sk-ant-think")
    monkeypatch.setenv("NBSTREAM_HISTORY", str(tmp_path / "history.sqlite"))


def ask(provider, model, prompt="What is 2 + 3?", **options):
    return nbstream.ask_sync(prompt, model=f"{provider}:{model}", display="none", **options)


# --- <think> tags split across deltas -----------------------------------------------------


def split(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 100])
def test_think_tags_split_anywhere_are_never_answer_text(size):
    text = "  <think>\nweigh 2 and 3\n</think>\n\nThe answer is 5. <think>is text</think>"
    tags = ThinkTags()
    out: list[object] = []
    for piece in split(text, size):
        out += tags.feed(piece)
    out += tags.finish()
    thinking = "".join(o.text for o in out if isinstance(o, ThinkingDelta))
    answer = "".join(o for o in out if isinstance(o, str))
    assert thinking == "\nweigh 2 and 3\n"
    assert answer == "The answer is 5. <think>is text</think>"  # only a leading tag counts


@pytest.mark.parametrize("text", ["<thinking is fun", "<b>bold</b>", "   plain", "<"])
def test_text_that_only_looks_like_a_tag_is_kept_whole(text):
    tags = ThinkTags()
    out: list[object] = []
    for piece in split(text, 2):
        out += tags.feed(piece)
    out += tags.finish()
    assert "".join(o for o in out if isinstance(o, str)) == text  # whitespace too
    assert not [o for o in out if isinstance(o, ThinkingDelta)]


def test_a_stream_that_ends_inside_the_thinking_keeps_it_as_thinking():
    tags = ThinkTags()
    out = tags.feed("<think>half a thou") + tags.feed("ght </th") + tags.finish()
    assert "".join(o.text for o in out if isinstance(o, ThinkingDelta)) == "half a thought </th"
    assert not [o for o in out if isinstance(o, str)]


# --- each provider's format --------------------------------------------------------------


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_openai_compatible_reasoning_fields(fake_llm, field):
    model = fake_llm.script(tokens=["It is ", "5."], thinking=THOUGHTS, think_format=field)
    r = ask("openai", model)
    assert r == "It is 5." and r.thinking == "".join(THOUGHTS)
    assert r.usage["reasoning_tokens"] == 3
    assert r.time_to_thinking is not None and r.ttft is not None
    assert r.time_to_thinking <= r.ttft


def test_think_tags_through_an_openai_compatible_server(fake_llm):
    model = fake_llm.script(tokens=["It is ", "5."], thinking=THOUGHTS, think_format="tags")
    r = ask("openai", model)
    assert r == "It is 5."  # the tags were cut into 3-character deltas: they split
    assert r.thinking == "".join(THOUGHTS)


def test_openai_reasoning_effort_is_sent(fake_llm):
    model = fake_llm.script(tokens=["ok"])
    ask("openai", model, reasoning_effort="high")
    assert fake_llm.log(model)[0]["body"]["reasoning_effort"] == "high"


def test_anthropic_thinking_streams_and_its_signature_goes_back_in_a_tool_loop(fake_llm):
    calls = []

    @nbstream.tool(approve=False)
    def add(a: int, b: int) -> int:
        """Adds."""
        calls.append((a, b))
        return a + b

    model = fake_llm.script(
        answers=[
            {"text": "", "tool_calls": [{"name": "add", "arguments": '{"a": 2, "b": 3}'}]},
            {"text": "It is 5."},
        ],
        thinking=THOUGHTS,
        signature="sig-round-1",
        redacted_thinking="ENCRYPTED",
    )
    r = ask("anthropic", model, thinking=2048, tools=[add])
    assert r.finish_reason == "stop", r.error
    assert calls == [(2, 3)] and r.endswith("It is 5.")
    first, second = fake_llm.log(model)
    assert first["body"]["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert first["body"]["max_tokens"] > 2048
    assistant = second["body"]["messages"][-2]
    assert assistant["role"] == "assistant"
    kinds = [b["type"] for b in assistant["content"]]
    assert kinds[:2] == ["redacted_thinking", "thinking"] and "tool_use" in kinds
    assert assistant["content"][0]["data"] == "ENCRYPTED"
    assert assistant["content"][1]["thinking"] == "".join(THOUGHTS)
    assert assistant["content"][1]["signature"] == "sig-round-1"
    assert "ENCRYPTED" not in (r.thinking or "")  # redacted thinking is never shown


def test_anthropic_thinking_is_checked_before_sending(fake_llm):
    model = fake_llm.script(tokens=["ok"])
    r = ask("anthropic", model, thinking=500)
    assert r.finish_reason == "error" and "at least 1024" in r.error and "--thinking" in r.error
    r = ask("anthropic", model, thinking=2048, temperature=0.2)
    assert r.finish_reason == "error" and "temperature" in r.error
    assert fake_llm.log(model) == []  # nothing was sent


def test_gemini_thought_parts(fake_llm):
    model = fake_llm.script(tokens=["It is ", "5."], thinking=THOUGHTS)
    r = ask("gemini", model, thinking=1024)
    assert r == "It is 5." and r.thinking == "".join(THOUGHTS)
    assert r.usage["reasoning_tokens"] == 3
    config = fake_llm.log(model)[0]["body"]["generationConfig"]["thinkingConfig"]
    flat = {k.replace("_", "").lower(): v for k, v in config.items()}  # the SDK mixes cases
    assert flat == {"thinkingbudget": 1024, "includethoughts": True}


def test_a_provider_that_cannot_think_says_so_before_sending():
    with pytest.raises(nbstream.errors.SettingsError, match="'local' cannot honour it") as info:
        nbstream.ask_sync("hi", model="local", thinking=1024, display="none")
    assert "anthropic" in str(info.value) and "gemini" in str(info.value)
    with pytest.raises(nbstream.errors.SettingsError, match="reasoning_effort"):
        nbstream.ask_sync("hi", model="anthropic:x", reasoning_effort="low", display="none")


# --- the engine's guarantees with thinking --------------------------------------------------


def test_thinking_is_progress_for_the_first_token_timeout(fake_llm):
    model = fake_llm.script(tokens=["done"], thinking=["a"] * 6, delay=0.25)
    r = ask("openai", model, first_token_timeout=0.6)
    assert r.finish_reason == "stop", r.error  # 1.5 s of thinking before the first token
    assert r.ttft > 1.0 and r.time_to_thinking < 0.6


def test_stop_while_thinking_closes_upstream_and_keeps_the_thinking(fake_llm):
    model = fake_llm.script(tokens=["never"], thinking=["x"] * 200, delay=0.05)
    pending = nbstream.ask_sync("Q", model=f"openai:{model}", display="none", background=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        log = fake_llm.log(model)
        if log and log[0].get("thinking_sent", 0) >= 5:
            break
        time.sleep(0.02)
    pending.stop()
    r = pending.wait(timeout=10)
    assert r.finish_reason == "cancelled" and r == ""
    assert r.thinking and r.thinking.startswith("xxxxx")
    assert fake_llm.wait_for_disconnect(model)["client_disconnected"]


def test_the_cache_and_the_history_keep_the_thinking(fake_llm, tmp_path):
    from nbstream import store

    cache = {"cache": "auto", "cache_dir": str(tmp_path / "cache")}
    model = fake_llm.script(tokens=["It is 5."], thinking=THOUGHTS)
    first = ask("openai", model, **cache)
    again = ask("openai", model, **cache)
    assert again.cached and again.thinking == first.thinking == "".join(THOUGHTS)
    path = tmp_path / "history.sqlite"
    store.flush(path)
    rows = store.read(path, 2)
    assert [row["thinking"] for row in rows] == ["".join(THOUGHTS)] * 2


def test_a_thinking_signature_travels_with_the_conversation(fake_llm):
    """A tool round's thinking (with its signature) stays in the thread: the next cell's
    request sends it back inside that round's assistant message."""
    from nbstream.conversation import reset

    reset("sig")

    @nbstream.tool(approve=False)
    def lookup(q: str) -> str:
        """Looks up."""
        return "found"

    model = fake_llm.script(
        answers=[
            {"text": "", "tool_calls": [{"name": "lookup", "arguments": '{"q": "x"}'}]},
            {"text": "Found it."},
            {"text": "Follow-up answer."},
        ],
        thinking=["hmm"],
        signature="sig-kept",
    )
    first = ask("anthropic", model, thinking=1024, tools=[lookup], chat="sig")
    assert first.finish_reason == "stop", first.error
    ask("anthropic", model, prompt="And then?", thinking=1024, tools=[lookup], chat="sig")
    third = fake_llm.log(model)[2]["body"]["messages"]
    sent = [b for m in third if isinstance(m["content"], list) for b in m["content"]]
    thinking = [b for b in sent if b.get("type") == "thinking"]
    assert thinking and thinking[0]["signature"] == "sig-kept"
