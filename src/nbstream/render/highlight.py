"""Syntax highlighting of fenced code blocks with Pygments, as CSS classes.

HTML of a fenced code block (``code_block_html``)::

    <div class="nbstream-code" data-lang="python">
      <div class="nbstream-code-lang">python</div>
      <pre class="highlight"><code class="language-python">…Pygments spans…</code></pre>
    </div>

(on one line, then ``\\n``). The spans carry Pygments' short token classes (``k`` keyword,
``s2`` string, ``c1`` comment …), no inline styles; ``static/highlight.css`` maps them to
JupyterLab's ``--jp-mirror-editor-*`` colours, scoped under ``.nbstream-code``, so the code
follows the light/dark theme (and ``pre.highlight`` also picks up nbconvert's Pygments CSS).

- The text of ``<code>`` (tags removed, entities decoded) is exactly the code, so a copy
  button can read it from the DOM.
- A language Pygments does not know (``mermaid``, a typo) keeps the label and ``data-lang``
  but its code is plain escaped text, in ``<pre>`` without ``class="highlight"``; there is no
  guessing. No language at all: ``<div class="nbstream-code"><pre><code>…</code></pre></div>``.
- The language is the first word of the info string, HTML-escaped wherever it appears.

Streaming. :class:`StreamingHighlighter` highlights an open fence as its lines arrive, at a
cost proportional to the new text: Pygments lexers carry state across lines (a docstring, a
multi-line comment) that cannot be resumed from outside, so it restarts a fresh lexer after a
line that ended in plain whitespace (most likely the lexer's initial state) and keeps the HTML
before that point. That view can differ from a one-shot highlighting in a few spans (inside a
multi-line string, say); when the fence closes, the caller highlights the whole block once
with :func:`code_block_html`, which is exact.
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Iterable
from pathlib import Path

from markdown_it.common.utils import escapeHtml
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import get_lexer_by_name
from pygments.token import Text, _TokenType, is_token_subtype
from pygments.util import ClassNotFound

__all__ = [
    "StreamingHighlighter",
    "code_block_close",
    "code_block_html",
    "code_block_open",
    "highlight",
    "lexer_for",
    "stylesheet",
]

STYLESHEET = Path(__file__).parent.parent / "static" / "highlight.css"  # nbstream/static
CLOSE = "</code></pre></div>\n"
_FORMATTER = HtmlFormatter(nowrap=True)

Tokens = list[tuple[_TokenType, str]]


def stylesheet() -> str:
    """The CSS that colours highlighted code (``static/highlight.css``)."""
    return STYLESHEET.read_text(encoding="utf-8")


@functools.lru_cache(maxsize=256)
def lexer_for(lang: str) -> Lexer | None:
    """The Pygments lexer for a fence's language name, or None (unknown or empty name)."""
    if not lang:
        return None
    try:
        # stripnl=False: keep leading/trailing blank lines, the text must round-trip.
        return get_lexer_by_name(lang, stripnl=False, ensurenl=True, tabsize=0)
    except (ClassNotFound, ValueError, TypeError):
        return None


_QUOTED_CLASS = re.compile(r'<span class="([\w-]+)">')


def _format(tokens: Iterable[tuple[_TokenType, str]]) -> str:
    """The spans, with their one-word classes unquoted (``<span class=k>``, valid HTML):
    a span's quotes were 4 of its ~20 bytes once JSON-escaped, live and in the saved
    answer (``bench/results.md``)."""
    out = io.StringIO()
    _FORMATTER.format(tokens, out)
    return _QUOTED_CLASS.sub(r"<span class=\1>", out.getvalue())


def _lex(lexer: Lexer, code: str) -> Tokens | None:
    """Pygments tokens of ``code`` (ending in a newline), or None if they do not round-trip."""
    tokens = list(lexer.get_tokens(code))
    if "".join(value for _, value in tokens) != code:
        return None  # a lexer that drops or rewrites characters: show the code as it is
    return tokens


def highlight(code: str, lang: str) -> str | None:
    """Pygments span HTML of ``code``, or None when ``lang`` has no lexer (or it fails)."""
    lexer = lexer_for(lang)
    if lexer is None:
        return None
    if not code:
        return ""
    newline = code.endswith("\n")
    try:
        tokens = _lex(lexer, code if newline else code + "\n")
    except Exception:  # a lexer bug must not break rendering
        return None
    if tokens is None:
        return None
    spans = _format(tokens)
    # The formatter ends every line with "\n"; drop the one Pygments added.
    return spans if newline else spans[:-1]


def code_block_open(lang: str, highlighted: bool) -> str:
    """The HTML before the code of a fenced block (see the module docstring)."""
    if not lang:
        return '<div class="nbstream-code"><pre><code>'
    name = escapeHtml(lang)
    pre = '<pre class="highlight">' if highlighted else "<pre>"
    return (
        f'<div class="nbstream-code" data-lang="{name}">'
        f'<div class="nbstream-code-lang">{name}</div>'
        f'{pre}<code class="language-{name}">'
    )


def code_block_close() -> str:
    """The HTML after the code of a fenced block."""
    return CLOSE


def code_block_html(code: str, lang: str) -> str:
    """HTML of a whole fenced code block: highlighted if Pygments knows ``lang``."""
    spans = highlight(code, lang) if lang else None
    if spans is None:
        return code_block_open(lang, False) + escapeHtml(code) + CLOSE
    return code_block_open(lang, True) + spans + CLOSE


class StreamingHighlighter:
    """Highlights a code block that grows by appending (an open fence), in linear time.

    :meth:`render` takes the lines completed since the last call and the current unfinished
    line, and returns the span HTML of all the code so far. Complete lines are lexed again
    only until a restart point (see the module docstring), so each character is lexed a
    bounded number of times; ``work`` counts the characters handed to the lexer.
    """

    MAX_WINDOW = 4000
    """Past this many characters without a restart point, restart at the last line anyway."""

    def __init__(self, lexer: Lexer) -> None:
        self._lexer = lexer
        self._done: list[str] = []  # HTML of the lines before the window
        self._window = ""  # complete lines since the last restart point
        self.work = 0

    def render(self, complete: str, partial: str) -> str:
        """Span HTML of all the code: ``complete`` new lines (ending in "\\n") + ``partial``."""
        return "".join(self.render_parts(complete, partial))

    def render_parts(self, complete: str, partial: str) -> list[str]:
        """:meth:`render` as a list of pieces to concatenate."""
        self._window += complete
        text = self._window + partial
        if not text:
            return [*self._done]
        newline = text.endswith("\n")
        source = text if newline else text + "\n"
        self.work += len(source)
        try:
            tokens = _lex(self._lexer, source)
        except Exception:
            tokens = None
        if tokens is None:
            tokens = [(Text, source)]
        cut = _restart_point(tokens, len(self._window), len(self._window) > self.MAX_WINDOW)
        if cut:
            head, tokens = _split(tokens, cut)
            self._done.append(_format(head))
            self._window = self._window[cut:]
        spans = _format(tokens)
        return [*self._done, spans if newline else spans[:-1]]


def _restart_point(tokens: Tokens, limit: int, force: bool) -> int:
    """The last line start ≤ ``limit`` after which a fresh lexer may take over (0: none).

    Preferred: right after a newline that ends a whitespace token (the lexer is most likely
    in its initial state there). With ``force``, any line start will do.
    """
    best = any_line = 0
    pos = 0
    for ttype, value in tokens:
        end = pos + len(value)
        if end > limit:
            newline = value.rfind("\n", 0, limit - pos)
            if force and newline >= 0:
                any_line = pos + newline + 1
            break
        if value.endswith("\n"):
            if is_token_subtype(ttype, Text):
                best = end
            any_line = end
        elif force and "\n" in value:
            any_line = pos + value.rindex("\n") + 1
        pos = end
    return best or (any_line if force else 0)


def _split(tokens: Tokens, cut: int) -> tuple[Tokens, Tokens]:
    """Split the token list at character offset ``cut`` (splitting a token if needed).

    Pygments' HTML formatter closes its spans at every line end, so formatting the two
    halves of a split made at a line start gives the same HTML as formatting the whole.
    """
    pos = 0
    for i, (ttype, value) in enumerate(tokens):
        end = pos + len(value)
        if end == cut:
            return tokens[: i + 1], tokens[i + 1 :]
        if end > cut:
            k = cut - pos
            return [*tokens[:i], (ttype, value[:k])], [(ttype, value[k:]), *tokens[i + 1 :]]
        pos = end
    return tokens, []
