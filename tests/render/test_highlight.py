"""Syntax highlighting of fenced code (nbstream.render.highlight) and its stylesheet."""

from __future__ import annotations

import html
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pygments.lexers import PythonLexer

from nbstream.render import highlight
from nbstream.render.highlight import StreamingHighlighter, code_block_html, lexer_for
from nbstream.render.markdown import code_blocks, render

SAMPLES = {
    "python": (
        '\n\nimport os\n\n\ndef f(x, *, y=1):\n    """Doc\n\n    string."""\n'
        "    s = f'{x!r} and {y}'  # comment\n    return [i ** 2 for i in range(x)]\n"
        "\nclass A(Base):\n    @property\n    def v(self):\n        return 0x1F\n\t\n"
    ),
    "sql": "SELECT a, COUNT(*)\nFROM t -- comment\n/* multi\nline */ WHERE b = 'x';\n",
    "javascript": "const f = (a) => `tpl ${a}\nline`;\n// c\nlet re = /a+/g;\n",
    "bash": 'for f in *.txt; do\n  echo "$f" | wc -l\ndone\ncat <<EOF\nhere\nEOF\n',
    "json": '{\n  "a": [1, 2.5, true, null],\n  "b": "c"\n}\n',
    "css": "a:hover {\n  color: red;\n}\n",
}


def code_text(spans: str) -> str:
    """The text a browser shows (and a copy button reads): tags removed, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", spans))


@pytest.mark.parametrize("lang", sorted(SAMPLES))
def test_highlight_uses_classes_and_keeps_the_text(lang: str) -> None:
    code = SAMPLES[lang]
    spans = highlight.highlight(code, lang)
    assert spans is not None and "<span class=" in spans
    assert "style=" not in spans
    assert code_text(spans) == code
    assert code_text(highlight.highlight(code.rstrip("\n"), lang) or "") == code.rstrip("\n")


def test_unknown_or_missing_language_is_not_guessed() -> None:
    assert lexer_for("no-such-language") is None and lexer_for("") is None
    assert highlight.highlight("x = 1\n", "no-such-language") is None
    assert code_block_html("x < 1\n", "no-such-language") == (
        '<div class="nbstream-code" data-lang="no-such-language">'
        '<div class="nbstream-code-lang">no-such-language</div>'
        '<pre><code class="language-no-such-language">x &lt; 1\n</code></pre></div>\n'
    )
    assert (
        code_block_html("x\n", "")
        == '<div class="nbstream-code"><pre><code>x\n</code></pre></div>\n'
    )
    assert highlight.highlight("", "python") == ""


@settings(max_examples=200, deadline=None)
@given(
    code=st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="`"), max_size=200
    ),
    lang=st.sampled_from(["python", "js", "sql", "bash", "json", "html", "text", "", "nope"]),
)
def test_code_text_round_trips_through_markdown(code: str, lang: str) -> None:
    """Whatever the code, <code> shows exactly what markdown-it read (copy button)."""
    text = f"```{lang}\n{code}\n```\n"
    [(got_lang, content)] = code_blocks(text)
    assert got_lang == lang
    rendered = render(text)
    body = re.search(r"<code[^>]*>(.*)</code></pre></div>\n\Z", rendered, re.S)
    assert body is not None
    assert code_text(body.group(1)) == content


def test_split_tokens_format_like_the_whole() -> None:
    code = SAMPLES["python"] * 2
    tokens = list(PythonLexer(stripnl=False).get_tokens(code))
    whole = highlight._format(tokens)
    starts = [0] + [m.end() for m in re.finditer("\n", code)]
    for cut in starts:
        head, tail = highlight._split(tokens, cut)
        assert highlight._format(head) + highlight._format(tail) == whole


@pytest.mark.parametrize("lang", sorted(SAMPLES))
def test_streaming_highlighter_keeps_the_text_and_bounded_work(lang: str) -> None:
    code = SAMPLES[lang] * 40
    lexer = lexer_for(lang)
    assert lexer is not None
    streamer = StreamingHighlighter(lexer)
    done = 0
    for end in range(7, len(code) + 7, 7):  # 7 characters per update
        end = min(end, len(code))
        complete = code[done : code.rfind("\n", 0, end) + 1] if "\n" in code[done:end] else ""
        done += len(complete)
        out = streamer.render(complete, code[done:end])
        assert code_text(out) == code[:end]
    assert streamer.work <= 40 * len(code)  # not quadratic: ~len(code)² / 7 would be ~2000×


def test_streaming_highlighter_matches_one_shot_on_simple_lines() -> None:
    """Lines that each end in the lexer's initial state highlight exactly as in one go."""
    code = "".join(f"x_{i} = f({i}, 'a')  # c\n" for i in range(50))
    lexer = lexer_for("python")
    assert lexer is not None
    streamer = StreamingHighlighter(lexer)
    out = ""
    for line in code.splitlines(keepends=True):
        streamer.render("", line[:5])  # the line arrives in two updates
        out = streamer.render(line, "")
    assert out == highlight.highlight(code, "python")


def test_stylesheet_is_scoped_and_uses_jupyterlab_variables() -> None:
    css = highlight.stylesheet()
    rules = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    selectors = [s.strip() for block in re.findall(r"([^{}]+)\{", rules) for s in block.split(",")]
    assert selectors and all(s.startswith(".nbstream-code") for s in selectors), selectors
    for name in ("keyword", "string", "comment", "number", "def", "builtin", "operator"):
        assert f"var(--jp-mirror-editor-{name}-color, #" in css, name
    for cls in ("k", "s2", "c1", "mi", "nf", "nb", "o", "sd", "kn"):
        assert re.search(rf"\.nbstream-code \.{cls}\b", css), cls
