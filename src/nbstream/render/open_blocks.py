"""The open blocks of incremental rendering — a long list, table, blockquote or fence that is
still growing, re-rendered by parts so that its cost stays proportional to the new text (see
"One long open block" in :mod:`nbstream.render.incremental`) — and the cut rules that decide
which top-level blocks are final."""

from __future__ import annotations

import importlib
import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from markdown_it.common.utils import escapeHtml
from markdown_it.token import Token

from nbstream.render import highlight
from nbstream.render.markdown import fence_language

if TYPE_CHECKING:
    from nbstream.render.incremental import IncrementalMarkdown


OPEN_BLOCK_MIN_CHARS = 1500
"""A first tail block longer than this is re-parsed by parts (see "One long open block")."""

# Top-level blocks that may become open blocks (see "One long open block").
_OPEN_BLOCK_TYPES = frozenset(
    {"bullet_list_open", "ordered_list_open", "table_open", "blockquote_open", "fence"}
)
# Top-level blocks that can continue across blank lines (rule 3 of the module docstring).
_OPEN_ACROSS_BLANKS = frozenset({"bullet_list_open", "ordered_list_open", "code_block"})


class _Fallback(Exception):
    """The re-parse of an open block did not look as expected: re-parse the whole tail."""


@dataclass
class _Tail:
    """One parse of the pending source (or of an open block's prelude + unsettled rest)."""

    src: str  # what was parsed
    skip: int  # characters of ``src`` that are not pending source (the prelude)
    start: int  # offset in the pending source of ``src[skip]``
    tokens: list[Token]
    lines: list[str]  # src.split("\n")
    cut_lines: list[str]  # the lines the cut rules see (the prelude's last one: the real one)
    first: int  # tokens[:first] are the open block's, rendered as ``open_parts``
    open_parts: list[str]  # its HTML, in pieces (joined once with the rest of the tail)

    @property
    def complete(self) -> int:
        """Number of complete lines (ending in "\\n")."""
        return len(self.lines) - 1


class _Context:
    """What an open block needs while it absorbs one re-parse."""

    def __init__(
        self,
        owner: IncrementalMarkdown,
        block: _OpenBlock,
        tail: _Tail,
        env: dict[str, Any],
        final: bool,
    ) -> None:
        self.owner, self.block, self.tail, self.env, self.final = owner, block, tail, env, final
        self.tokens = tail.tokens

    def render(self, tokens: Sequence[Token]) -> str:
        md = self.owner._md
        return str(md.renderer.render(tokens, md.options, self.env))

    def parse(self, src: str) -> list[Token]:
        return self.owner._parse(src, self.env)

    def settled_refs(self, src: str) -> None:
        """Keep the reference definitions of settled source (with its prelude)."""
        self.owner._collect_refs(src, self.owner._open_refs)

    def add_work(self, chars: int) -> None:
        self.owner.chars_processed += chars

    def settle(self, line: int) -> None:
        """Lines before ``line`` (of the parsed source) are settled: move the rest's start."""
        tail = self.tail
        if line <= tail.src[: tail.skip].count("\n"):
            return  # nothing past the prelude
        self.block.start = tail.start + _line_offset(tail.src, line) - tail.skip
        self.block.last_line = tail.lines[line - 1]


class _OpenBlock:
    """The first block of the pending source, re-parsed by parts (see the module docstring)."""

    prelude: str  # put before the unsettled rest when re-parsing ("…\n")
    start: int  # offset in the pending source of the first unsettled line
    last_line: str | None = None  # text of the line before ``start``, once one is settled
    opening: tuple[str, ...] = ()  # the block's first token type(s)

    def absorb(self, ctx: _Context) -> tuple[int, list[str]]:
        """Settle what is complete; return (tokens of this block, its HTML as pieces)."""
        raise NotImplementedError

    def _check(self, ctx: _Context) -> int:
        """Index of this block's closing token in the re-parse (raise _Fallback if absent)."""
        tokens = ctx.tokens
        if not tokens or tokens[0].type not in self.opening or tokens[0].level != 0:
            raise _Fallback
        return _close_index(tokens, 0)


_LIST_MARKER = re.compile(r"( {0,3})(?:([-+*])|\d{1,9}([.)]))")


def _list_prelude(line: str) -> str:
    """A dummy item that starts the same list as the item on ``line`` and ends before it."""
    match = _LIST_MARKER.match(line)
    if match is None:
        raise _Fallback
    indent, bullet, delimiter = match.groups()
    return f"{indent}{bullet or '1' + delimiter} x\n"


def _set_tightness(tokens: Sequence[Token], loose: bool) -> None:
    """Show or hide the paragraphs of top-level list items, as markdown-it does for a list."""
    for token in tokens:
        if token.level == 2 and token.type in ("paragraph_open", "paragraph_close"):
            token.hidden = not loose


class _OpenList(_OpenBlock):
    """A long list: settled items, the rest re-parsed behind a dummy item ``- x``."""

    opening = ("bullet_list_open", "ordered_list_open")

    def __init__(self, start: int, first_line: str, open_html: str, close_html: str) -> None:
        self.start = self.first = start  # ``first``: where the list's first item starts
        self.prelude = _list_prelude(first_line)
        self.open_html, self.close_html = open_html, close_html
        self.items: list[str] = []  # HTML of the settled items
        self.settled_loose = False  # a settled item makes the list loose
        self.items_loose = False  # the tightness ``items`` were rendered with

    def absorb(self, ctx: _Context) -> tuple[int, list[str]]:
        tokens, tail = ctx.tokens, ctx.tail
        close = self._check(ctx)
        items = [i for i in range(close) if tokens[i].type == "list_item_open"]
        items = [i for i in items if tokens[i].level == 1]
        if len(items) < 2 or tokens[items[0] + 1].type != "paragraph_open":
            raise _Fallback  # the rest does not continue the list after the dummy item
        loose = self.settled_loose or not tokens[items[0] + 1].hidden
        real = items[1:]
        # Items before the last one whose first line is complete are settled.
        whole = [i for i in real if tokens[i].map[0] < tail.complete]  # type: ignore[index]
        if not ctx.final and len(whole) >= 2:
            nxt = whole[-1]
            settled = real[: real.index(nxt)]
            first_line, next_line = tokens[settled[0]].map[0], tokens[nxt].map[0]  # type: ignore[index]
            part = tail.src[_line_offset(tail.src, first_line) : _line_offset(tail.src, next_line)]
            sentinel = _list_prelude(tail.lines[next_line])
            if any(_blank(line) for line in tail.lines[first_line:next_line]):
                # Only blank lines make a list loose. Parse the settled items alone, between
                # the prelude and a dummy next item: that item's paragraph tells.
                part_tokens = ctx.parse(self.prelude + part + sentinel)
                part_items = [i for i, t in enumerate(part_tokens) if t.type == "list_item_open"]
                part_items = [i for i in part_items if part_tokens[i].level == 1]
                if len(part_items) < 3 or part_tokens[part_items[0] + 1].type != "paragraph_open":
                    raise _Fallback
                self.settled_loose |= not part_tokens[part_items[0] + 1].hidden
                loose = loose or self.settled_loose
            self._rerender(ctx, loose)
            body = tokens[settled[0] : nxt]
            _set_tightness(body, loose)
            self.items.append(ctx.render(body))
            ctx.settled_refs(self.prelude + part)
            ctx.settle(next_line)
            self.prelude = sentinel
            rest = tokens[nxt:close]
        else:
            self._rerender(ctx, loose)
            rest = tokens[real[0] : close]
        _set_tightness(rest, loose)
        return close + 1, [self.open_html, *self.items, ctx.render(rest), self.close_html]

    def _rerender(self, ctx: _Context, loose: bool) -> None:
        """Render the settled items again if the list's tightness changed (once per list)."""
        if loose == self.items_loose:
            return
        self.items_loose = loose
        if self.items:
            tokens = ctx.parse(ctx.owner._pending[self.first : self.start])
            if _close_index(tokens, 0) != len(tokens) - 1:
                raise _Fallback  # the settled items alone are not exactly one list
            _set_tightness(tokens, loose)
            self.items = [ctx.render(tokens[1:-1])]


_TABLE = importlib.import_module("markdown_it.rules_block.table")
_MAX_CELLS = getattr(_TABLE, "MAX_AUTOCOMPLETED_CELLS", None)


class _OpenTable(_OpenBlock):
    """A long GFM table: settled rows, the rest re-parsed behind header and delimiter rows."""

    opening = ("table_open",)

    def __init__(self, start: int, head_html: str, columns: int, delimiter: str) -> None:
        self.start = start
        # A header row of empty cells: the same column count, less to parse on every update.
        self.prelude = f"|{' |' * columns}\n{delimiter}\n"
        self.head_html, self.columns = head_html, columns  # the real header's HTML
        self.rows: list[str] = []  # HTML of the settled body rows
        self.settled_rows = 0
        self.missing_cells = 0  # cells markdown-it auto-completed in the settled rows

    def absorb(self, ctx: _Context) -> tuple[int, list[str]]:
        tokens, tail = ctx.tokens, ctx.tail
        close = self._check(ctx)
        head_end = next(i for i in range(close) if tokens[i].type == "thead_close") + 1
        rows = [i for i in range(head_end, close) if tokens[i].type == "tr_open"]
        body_end = close - 1 if tokens[close - 1].type == "tbody_close" else close
        rest_from = rows[0] if rows else body_end
        if not ctx.final:
            whole = [i for i in rows if tokens[i].map[0] < tail.complete]  # type: ignore[index]
            if whole:
                last = whole[-1]
                end = _close_index(tokens, last) + 1
                self.rows.append(ctx.render(tokens[whole[0] : end]))
                self._count_missing(tail, tokens, whole)
                ctx.settle(tokens[last].map[1])  # type: ignore[index]
                rest_from = end
        rest = ctx.render(tokens[rest_from:body_end])
        if not self.rows and not rest:
            return close + 1, [self.head_html, "</table>\n"]
        return close + 1, [self.head_html, "<tbody>\n", *self.rows, rest, "</tbody>\n</table>\n"]

    def _count_missing(self, tail: _Tail, tokens: Sequence[Token], rows: list[int]) -> None:
        """Keep clear of markdown-it's whole-table cap on auto-completed cells: it counts over
        the whole table, a re-parse of the rest would not see the settled rows' share."""
        self.settled_rows += len(rows)
        if _MAX_CELLS is None or self.settled_rows * self.columns <= _MAX_CELLS // 2:
            return  # cannot be near the cap yet
        for i in rows:
            cells = _TABLE.escapedSplit(tail.lines[tokens[i].map[0]].strip())  # type: ignore[index]
            cells = cells[1:] if cells and cells[0] == "" else cells
            cells = cells[:-1] if cells and cells[-1] == "" else cells
            self.missing_cells += self.columns - len(cells)
        if self.missing_cells > _MAX_CELLS // 2:
            raise _Fallback


def _quote_blank(line: str) -> bool:
    """Blank as a line of the blockquote's content: ``>`` and only whitespace after it."""
    text = line.lstrip(" ")
    if len(line) - len(text) <= 3 and text.startswith(">"):
        return not text[1:].strip(" \t")
    return not line.strip(" \t")


_QUOTE_MARKER = re.compile(r" {0,3}> ?")


class _OpenQuote(_OpenBlock):
    """A long blockquote: settled inner blocks, the rest re-parsed behind ``>``. When the
    rest is itself one long block (a list or a fence inside the quote), re-parsing it on
    every update would be O(n²) again (measured: 137 s of CPU for a 100 KB fence in a
    quote): the inside is then rendered by a nested :class:`IncrementalMarkdown` fed the
    quote's lines without their markers, while every line keeps its ``>`` — a line without
    one (the quote may end, or continue lazily) or a tab falls back to whole re-parses, and
    the end of the answer re-parses the quote whole, so the final HTML is a one-shot render."""

    opening = ("blockquote_open",)

    def __init__(self, start: int) -> None:
        self.start = start
        self.prelude = ">\n"
        self.parts: list[str] = []  # HTML of the settled inner blocks
        self.nested: Any = None  # the IncrementalMarkdown of the inside, once it is long
        self.fed = 0  # characters of the rest up to the end of its last complete line
        self.partial = ""  # what the nested renderer has of the incomplete line after it

    def absorb(self, ctx: _Context) -> tuple[int, list[str]]:
        tokens, tail = ctx.tokens, ctx.tail
        close = self._check(ctx)
        rest_from = 1
        if not ctx.final and tokens[0].map[1] >= tail.complete:  # type: ignore[index]
            inner = _blocks(tokens, 1, close, 1)
            cut_line, cut_tok = _find_cut(tail.cut_lines, inner, close, _quote_blank)
            if cut_line > 0 and cut_tok > 1:
                self.parts.append(ctx.render(tokens[1:cut_tok]))
                ctx.settled_refs(tail.src[: _line_offset(tail.src, cut_line)])
                ctx.settle(cut_line)
                rest_from = cut_tok
            elif len(tail.src) - tail.skip > OPEN_BLOCK_MIN_CHARS and "\t" not in tail.src:
                self.nested = type(ctx.owner)()  # one long inner block: by parts from now
        rest = ctx.render(tokens[rest_from:close])
        opening = "<blockquote>\n" if self.parts or rest else "<blockquote>"
        return close + 1, [opening, *self.parts, rest, "</blockquote>\n"]

    def nested_tail(self, owner: IncrementalMarkdown, final: bool) -> _Tail:
        """The quote's HTML from the nested renderer, without parsing the rest (no tokens:
        nothing after the quote yet, so nothing to cut)."""
        if final:
            raise _Fallback  # the end: one whole parse, exact
        src = owner.pending_source[self.start :]
        end = max(src.rfind("\n") + 1, self.fed)
        lines = "".join(_dequote(line) + "\n" for line in src[self.fed : end].split("\n")[:-1])
        self.fed = end
        partial = src[end:]
        marker = _QUOTE_MARKER.match(partial)
        if marker is not None:
            last = partial[marker.end() :]
        elif len(partial) <= 3 and not partial.strip(" "):
            last = ""  # its marker has not arrived yet
        else:
            raise _Fallback  # a line without ">": the quote may end here
        if "\t" in last:
            raise _Fallback
        grown = lines + last  # starts with what was fed of the line incomplete before
        if not grown.startswith(self.partial):
            raise _Fallback
        before = self.nested.chars_processed
        self.nested.extend(grown[len(self.partial) :])
        self.partial = last
        owner.chars_processed += self.nested.chars_processed - before
        inside = self.nested.html
        opening = "<blockquote>\n" if self.parts or inside else "<blockquote>"
        html = [opening, *self.parts, inside, "</blockquote>\n"]
        return _Tail("", 0, self.start, [], [""], [""], 0, html)


def _dequote(line: str) -> str:
    """A complete line of the quote without its marker (``_Fallback`` if it has none)."""
    marker = _QUOTE_MARKER.match(line)
    if marker is None or "\t" in line:
        raise _Fallback
    return line[marker.end() :]


class _OpenFence(_OpenBlock):
    """A long code fence: settled lines, the rest re-parsed behind the opening line."""

    opening = ("fence",)

    def __init__(self, start: int, opening_line: str, info: str) -> None:
        self.start = start
        self.prelude = opening_line + "\n"
        self.lang = fence_language(info)
        lexer = highlight.lexer_for(self.lang)
        self.streamer = highlight.StreamingHighlighter(lexer) if lexer else None
        self.code: list[str] = []  # settled content lines
        self.escaped: list[str] = []  # … escaped (no highlighting)
        self.closed_html: str | None = None  # the exact HTML, once the fence has closed

    def absorb(self, ctx: _Context) -> tuple[int, list[str]]:
        self._check(ctx)
        token, tail = ctx.tokens[0], ctx.tail
        assert token.map is not None
        if self.closed_html is not None:
            return 1, [self.closed_html]
        content = token.content
        content_lines = content.count("\n")
        if content and not content.endswith("\n"):
            content_lines += 1  # the unfinished last line
        closed = token.map[1] - token.map[0] - 1 > content_lines  # the closing line is there
        if ctx.final or (closed and token.map[1] - 1 < tail.complete):
            code = "".join(self.code) + content
            if self.streamer is not None:
                ctx.add_work(len(code))
            html = highlight.code_block_html(code, self.lang)
            if not ctx.final:  # closed by a complete line: final, whatever follows
                self.closed_html = html
                ctx.settle(token.map[1] - 1)
            return 1, [html]
        done = content[: content.rfind("\n") + 1]  # complete lines: settled
        self.code.append(done)
        if self.streamer is not None:
            work = self.streamer.work
            body = self.streamer.render_parts(done, content[len(done) :])
            ctx.add_work(self.streamer.work - work)
        else:
            self.escaped.append(escapeHtml(done))
            body = [*self.escaped, escapeHtml(content[len(done) :])]
        if done:
            ctx.settle(1 + done.count("\n"))
        opening = highlight.code_block_open(self.lang, self.streamer is not None)
        return 1, [opening, *body, highlight.code_block_close()]


def _open_block(
    tail: _Tail,
    cut_line: int,
    tokens: list[Token],
    renderer: Any,
    options: Any,
    env: dict[str, Any],
) -> _OpenBlock | None:
    """An open block for the first block of ``tokens`` (pending now starts at ``cut_line``),
    if it is a list, table, blockquote or fence longer than ``OPEN_BLOCK_MIN_CHARS``."""
    first = next((t for t in tokens if t.level == 0 and t.nesting >= 0 and t.map), None)
    if first is None or first.map is None or first.type not in _OPEN_BLOCK_TYPES:
        return None
    lines, line = tail.lines, first.map[0]
    if any(not _blank(lines[i]) for i in range(cut_line, line)):
        return None  # reference definitions before it: keep it simple
    prelude_lines = 2 if first.type == "table_open" else 1
    if line + prelude_lines > tail.complete:
        return None  # the lines a prelude copies must be complete
    offsets = list(itertools.accumulate((len(text) + 1 for text in lines), initial=0))
    size = offsets[min(first.map[1], len(lines))] - offsets[line]
    if size < OPEN_BLOCK_MIN_CHARS:
        return None
    start = offsets[line] - offsets[cut_line]  # in the pending source after the cut
    if first.type in _OpenList.opening:
        close = "</ol>\n" if first.type == "ordered_list_open" else "</ul>\n"
        return _OpenList(start, lines[line], renderer.renderToken([first], 0, options, env), close)
    if first.type == "table_open":
        i = tokens.index(first)
        head_end = next(j for j in range(i, len(tokens)) if tokens[j].type == "thead_close") + 1
        head = renderer.render(tokens[i:head_end], options, env)
        columns = sum(1 for t in tokens[i:head_end] if t.type == "th_open")
        return _OpenTable(offsets[line + 2] - offsets[cut_line], head, columns, lines[line + 1])
    if first.type == "blockquote_open":
        return _OpenQuote(start)
    return _OpenFence(offsets[line + 1] - offsets[cut_line], lines[line], first.info)


# -- the cut rules ---------------------------------------------------------------------------


def _blank(line: str) -> bool:
    return not line.strip(" \t")


def _close_index(tokens: Sequence[Token], i: int) -> int:
    """Index of the token closing ``tokens[i]`` (``i`` itself for a self-contained token)."""
    if tokens[i].nesting <= 0:
        return i
    level = tokens[i].level
    for j in range(i + 1, len(tokens)):
        if tokens[j].level == level and tokens[j].nesting == -1:
            return j
    raise _Fallback


def _blocks(tokens: Sequence[Token], start: int, end: int, level: int) -> list[tuple[int, Token]]:
    """The blocks at ``level`` in ``tokens[start:end]``: (index, opening token with a map)."""
    return [
        (i, tokens[i])
        for i in range(start, end)
        if tokens[i].level == level and tokens[i].nesting >= 0 and tokens[i].map
    ]


def _line_offset(src: str, line: int) -> int:
    """Character offset where ``line`` (0-based) starts in ``src``."""
    pos = 0
    for _ in range(line):
        pos = src.index("\n", pos) + 1
    return pos


def _find_cut(
    lines: list[str],
    blocks: list[tuple[int, Token]],
    end: int,
    blank: Callable[[str], bool],
) -> tuple[int, int]:
    """The largest safe cut among ``blocks``: (line, token index); (0, 0) if none yet.

    ``lines`` are the parsed source's lines (the last one incomplete), ``end`` the token index
    after the last block, ``blank`` tells a blank line (inside a blockquote: ``>`` alone).
    """
    complete = len(lines) - 1  # lines 0 .. complete-1 end with "\n"
    # Candidates, last first: the end of the complete lines, then each block start but the first.
    candidates: list[tuple[int, int, Token | None]] = []
    candidates.append((complete, end, blocks[-1][1] if blocks else None))
    for j in range(len(blocks) - 1, 0, -1):
        candidates.append((blocks[j][1].map[0], blocks[j][0], blocks[j - 1][1]))  # type: ignore[index]
    for cut, tok_index, prev in candidates:
        if cut <= 0:
            continue
        prev_end = prev.map[1] if prev is not None and prev.map else 0
        if prev_end > cut:
            continue  # the candidate lies inside the previous block
        blank_before = blank(lines[cut - 1])
        gap_has_text = any(not blank(lines[i]) for i in range(prev_end, cut))
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
