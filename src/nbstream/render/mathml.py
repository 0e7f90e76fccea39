"""LaTeX math to sanitized MathML, typeset in Python (no MathJax needed in the browser).

:func:`latex_to_mathml` converts with ``latex2mathml`` and returns::

    <math xmlns="http://www.w3.org/1998/Math/MathML" display="inline|block">
      <semantics><mrow>…</mrow>
        <annotation encoding="application/x-tex">LaTeX</annotation></semantics>
    </math>

(on one line). Browsers render only the first child of ``<semantics>``; the annotation keeps
the LaTeX source, so copy/paste and screen readers still have it. Chromium, Firefox and Safari
render MathML natively, so the math shows offline, in saved outputs and in any front end.

Security. The LaTeX comes from untrusted LLM output, and ``latex2mathml`` is not a sanitizer:
``\\text{<script>…}`` comes out of its ``convert()`` as a raw ``<script>`` tag, ``\\href``
gives ``href=``, ``\\style``/``\\class`` give ``style=``/``class=``, ``\\color{…}`` copies its
argument into an attribute. So this module never uses its serializer: it takes the element
tree (``convert_to_element``) and writes the HTML itself, with

- an allow-list of MathML presentation elements (anything else becomes a plain ``<mrow>``,
  keeping its children: there is no way to emit a non-MathML tag);
- an allow-list of attribute names (no ``href``, ``style``, ``class``, ``id``, ``on*`` …) and
  a value filter (letters, digits, ``#``, ``.``, ``%``, ``+``, ``-`` and spaces: lengths,
  colour names and keywords pass; quotes, ``:`` and parentheses do not, so no ``url(…)``,
  no ``javascript:``);
- every text node and attribute value HTML-escaped (``latex2mathml`` writes symbols as
  numeric character references, which are decoded first, then escaped like any text).

If ``latex2mathml`` fails (unbalanced braces, deep nesting …) the source is shown as
``<code class="nbstream-math-error">`` text instead; nothing here raises.
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Sequence
from typing import Any
from xml.etree.ElementTree import Element

from latex2mathml.converter import convert_to_element
from markdown_it import MarkdownIt
from markdown_it.rules_block import StateBlock
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token
from mdit_py_plugins.dollarmath.index import math_inline_dollar

__all__ = [
    "MATHML_ATTRIBUTES",
    "MATHML_TAGS",
    "latex_to_mathml",
    "math_error_html",
    "math_pending_html",
    "math_plugin",
]

MATHML_NS = "http://www.w3.org/1998/Math/MathML"

# Presentation MathML elements that may appear in the output.
MATHML_TAGS = frozenset(
    {
        "math", "semantics", "annotation", "mrow", "mi", "mn", "mo", "ms", "mtext", "mspace",
        "msub", "msup", "msubsup", "mfrac", "msqrt", "mroot", "mstyle", "merror", "mpadded",
        "mphantom", "menclose", "mtable", "mtr", "mtd", "mlabeledtr", "munder", "mover",
        "munderover", "mmultiscripts", "mprescripts", "none",
    }
)  # fmt: skip
# Presentation attributes that may appear in the output (values are filtered too).
MATHML_ATTRIBUTES = frozenset(
    {
        "display", "displaystyle", "scriptlevel", "mathvariant", "mathcolor", "mathbackground",
        "mathsize", "stretchy", "fence", "separator", "form", "lspace", "rspace", "minsize",
        "maxsize", "largeop", "movablelimits", "symmetric", "accent", "accentunder",
        "linethickness", "width", "height", "depth", "voffset", "notation", "columnalign",
        "rowalign", "columnspacing", "rowspacing", "columnlines", "rowlines", "frame",
        "framespacing", "equalrows", "equalcolumns", "columnspan", "rowspan", "linebreak",
    }
)  # fmt: skip
_SAFE_VALUE = re.compile(r"[\w#.%+\- ]{0,64}")
_CHAR_REF = re.compile(r"&#(?:x([0-9a-fA-F]{1,6})|([0-9]{1,7}));")


def _decode_char_ref(match: re.Match[str]) -> str:
    code = int(match[1], 16) if match[1] else int(match[2])
    if code == 0 or 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
        return "\ufffd"
    return chr(code)


def _text(value: str | None) -> str:
    if not value:
        return ""
    return html.escape(_CHAR_REF.sub(_decode_char_ref, value), quote=False)


def _write(element: Element, out: list[str]) -> None:
    """Append ``element`` as allow-listed MathML (children depth-first, text escaped)."""
    tag = element.tag if element.tag in MATHML_TAGS and element.tag != "math" else "mrow"
    attrs = "".join(
        f' {name}="{html.escape(value)}"'
        for name, value in element.attrib.items()
        if name in MATHML_ATTRIBUTES and name != "display" and _SAFE_VALUE.fullmatch(value)
    )
    out.append(f"<{tag}{attrs}>{_text(element.text)}")
    for child in element:
        _write(child, out)
        out.append(_text(child.tail))
    out.append(f"</{tag}>")


def _text_raw(value: str) -> str:
    """Escape text that did not come from latex2mathml (no character references to decode)."""
    return html.escape(value, quote=False)


def math_error_html(source: str) -> str:
    """How math that cannot be typeset is shown: its source, as escaped code."""
    return f'<code class="nbstream-math-error">{html.escape(source, quote=False)}</code>'


MAX_NESTING = 100
"""Braces nested deeper than this are not typeset (the source is shown): no real formula
comes near it, and the converter's recursion would otherwise decide, by the interpreter's
recursion limit, whether a pathological formula becomes thousands of nested ``<mrow>``."""


def _nesting(latex: str) -> int:
    depth = deepest = 0
    for char in latex:
        if char == "{":
            depth += 1
            deepest = max(deepest, depth)
        elif char == "}":
            depth -= 1
    return deepest


@functools.lru_cache(maxsize=2048)
def latex_to_mathml(latex: str, display: bool = False, source: str | None = None) -> str:
    """Sanitized MathML for ``latex`` (``display``: a block formula, else inline).

    ``source`` is what to show if conversion fails (default: ``latex``), e.g. the formula with
    its delimiters. Memoised: while an answer streams, the same formulas render many times.
    """
    if _nesting(latex) > MAX_NESTING:
        return math_error_html(latex if source is None else source)
    try:
        root = convert_to_element(latex, display="block" if display else "inline")
        out: list[str] = []
        for child in root:  # latex2mathml puts one <mrow> in <math>
            _write(child, out)
        body = "".join(out)
    except Exception:  # any failure of the converter (RecursionError included): show source
        return math_error_html(latex if source is None else source)
    mode = "block" if display else "inline"
    annotation = f'<annotation encoding="application/x-tex">{_text_raw(latex)}</annotation>'
    return (
        f'<math xmlns="{MATHML_NS}" display="{mode}"><semantics>'
        f"{body or '<mrow></mrow>'}{annotation}</semantics></math>"
    )


# -- markdown-it rules ---------------------------------------------------------------------------
#
# Which text is math (see ``math_plugin``). The delimiters are kept out of the Markdown pass:
# the rules run before backslash escapes and emphasis, so ``$a*b$``, ``\\,`` or ``\\{`` reach
# latex2mathml untouched.

_CLOSERS = {"$": "$", "$$": "$$", "\\(": "\\)", "\\[": "\\]"}


def _math_inline_bracket(state: StateInline, silent: bool) -> bool:
    """``\\(…\\)`` (inline math) and ``\\[…\\]`` (display math) inside a paragraph."""
    src, pos = state.src, state.pos
    opener = src[pos : pos + 2]
    if opener not in ("\\(", "\\["):
        return False
    closer = _CLOSERS[opener]
    end = pos + 2
    while True:
        end = src.find(closer, end, state.posMax)
        if end < 0:
            return False
        backslashes = len(src[pos + 2 : end]) - len(src[pos + 2 : end].rstrip("\\"))
        if backslashes % 2 == 0:  # `\\)` is `\\` then `)`: not the closer
            break
        end += 1
    content = src[pos + 2 : end]
    if not content.strip():
        return False
    if not silent:
        token = state.push("math_inline" if opener == "\\(" else "math_inline_double", "math", 0)
        token.content = content
        token.markup = opener
    state.pos = end + len(closer)
    return True


def _math_block(state: StateBlock, start_line: int, end_line: int, silent: bool) -> bool:
    """Display math on its own lines: ``$$`` or ``\\[`` … ``$$`` or ``\\]``.

    Like a fence, the opening line alone decides (so it can interrupt a paragraph and a
    streaming formula never flickers between paragraph and math), but a blank line or the
    end of the container also ends it: LaTeX has no blank lines in math, and a stray ``$$``
    then swallows one paragraph, not the rest of the answer. ``$$ a $$ b`` (a closer that
    does not end the line) is not a block: it is a paragraph with inline display math.
    """
    if state.is_code_block(start_line):
        return False
    pos = state.bMarks[start_line] + state.tShift[start_line]
    first = state.src[pos : state.eMarks[start_line]]
    opener = first[:2]
    if opener not in ("$$", "\\["):
        return False
    closer = _CLOSERS[opener]
    rest = first[2:].rstrip(" \t")
    one_line = rest.endswith(closer)
    if not one_line and closer in rest:
        return False
    if silent:
        return True
    parts = [rest[: -len(closer)] if one_line else first[2:]]
    closed = one_line
    line = start_line + 1
    while not one_line and line < end_line and not state.isEmpty(line):
        if state.sCount[line] < state.blkIndent:
            break  # the container (list item, blockquote) ended
        text = state.src[state.bMarks[line] + state.tShift[line] : state.eMarks[line]]
        stripped = text.rstrip(" \t")
        line += 1
        if stripped.endswith(closer):
            parts.append(stripped[: -len(closer)])
            closed = True
            break
        parts.append(text)
    state.line = line
    token = state.push("math_block", "math", 0)
    token.block = True
    token.content = "\n".join(parts)
    token.markup = opener
    token.map = [start_line, line]
    token.meta = {"closed": closed}
    return True


def _source(token: Token) -> str:
    closer = _CLOSERS.get(token.markup, "") if token.meta.get("closed", True) else ""
    return token.markup + token.content + closer


def math_pending_html(source: str) -> str:
    """A display formula whose closer has not arrived (yet): its source, as plain code.
    While an answer streams this is the normal state of a formula being written, so it is
    not styled as an error, and the formula is typeset once its ``$$`` / ``\\]`` arrives."""
    return f'<code class="nbstream-math-pending">{html.escape(source, quote=False)}</code>'


def _render_math_inline(
    self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any
) -> str:
    token = tokens[idx]
    return latex_to_mathml(token.content.strip(), False, _source(token))


def _render_math_display_inline(
    self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any
) -> str:
    token = tokens[idx]
    return latex_to_mathml(token.content.strip(), True, _source(token))


def _render_math_block(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    if not token.meta.get("closed", True):
        return f"<p>{math_pending_html(_source(token))}</p>\n"
    out = latex_to_mathml(token.content.strip(), True, _source(token))
    return (f"<p>{out}</p>" if out.startswith("<code") else out) + "\n"


def math_plugin(md: MarkdownIt) -> None:
    """Math in Markdown, typeset to MathML (:func:`latex_to_mathml`).

    - ``$…$`` inline and ``$$…$$`` inside a paragraph (display): mdit-py-plugins' dollarmath
      inline rule, with no space just inside the dollars and no digit just outside them, so
      a price is not math: in "costs $5 and $10" the would-be closer follows a space.
      ``\\$`` is a literal dollar.
    - ``\\(…\\)`` inline and ``\\[…\\]`` display inside a paragraph.
    - ``$$`` or ``\\[`` at the start of a line: a display block (``_math_block``).

    texmath's bracket rules are not used: its ``\\[`` block looks for the closer across
    blank lines and the rest of the document, and an unclosed one turns back into
    paragraphs; amsmath's bare ``\\begin{align}`` blocks likewise search ahead for their end.
    Both break the streaming renderer's rule that a line's meaning is settled by the lines
    right after it. ``\\begin{…}`` environments work inside ``$$``.
    """
    md.inline.ruler.before(
        "escape",
        "math_inline",
        math_inline_dollar(allow_space=False, allow_digits=False, allow_double=True),
    )
    md.inline.ruler.before("escape", "math_inline_bracket", _math_inline_bracket)
    md.block.ruler.before(
        "fence",
        "math_block",
        _math_block,
        {"alt": ["paragraph", "reference", "blockquote", "list"]},
    )
    md.add_render_rule("math_inline", _render_math_inline)
    md.add_render_rule("math_inline_double", _render_math_display_inline)
    md.add_render_rule("math_block", _render_math_block)
