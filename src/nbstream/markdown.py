"""Sanitized Markdown rendering, one-shot and incremental (for streaming answers).

LLM output is untrusted, so the parser is markdown-it's ``commonmark`` preset with raw HTML
disabled (``<script>``, ``<img onerror=…>`` … come out escaped as text) plus GFM tables and
strikethrough; markdown-it's ``validateLink`` refuses ``javascript:``, ``vbscript:``,
``file:`` and non-image ``data:`` URLs. No typographer, no linkify.

Streaming
---------
:class:`IncrementalMarkdown` receives the *full* text so far on every update. Re-rendering
all of it each time would cost O(n²) over an answer, so the source is split at a line
boundary into a **frozen** prefix, rendered exactly once and sent once, and an **open
tail** (``pending``), re-parsed on each update. Only the tail is parsed, so the cost of an
update does not grow with the length of the answer.

The freezing rule. The tail is parsed on its own; its top-level blocks (markdown-it tokens at
level 0, with ``map`` line ranges) are the candidates. The source is cut at line ``C`` — the
first line of a top-level block, or the end of the complete lines — only when nothing that
can ever be appended after ``C`` changes how the lines before ``C`` parse. With ``P`` the
top-level block before ``C`` and ``gap`` the lines between the end of ``P`` and ``C``:

1. If line ``C-1`` is blank and lies after ``P``, and ``P`` is not a list or an indented
   code block, cut. A blank line closes paragraphs (no lazy continuation, no setext
   underline, no table delimiter row can reach back across it), blockquotes, tables and
   reference definitions; headings, thematic breaks and closed fences are closed anyway.
   An unclosed fence contains the blank line, so it never qualifies.
2. If ``gap`` holds non-blank lines (reference definitions, which leave no tokens: their
   title may continue on following lines), rule 1 is the only way to cut.
3. If ``P`` is a list or an indented code block and line ``C-1`` is blank: these continue
   across blank lines (another item, an indented line), so cut only once line ``C`` is
   complete. After a blank line whether ``C`` continues ``P`` depends on line ``C`` alone
   (its indentation and list marker), so that settles it.
4. Otherwise (``C`` follows ``P`` directly — a heading, a fence or list interrupting a
   paragraph, a line right after a closing fence …): cut once lines ``C`` *and* ``C+1`` are
   complete. Whether ``C`` interrupts ``P`` or lazily continues it depends on line ``C`` and,
   for a GFM table whose delimiter row is ``C+1``, on one more line; markdown-it looks no
   further ahead.

The largest such ``C`` wins. The frozen blocks are rendered from the same token stream as
the tail (rendering a token list split at a top-level boundary concatenates exactly), with
the reference definitions of the frozen part carried in a shared ``env``. An unterminated
fence stays in the tail and renders as code (markdown-it closes it at the end of input), so
a streaming code block never flickers between paragraph and code.

The one divergence possible is a reference definition (``[x]: http://…``) arriving after a
frozen block used ``[x]``: when the text contains ``]:``, :meth:`IncrementalMarkdown.finish`
checks the frozen HTML against one final one-shot :func:`render` and, if they differ, sends
everything again with ``reset=True``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token

__all__ = ["IncrementalMarkdown", "Update", "make_parser", "render"]

# Top-level blocks that can continue across blank lines (rule 3 of the module docstring).
_OPEN_ACROSS_BLANKS = frozenset({"bullet_list_open", "ordered_list_open", "code_block"})


def make_parser() -> MarkdownIt:
    """A sanitizing parser: CommonMark, raw HTML off, GFM tables and strikethrough on."""
    md = MarkdownIt("commonmark", {"html": False, "typographer": False, "linkify": False})
    md.enable(["table", "strikethrough"])
    return md


_MD = make_parser()


def _render_uncached(text: str) -> str:
    return _MD.render(text)


@functools.lru_cache(maxsize=8)
def render(text: str) -> str:
    """Sanitized HTML of the whole ``text`` (memoised: the end of a stream renders it twice)."""
    return _render_uncached(text)


@dataclass(frozen=True)
class Update:
    """What a consumer must apply after one :meth:`IncrementalMarkdown.update`."""

    frozen: str
    """HTML of blocks that became final since the previous update (append it; "" if none)."""
    tail: str
    """HTML of the still-open tail (it replaces the previous tail)."""
    reset: bool = False
    """True: discard all frozen HTML received so far; ``frozen`` then holds all of it."""


def _normalize(chunk: str) -> str:
    return chunk.replace("\r\n", "\n").replace("\r", "\n")


class IncrementalMarkdown:
    """Renders a growing text, freezing blocks that can no longer change.

    ``chars_processed`` counts the characters handed to the Markdown parser (tail parses,
    reference collection and the final check), a deterministic measure of the work done.
    """

    def __init__(self) -> None:
        self._md = _MD
        self.chars_processed = 0
        self.updates = 0
        self._clear()

    def _clear(self) -> None:
        self._text = ""  # the raw text of the last update
        self._cr = False  # the raw text ended with "\r" (a "\n" after it is the same newline)
        self._pending = ""  # normalized source not frozen yet
        self._refs: dict[str, Any] = {}  # reference definitions in the frozen source
        self._frozen_parts: list[str] = []
        self._tail = ""
        self._finished = False

    # -- public API --------------------------------------------------------------------------

    def update(self, text: str) -> Update:
        """Take the full text so far (it may only grow by appending) and say what changed."""
        self.updates += 1
        if self._finished or not text.startswith(self._text):
            if self._finished and text == self._text:
                return Update("", self._tail)
            self._clear()
            self._append(text)
            self._text = text
            self._advance()
            return Update(self.frozen_html, self._tail, reset=True)
        if len(text) == len(self._text):
            return Update("", self._tail)
        self._append(text[len(self._text) :])
        self._text = text
        return Update(self._advance(), self._tail)

    def finish(self) -> Update:
        """End of stream: freeze everything; ``reset`` if the result differs from one-shot."""
        if self._finished:
            return Update("", "")
        piece = self._advance(final=True)
        self._finished = True
        if "]:" not in self._text:
            # Without a reference definition nothing can reach back into frozen blocks: the
            # freezing rule makes the result equal a one-shot render (the tests check this on
            # the corpus and on random splits), so skip the O(n) re-render.
            return Update(piece, "")
        self.chars_processed += len(self._text)
        expected = render(self._text)
        if self.frozen_html != expected:
            self._frozen_parts = [expected]
            return Update(expected, "", reset=True)
        return Update(piece, "")

    @property
    def frozen_html(self) -> str:
        """All frozen HTML so far."""
        if len(self._frozen_parts) > 1:
            self._frozen_parts = ["".join(self._frozen_parts)]
        return self._frozen_parts[0] if self._frozen_parts else ""

    @property
    def tail_html(self) -> str:
        """HTML of the open tail."""
        return self._tail

    @property
    def html(self) -> str:
        """All frozen HTML plus the current tail."""
        return self.frozen_html + self._tail

    @property
    def pending_source(self) -> str:
        """The (normalized) source that is not frozen yet."""
        return self._pending

    # -- internals ---------------------------------------------------------------------------

    def _append(self, chunk: str) -> None:
        """Append raw text, normalizing newlines as markdown-it does (CRLF may be split)."""
        if not chunk:
            return
        ends_cr = chunk.endswith("\r")
        if self._cr and chunk.startswith("\n"):
            chunk = chunk[1:]
        self._cr = ends_cr
        self._pending += _normalize(chunk)

    def _advance(self, final: bool = False) -> str:
        """Parse the tail, freeze what is final, set ``self._tail``; return new frozen HTML."""
        src = self._pending
        if not src:
            self._tail = ""
            return ""
        env: dict[str, Any] = {"references": dict(self._refs)}
        tokens = self._md.parse(src, env)
        self.chars_processed += len(src)
        if final:
            cut_line, cut_tok = -1, len(tokens)
        else:
            cut_line, cut_tok = _find_cut(src, tokens)
        renderer = self._md.renderer
        if cut_line == 0:
            self._tail = renderer.render(tokens, self._md.options, env)
            return ""
        piece = renderer.render(tokens[:cut_tok], self._md.options, env)
        self._tail = renderer.render(tokens[cut_tok:], self._md.options, env)
        if final:
            frozen_src, self._pending = src, ""
        else:
            offset = _line_offset(src, cut_line)
            frozen_src, self._pending = src[:offset], src[offset:]
        if "]:" in frozen_src:  # may define references: keep them for the blocks to come
            ref_env: dict[str, Any] = {}
            self._md.block.parse(frozen_src, self._md, ref_env, [])
            self.chars_processed += len(frozen_src)
            for label, ref in ref_env.get("references", {}).items():
                self._refs.setdefault(label, ref)
        if piece:
            self._frozen_parts.append(piece)
        return piece


def _line_offset(src: str, line: int) -> int:
    """Character offset where ``line`` (0-based) starts in ``src``."""
    pos = 0
    for _ in range(line):
        pos = src.index("\n", pos) + 1
    return pos


def _find_cut(src: str, tokens: list[Token]) -> tuple[int, int]:
    """The largest safe cut: (line, token index); (0, 0) if nothing can be frozen yet."""
    lines = src.split("\n")
    complete = len(lines) - 1  # lines 0 .. complete-1 end with "\n"

    def blank(i: int) -> bool:
        return not lines[i].strip(" \t")

    blocks = [(i, t) for i, t in enumerate(tokens) if t.level == 0 and t.nesting >= 0 and t.map]
    # Candidates, last first: the end of the complete lines, then each block start but the first.
    candidates: list[tuple[int, int, Token | None]] = []
    candidates.append((complete, len(tokens), blocks[-1][1] if blocks else None))
    for j in range(len(blocks) - 1, 0, -1):
        candidates.append((blocks[j][1].map[0], blocks[j][0], blocks[j - 1][1]))  # type: ignore[index]
    for cut, tok_index, prev in candidates:
        if cut <= 0:
            continue
        prev_end = prev.map[1] if prev is not None and prev.map else 0
        if prev_end > cut:
            continue  # the candidate lies inside the previous block
        blank_before = blank(cut - 1)
        gap_has_text = any(not blank(i) for i in range(prev_end, cut))
        open_type = prev is not None and prev.type in _OPEN_ACROSS_BLANKS
        if gap_has_text:  # reference definitions: only a blank line closes them
            ok = blank_before and cut - 1 >= prev_end
        elif open_type:
            ok = cut < complete if blank_before else cut + 1 < complete
        elif blank_before and cut - 1 >= prev_end:
            ok = True
        else:
            ok = cut + 1 < complete
        if ok and cut <= complete:
            return cut, tok_index
    return 0, 0
