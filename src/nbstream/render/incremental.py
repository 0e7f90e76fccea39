"""Sanitized Markdown rendering, one-shot and incremental (for streaming answers).

LLM output is untrusted, so the parser is markdown-it's ``commonmark`` preset with raw HTML
disabled (``<script>``, ``<img onerror=…>`` … come out escaped as text) plus GFM tables and
strikethrough; markdown-it's ``validateLink`` refuses ``javascript:``, ``vbscript:``,
``file:`` and non-image ``data:`` URLs. No typographer, no linkify. On top of that:

- **Math** (:mod:`nbstream.render.mathml`): ``$…$``, ``$$…$$``, ``\\(…\\)`` and ``\\[…\\]`` are kept
  out of the Markdown pass and typeset to sanitized MathML in Python, with the LaTeX source
  kept in an ``<annotation>``. A price ("costs $5 and $10") is not math.
- **Code** (:mod:`nbstream.render.highlight`): a fenced block becomes
  ``<div class="nbstream-code" data-lang="python"><div class="nbstream-code-lang">python</div>
  <pre class="highlight"><code class="language-python">…</code></pre></div>``, highlighted by
  Pygments with CSS classes (``static/highlight.css``); unknown language: same structure with
  plain escaped code; no language: ``<div class="nbstream-code"><pre><code>…``.
  :func:`code_blocks` lists the fenced blocks of a text.

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
   underline, no table delimiter row can reach back across it), blockquotes, tables, math
   blocks and reference definitions; headings, thematic breaks and closed fences are closed
   anyway. An unclosed fence contains the blank line, so it never qualifies.
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
   further ahead (the math rules are written to keep it so: see :mod:`nbstream.render.mathml`).

The largest such ``C`` wins. The frozen blocks are rendered from the same token stream as
the tail (rendering a token list split at a top-level boundary concatenates exactly), with
the reference definitions of the frozen part carried in a shared ``env``. An unterminated
fence stays in the tail and renders as code (markdown-it closes it at the end of input), so
a streaming code block never flickers between paragraph and code.

One long open block
-------------------
A block that does not close for a long time (a 100 KB list, table, blockquote or code fence)
stays in the tail, and re-parsing it whole on every update would again be O(n²). Once the
first block of the tail is longer than ``OPEN_BLOCK_MIN_CHARS``, it becomes an *open block*:
its complete parts are rendered once and cached ("settled"), and each update re-parses only
the unsettled rest, behind a short **prelude** that puts markdown-it in the same context:

- *list*: parts are items. An item is settled once the first line of the next item is
  complete (nothing after that line can change an earlier item). Prelude: a dummy item
  ``- x`` with the same marker and indentation as the first unsettled item, so that the rest
  parses as the same list; whether the dummy's paragraph comes out hidden tells whether the
  list is tight. Tightness is list-wide (a blank line between two late items makes every
  ``<li>`` show its ``<p>``), so item HTML is rendered with the list's tightness forced onto
  its paragraphs, and the settled items are re-rendered when the list turns loose, which
  happens at most once per list.
- *GFM table*: parts are body rows, settled once complete (whether a line is a row depends
  on that line only). Prelude: a header row of empty cells with the real column count, and
  the real delimiter row (alignment); the real header's HTML is rendered once. markdown-it's
  cap on auto-completed cells counts over the whole table, so past half that cap the open
  block gives up (falls back to whole re-parses).
- *blockquote*: parts are the quote's inner blocks, settled by the freezing rule above
  applied inside the quote (a ``>`` line with nothing after the marker counts as blank).
  Prelude: ``>``.
- *fenced code*: parts are complete lines (a complete line is content or the closing
  fence, whatever follows). Prelude: the opening fence line. The HTML of the open fence is
  highlighted line by line (:class:`nbstream.render.highlight.StreamingHighlighter`); when the
  fence closes, or the answer ends inside it, the whole block is highlighted once more in
  one go, so the final HTML is exactly a one-shot render.

Which top-level block the unsettled rest belongs to, where it ends and which cut is safe
are decided on that re-parse, with the same rules (they see the real line before the rest,
not the prelude's); the block's HTML is the cached parts plus the rest's. So the result is
the same as re-parsing the whole tail; only a streaming code fence may differ in a few
highlighting spans until it closes. A long block inside a long blockquote (a list or a
fence in a quote) is rendered by a nested renderer fed the quote's lines without their
``>`` (see ``_OpenQuote``); one list item holding a long sub-list is not split further.

The one divergence possible is a reference definition (``[x]: http://…``) arriving after a
frozen block used ``[x]``: when the text contains ``]:``, :meth:`IncrementalMarkdown.finish`
checks the frozen HTML against one final one-shot :func:`render` and, if they differ, sends
everything again with ``reset=True``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from markdown_it.token import Token

from nbstream.render.markdown import _MD, _WORK, render
from nbstream.render.open_blocks import (
    _blank,
    _blocks,
    _Context,
    _Fallback,
    _find_cut,
    _line_offset,
    _open_block,
    _OpenBlock,
    _OpenQuote,
    _Tail,
)

# -- incremental rendering -------------------------------------------------------------------


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
    reference collection and the final check) and to the syntax highlighter, a deterministic
    measure of the work done.
    """

    def __init__(self) -> None:
        self._md = _MD
        self.chars_processed = 0
        self._clear()

    def _clear(self) -> None:
        self._text = ""  # the raw text of the last update
        self._cr = False  # the raw text ended with "\r" (a "\n" after it is the same newline)
        self._pending = ""  # normalized source not frozen yet
        self._refs: dict[str, Any] = {}  # reference definitions in the frozen source
        self._open_refs: dict[str, Any] = {}  # … in the settled parts of the open block
        self._open: _OpenBlock | None = None  # the first pending block, if parsed by parts
        self._open_failed = False  # it fell back to whole parses: do not retry until a cut
        self._frozen_parts: list[str] = []
        self._tail = ""
        self._finished = False

    # -- public API --------------------------------------------------------------------------

    def update(self, text: str) -> Update:
        """Take the full text so far (it may only grow by appending) and say what changed."""
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

    def extend(self, chunk: str) -> Update:
        """Append ``chunk`` to the source and say what changed: :meth:`update` without
        comparing the whole text each time (a nested renderer, fed by its open blockquote,
        which only ever appends; ``finish`` is not called on it)."""
        if chunk:
            self._append(chunk)
            return Update(self._advance(), self._tail)
        return Update("", self._tail)

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

    def _parse(self, src: str, env: dict[str, Any]) -> list[Token]:
        self.chars_processed += len(src)
        return self._md.parse(src, env)

    def _collect_refs(self, src: str, refs: dict[str, Any]) -> None:
        """Add the reference definitions of ``src`` to ``refs`` (the first one wins)."""
        if "]:" not in src:
            return
        ref_env: dict[str, Any] = {}
        self._md.block.parse(src, self._md, ref_env, [])
        self.chars_processed += len(src)
        for label, ref in ref_env.get("references", {}).items():
            refs.setdefault(label, ref)

    def _advance(self, final: bool = False) -> str:
        """Parse the tail, freeze what is final, set ``self._tail``; return new frozen HTML."""
        if not self._pending:
            self._tail = ""
            return ""
        env: dict[str, Any] = {"references": {**self._open_refs, **self._refs}, _WORK: [0]}
        tail = None
        if self._open is not None:
            try:
                tail = self._parse_open_block(env, final)
            except _Fallback:
                self._open, self._open_failed = None, True
        if tail is None:
            src = self._pending
            tokens = self._parse(src, env)
            lines = src.split("\n")
            tail = _Tail(src, 0, 0, tokens, lines, lines, 0, [])
        try:
            return self._cut(tail, env, final)
        finally:
            self.chars_processed += env[_WORK][0]

    def _parse_open_block(self, env: dict[str, Any], final: bool) -> _Tail:
        """Re-parse the unsettled rest of the open block (behind its prelude) and after."""
        block = self._open
        assert block is not None
        if isinstance(block, _OpenQuote) and block.nested is not None:
            return block.nested_tail(self, final)  # a long block inside a long quote
        src = block.prelude + self._pending[block.start :]
        tokens = self._parse(src, env)
        lines = src.split("\n")
        cut_lines = lines
        if block.last_line is not None:  # the cut rules look at the real line before the rest
            cut_lines = [*lines]
            cut_lines[block.prelude.count("\n") - 1] = block.last_line
        tail = _Tail(src, len(block.prelude), block.start, tokens, lines, cut_lines, 0, [])
        ctx = _Context(self, block, tail, env, final)
        tail.first, tail.open_parts = block.absorb(ctx)
        return tail

    def _cut(self, tail: _Tail, env: dict[str, Any], final: bool) -> str:
        """Freeze what the cut rules allow, set the tail HTML, return the new frozen HTML."""
        tokens = tail.tokens
        renderer, options = self._md.renderer, self._md.options
        if final:
            cut_line, cut_tok = len(tail.lines), len(tokens)
        else:
            blocks = _blocks(tokens, 0, len(tokens), 0)
            cut_line, cut_tok = _find_cut(tail.cut_lines, blocks, len(tokens), _blank)
        if cut_line == 0:
            rest = renderer.render(tokens[tail.first :], options, env)
            self._tail = "".join([*tail.open_parts, rest])
            if self._open is None and not final and not self._open_failed:
                self._open = _open_block(tail, 0, tokens, renderer, options, env)
            return ""
        rest = renderer.render(tokens[tail.first : cut_tok], options, env)
        piece = "".join([*tail.open_parts, rest])
        self._tail = renderer.render(tokens[cut_tok:], options, env)
        if final:
            offset = len(self._pending)
        else:
            offset = tail.start + _line_offset(tail.src, cut_line) - tail.skip
        frozen_src, self._pending = self._pending[:offset], self._pending[offset:]
        self._open, self._open_refs, self._open_failed = None, {}, False
        self._collect_refs(frozen_src, self._refs)  # for the blocks to come
        if not final:
            self._open = _open_block(tail, cut_line, tokens[cut_tok:], renderer, options, env)
        if piece:
            self._frozen_parts.append(piece)
        return piece
