"""The widget's wire protocol, replayed by a Python twin of static/view.js."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from nbstream.display.widget import WidgetSink, common_prefix_len, static_bundle, utf16_len
from nbstream.engine import Stream
from nbstream.providers.base import Final, Request
from nbstream.render import markdown

CORPUS = sorted((Path(__file__).parent.parent / "corpus").glob("*.md"))


class Browser:
    """What view.js does with the messages, with JavaScript's UTF-16 string indexing."""

    def __init__(self) -> None:
        self.frozen = ""
        self.tail = ""
        self.state = "waiting"
        self.chunks = 0

    @staticmethod
    def _u16(text: str) -> bytes:
        return text.encode("utf-16-le", "surrogatepass")

    def apply(self, msg: dict) -> None:
        if msg["type"] == "status":
            self.state = msg["state"]
            return
        if msg["type"] == "reset":
            self.frozen, self.tail, self.state = msg["frozen"], msg["tail"], msg["state"]
        else:
            buf = self._u16(self.tail)[: 2 * msg["keep"]] + self._u16(msg["add"])
            cut = 2 * msg.get("freeze", 0)
            self.frozen += buf[:cut].decode("utf-16-le", "surrogatepass")
            self.tail = buf[cut:].decode("utf-16-le", "surrogatepass")
            self.state = msg.get("state", self.state)
        self.chunks = msg["chunks"]


class RecordingSink(WidgetSink):
    """A WidgetSink whose pushes are recorded through the injected ``send``."""

    def __init__(self, interval: float) -> None:
        super().__init__(interval=interval, send=self.record)
        self.sent: list[tuple[dict, str]] = []  # (message, the kernel's html at that moment)

    def record(self, msg: dict) -> None:
        self.sent.append((msg, self.html))


def run_tokens(tokens: list[str], interval: float, delay: float = 0.0) -> RecordingSink:
    async def provider(request):
        for t in tokens:
            if delay:
                await asyncio.sleep(delay)
            yield t
        yield Final("stop")

    sink = RecordingSink(interval)
    stream = Stream(provider, Request("p", "m"), model_id="t:m", sink=sink)
    asyncio.run(stream.run())
    return sink


def tokenize(text: str, size: int = 7) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


@pytest.mark.parametrize("path", CORPUS[:6], ids=lambda p: p.name)
def test_browser_state_matches_the_kernel_after_every_push(path):
    text = path.read_text(encoding="utf-8")
    sink = run_tokens(tokenize(text), interval=0.0)
    browser = Browser()
    for msg, html in sink.sent:
        browser.apply(msg)
        assert browser.frozen + browser.tail == html
    assert browser.frozen + browser.tail == markdown.render(text)
    assert browser.state == "stop" and browser.chunks == len(tokenize(text))


def test_non_bmp_characters_and_multibyte_diffs():
    text = "# Emoji 😀 test\n\nNaïve café — 漢字 and 🎉🎉 party.\n\n```\n😀 code 😀\n```\n\nend 🏁"
    for size in (1, 2, 3):
        sink = run_tokens(tokenize(text, size), interval=0.0)
        browser = Browser()
        for msg, html in sink.sent:
            browser.apply(msg)
            assert browser.frozen + browser.tail == html
        assert browser.frozen == markdown.render(text)


@pytest.mark.parametrize("path", CORPUS[:4], ids=lambda p: p.name)
def test_frozen_blocks_are_not_sent_twice(path):
    text = path.read_text(encoding="utf-8")
    sink = run_tokens(tokenize(text, 20), interval=0.0)  # a push per token: the worst case
    updates = [m for m, _ in sink.sent if m["type"] == "update"]
    added = sum(len(m["add"]) for m in updates)
    final_html = len(markdown.render(text))
    # The answer's HTML crosses once; each push also re-sends the open tail's closing tags
    # (measured 9-25 chars). Re-sending frozen blocks would cost another full final_html.
    assert added <= final_html + 30 * len(updates), (added, final_html, len(updates))


def test_throttled_pushes_and_first_token_at_once():
    tokens = [f"word{i} " for i in range(200)]
    sink = run_tokens(tokens, interval=0.05, delay=0.002)
    updates = [m for m, _ in sink.sent if m["type"] == "update"]
    assert updates[0]["chunks"] == 1  # the first token is not held back
    assert updates[-1]["chunks"] == 200 and updates[-1]["state"] == "stop"
    assert updates[-1]["label"] == "finished"
    assert 3 <= len(updates) <= 20, len(updates)  # ~0.4 s of tokens at ≤ 20 pushes/s


def test_common_prefix_and_utf16():
    assert common_prefix_len("<p>abc</p>", "<p>abcd</p>") == 6
    assert common_prefix_len("abc", "abcdef") == 3
    assert common_prefix_len("", "x") == 0
    assert utf16_len("a😀b") == 4


def test_static_bundle_is_sanitized_and_says_how_it_ended():
    from nbstream import Response

    r = Response(
        "<img src=x onerror=alert(1)> **hi**", finish_reason="error", error="boom", model="t:m"
    )
    bundle = static_bundle(r)
    assert "<img" not in bundle["text/html"] and "&lt;img" in bundle["text/html"]
    assert "<strong>hi</strong>" in bundle["text/html"]
    assert 'data-finish-reason="error"' in bundle["text/html"] and "boom" in bundle["text/html"]
    assert bundle["text/plain"].endswith("[nbstream: failed: boom]")


def run_thinking(thoughts: list[str], tokens: list[str], interval: float, delay: float = 0.0):
    from nbstream.providers.base import ThinkingDelta

    async def provider(request):
        for t in thoughts:
            if delay:
                await asyncio.sleep(delay)
            yield ThinkingDelta(t)
        for t in tokens:
            if delay:
                await asyncio.sleep(delay)
            yield t
        yield Final("stop")

    sink = RecordingSink(interval)
    stream = Stream(provider, Request("p", "m"), model_id="t:m", sink=sink)
    response = asyncio.run(stream.run())
    return sink, response


def test_thinking_streams_as_text_apart_from_the_answer():
    thoughts = [f"step {i} <b>not html</b>\n" for i in range(50)]
    sink, response = run_thinking(thoughts, ["The ", "answer."], interval=0.02, delay=0.002)
    msgs = [m for m, _ in sink.sent]
    thinking = [m for m in msgs if m["type"] == "thinking"]
    assert "".join(m["add"] for m in thinking) == "".join(thoughts)  # all of it, once
    assert thinking[0]["tokens"] == 1  # the first piece at once
    assert thinking[-1]["tokens"] == 50
    assert len(thinking) < 50  # throttled like the answer
    states = [m.get("state") for m in msgs if m["type"] == "update" and m.get("state")]
    assert states[0] == "thinking" and states[-1] == "stop"
    browser = Browser()
    for msg in msgs:
        if msg["type"] != "thinking":
            browser.apply(msg)
    assert browser.frozen + browser.tail == markdown.render("The answer.")
    assert response == "The answer." and response.thinking == "".join(thoughts)
    assert response.thinking_chunks == 50 and response.thinking_seconds is not None


def test_pushes_for_thinking_alone_send_no_empty_answer_updates():
    sink, _ = run_thinking(["a"] * 30, ["done"], interval=0.0, delay=0.001)
    updates = [m for m, _ in sink.sent if m["type"] == "update"]
    assert all(m["add"] or m.get("state") for m in updates), updates


def test_the_saved_answer_keeps_the_thinking_collapsed_and_escaped():
    _, response = run_thinking(["<script>x</script> hmm"], ["ok"], interval=0.0)
    html = static_bundle(response)["text/html"]
    section = html.split('<details class="nbstream-thinking">')[1].split("</details>")[0]
    assert section.startswith("<summary>Thought for 0 s · 1 token</summary>")
    assert "&lt;script&gt;x&lt;/script&gt; hmm" in section and "<script>" not in html
    assert "<details open" not in html  # collapsed
    dropped = static_bundle(response, thinking=False)["text/html"]
    assert '<details class="nbstream-thinking">' not in dropped and "hmm" not in dropped
    assert "hmm" not in static_bundle(response)["text/plain"]  # the text form: the answer
