"""Markdown to HTML for answers: the markdown-it parser nbstream configures (CommonMark, GFM
tables and strikethrough, math, highlighted code, raw HTML escaped), :func:`render` and
:func:`code_blocks`. The streaming renderer is :mod:`nbstream.render.incremental`."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.common.utils import unescapeAll
from markdown_it.token import Token

from nbstream.render import highlight
from nbstream.render.mathml import math_plugin

_WORK = "nbstream_work"  # env key: characters handed to the highlighter while rendering


# -- the parser ------------------------------------------------------------------------------


def fence_language(info: str) -> str:
    """The language of a fence: the first word of its (unescaped) info string."""
    words = unescapeAll(info).split(maxsplit=1) if info else []
    return words[0] if words else ""


def _render_fence(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    lang = fence_language(token.info)
    if isinstance(env, dict) and _WORK in env and highlight.lexer_for(lang) is not None:
        env[_WORK][0] += len(token.content)
    return highlight.code_block_html(token.content, lang)


def make_parser() -> MarkdownIt:
    """A sanitizing parser: CommonMark, raw HTML off, GFM tables and strikethrough on, math
    typeset to MathML, fenced code highlighted."""
    md = MarkdownIt("commonmark", {"html": False, "typographer": False, "linkify": False})
    md.enable(["table", "strikethrough"])
    math_plugin(md)
    md.add_render_rule("fence", _render_fence)
    return md


_MD = make_parser()


def _render_uncached(text: str) -> str:
    return str(_MD.render(text))


@functools.lru_cache(maxsize=8)
def render(text: str) -> str:
    """Sanitized HTML of the whole ``text`` (memoised: the end of a stream renders it twice)."""
    return _render_uncached(text)


def code_blocks(text: str) -> list[tuple[str, str]]:
    """``(language, code)`` of every fenced code block of a Markdown text, in order.

    The language is the fence's first info word ("" when none); the code is the block's
    content as markdown-it reads it (an unterminated fence runs to the end of the text).
    Fences nested in lists and blockquotes count too; indented code blocks do not.
    """
    return [(fence_language(t.info), t.content) for t in _MD.parse(text) if t.type == "fence"]


PYTHON = frozenset({"python", "py", "python3", "ipython", "ipython3", "pycon"})


def python_code(text: str) -> str:
    """The answer's Python code blocks joined by a blank line (unlabelled blocks when no
    block is labelled Python); ``""`` when there is none."""
    blocks = code_blocks(str(text))
    chosen = [code for lang, code in blocks if lang.lower() in PYTHON]
    if not chosen:
        chosen = [code for lang, code in blocks if not lang]
    return "\n\n".join(code.rstrip("\n") for code in chosen)
