"""Thinking in an answer's text: ``<think>…</think>`` (Qwen3, DeepSeek-R1 distills through
Ollama, llama.cpp or vLLM without a reasoning parser) split from the answer as it streams.

:class:`ThinkTags` takes the text deltas as they come and gives back
:class:`~nbstream.providers.base.ThinkingDelta` pieces and answer text. Only a ``<think>`` at
the very start of the answer (after whitespace) opens a thinking section; it ends at
``</think>``. A tag split across deltas (``<thi`` + ``nk>``) is held back until it is
complete, so no piece of a tag is ever shown as the answer, and nothing is lost: text that
only looked like the start of a tag is passed on when the next delta shows it is not one; a
stream that ends inside the thinking keeps it as thinking.
"""

from __future__ import annotations

from nbstream.providers.base import ThinkingDelta

OPEN = "<think>"
CLOSE = "</think>"


class ThinkTags:
    """A small state machine over the answer's deltas (see the module docstring)."""

    def __init__(self) -> None:
        self.state = "start"  # start → thinking → closed → answer, or start → answer
        self.held = ""

    def feed(self, delta: str) -> list[str | ThinkingDelta]:
        """What ``delta`` adds: thinking pieces and answer text, in order."""
        if self.state == "answer":
            return [delta] if delta else []
        if self.state == "closed":  # the blank lines after </think> are no answer either
            delta = delta.lstrip("\n")
            if delta:
                self.state = "answer"
            return [delta] if delta else []
        text = self.held + delta
        self.held = ""
        out: list[str | ThinkingDelta] = []
        if self.state == "start":
            stripped = text.lstrip()
            if not stripped:
                self.held = text  # only whitespace so far: wait
                return out
            if stripped.startswith(OPEN):
                self.state = "thinking"
                text = stripped[len(OPEN) :]
            elif OPEN.startswith(stripped):
                self.held = text  # a tag may be starting
                return out
            else:
                self.state = "answer"
                return [text]
        # thinking: look for the closing tag, holding back a possible partial one
        end = text.find(CLOSE)
        if end >= 0:
            if text[:end]:
                out.append(ThinkingDelta(text[:end]))
            rest = text[end + len(CLOSE) :].lstrip("\n")
            self.state = "answer" if rest else "closed"
            if rest:
                out.append(rest)
            return out
        keep = _partial_suffix(text, CLOSE)
        body = text[: len(text) - keep]
        self.held = text[len(text) - keep :]
        if body:
            out.append(ThinkingDelta(body))
        return out

    def finish(self) -> list[str | ThinkingDelta]:
        """What was held back when the stream ended."""
        held, self.held = self.held, ""
        if not held:
            return []
        if self.state == "thinking":
            return [ThinkingDelta(held)]
        return [held] if held.strip() else []


def _partial_suffix(text: str, tag: str) -> int:
    """The length of the longest end of ``text`` that is a start of ``tag``."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-n:]):
            return n
    return 0


__all__ = ["CLOSE", "OPEN", "ThinkTags"]
