"""Sanitized one-shot and incremental Markdown rendering (nbstream.render.markdown)."""

from __future__ import annotations

import collections
import contextlib
import html as htmllib
import importlib.util
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from nbstream.render import open_blocks
from nbstream.render.incremental import IncrementalMarkdown, Update
from nbstream.render.markdown import code_blocks, make_parser, render

CORPUS_DIR = Path(__file__).parent.parent / "corpus"
CORPUS = {p.name: p.read_bytes().decode("utf-8") for p in sorted(CORPUS_DIR.glob("*.md"))}
SMALL = [name for name, text in CORPUS.items() if len(text) < 2200]
SPAN = re.compile(r"</?span[^>]*>")

# The benchmark's answer shapes (one long list, table, fence, blockquote …).
_spec = importlib.util.spec_from_file_location(
    "bench_render", Path(__file__).parents[2] / "bench" / "bench_render.py"
)
assert _spec is not None and _spec.loader is not None
bench_render = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_render)
SHAPES = bench_render.SHAPES


# -- helpers ---------------------------------------------------------------------------------


@dataclass
class Consumer:
    """Applies updates the way the browser view does, and records what it saw."""

    frozen: str = ""
    tail: str = ""
    resets: int = 0
    history: list[tuple[str, str, bool]] = field(default_factory=list)  # (frozen, tail, reset)

    def apply(self, update: Update) -> None:
        if update.reset:
            self.resets += 1
            self.frozen = update.frozen
        else:
            self.frozen += update.frozen
        self.tail = update.tail
        self.history.append((self.frozen, self.tail, update.reset))

    @property
    def html(self) -> str:
        return self.frozen + self.tail


def cut_points(n: int, step: int) -> list[int]:
    return [*range(step, n, step), n]


@contextlib.contextmanager
def open_blocks_from(chars: int) -> Iterator[None]:
    """Parse a long first tail block by parts from ``chars`` characters on (0: always)."""
    saved = open_blocks.OPEN_BLOCK_MIN_CHARS
    open_blocks.OPEN_BLOCK_MIN_CHARS = chars
    try:
        yield
    finally:
        open_blocks.OPEN_BLOCK_MIN_CHARS = saved


def streaming_a_long_fence(md: IncrementalMarkdown) -> bool:
    """An open code fence is highlighted line by line (the only inexact intermediate view)."""
    block = md._open
    return (
        isinstance(block, open_blocks._OpenFence)
        and block.streamer is not None
        and (block.closed_html is None)
    )


def same_but_highlighting(got: str, want: str) -> bool:
    """Equal, or equal once the syntax-highlighting spans are removed.

    While a long code fence streams, its highlighting is done line by line and may differ
    from a one-shot highlighting in a few spans (see nbstream.render.highlight); text and structure
    must not differ. Only code blocks contain ``<span>``.
    """
    return got == want or SPAN.sub("", got) == SPAN.sub("", want)


def stream(text: str, cuts: list[int], check_prefix_every: int = 0) -> Consumer:
    """Feed ``text[:c]`` for each cut (then the full text), finish; check the bookkeeping.

    With ``check_prefix_every=k``, every k-th intermediate ``html`` must equal the one-shot
    rendering of the text so far (true whenever no reference is used before it is defined).
    """
    md = IncrementalMarkdown()
    view = Consumer()
    for i, c in enumerate([*sorted(cuts), len(text)]):
        view.apply(md.update(text[:c]))
        assert md.frozen_html == view.frozen
        assert md.html == view.html
        if check_prefix_every and i % check_prefix_every == 0:
            want = render(text[:c])
            if streaming_a_long_fence(md):
                assert same_but_highlighting(view.html, want), f"intermediate html differs at {c}"
            else:
                assert view.html == want, f"intermediate html differs at {c}"
    view.apply(md.finish())
    assert view.tail == ""
    assert view.frozen == md.frozen_html == md.html
    return view


def frozen_only_grows(view: Consumer) -> None:
    previous = ""
    for frozen, tail, reset in view.history:
        if not reset:
            assert frozen.startswith(previous)
            assert (frozen + tail).startswith(previous)
        previous = frozen


def labels_used_at_most_once(text: str) -> bool:
    """No bracketed label occurs twice, so no reference can be used before it is defined."""
    labels = re.findall(r"\[([^\[\]]*)\]", text)
    counts = collections.Counter(" ".join(label.lower().split()) for label in labels)
    return all(n <= 1 for n in counts.values())


# -- the sanitizer ---------------------------------------------------------------------------

MATH_TAGS = {
    "math", "semantics", "annotation", "mrow", "mi", "mn", "mo", "ms", "mtext", "mspace",
    "msub", "msup", "msubsup", "mfrac", "msqrt", "mroot", "mstyle", "merror", "mpadded",
    "mphantom", "menclose", "mtable", "mtr", "mtd", "mlabeledtr", "munder", "mover",
    "munderover", "mmultiscripts", "mprescripts", "none",
}  # fmt: skip
MATH_ATTRS = {
    "display", "displaystyle", "scriptlevel", "mathvariant", "mathcolor", "mathbackground",
    "mathsize", "stretchy", "fence", "separator", "form", "lspace", "rspace", "minsize",
    "maxsize", "largeop", "movablelimits", "symmetric", "accent", "accentunder",
    "linethickness", "width", "height", "depth", "voffset", "notation", "columnalign",
    "rowalign", "columnspacing", "rowspacing", "columnlines", "rowlines", "frame",
    "framespacing", "equalrows", "equalcolumns", "columnspan", "rowspan", "linebreak",
}  # fmt: skip
ALLOWED_TAGS = {
    "p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "pre", "code", "em", "strong",
    "a", "img", "blockquote", "hr", "br", "table", "thead", "tbody", "tr", "th", "td", "del",
    "s", "div", "span", *MATH_TAGS,
}  # fmt: skip
ALLOWED_ATTRS = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "code": {"class"},
    "pre": {"class"},
    "div": {"class", "data-lang"},
    "span": {"class"},
    "ol": {"start"},
    "th": {"style"},
    "td": {"style"},
    "math": MATH_ATTRS | {"xmlns"},
    "annotation": {"encoding"},
    **{tag: MATH_ATTRS for tag in MATH_TAGS - {"math", "annotation"}},
}
# class="…" values: code blocks, their label, Pygments token classes, math errors.
CLASS_VALUE = re.compile(
    r"nbstream-code|nbstream-code-lang|highlight|nbstream-math-error|nbstream-math-pending|language-\S*|[a-z]{1,3}\d?"
)
SAFE_MATH_VALUE = re.compile(r"[\w#.%+\- ]{0,64}")
BAD_SCHEME = re.compile(r"^\s*(javascript|vbscript|file|data)\s*:", re.IGNORECASE)


class HtmlAudit(HTMLParser):
    """Collects every element or attribute outside the allow-list."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ALLOWED_TAGS:
            self.problems.append(f"tag <{tag}>")
        for name, value in attrs:
            value = value or ""
            if name.startswith("on"):
                self.problems.append(f"event handler {name}= on <{tag}>")
            elif name not in ALLOWED_ATTRS.get(tag, set()):
                self.problems.append(f"attribute {name}= on <{tag}>")
            if name in ("href", "src") and BAD_SCHEME.match(re.sub(r"[\x00-\x20]", "", value)):
                self.problems.append(f"{name}={value!r}")
            if tag == "img" and name == "src" and not re.match(r"https?://", value):
                self.problems.append(f"img src={value!r}")
            if name == "style" and not re.fullmatch(r"text-align:(left|right|center)", value):
                self.problems.append(f"style={value!r}")
            if name == "class" and not CLASS_VALUE.fullmatch(value):
                self.problems.append(f"class={value!r} on <{tag}>")
            if tag in MATH_TAGS and name in MATH_ATTRS and not SAFE_MATH_VALUE.fullmatch(value):
                self.problems.append(f"{name}={value!r} on <{tag}>")
            if name == "xmlns" and value != "http://www.w3.org/1998/Math/MathML":
                self.problems.append(f"xmlns={value!r}")


def audit(html: str) -> list[str]:
    parser = HtmlAudit()
    parser.feed(html)
    parser.close()
    return parser.problems


PAYLOADS = [
    "<img src=x onerror=alert(1)>",
    "Look: <script>alert(1)</script> done",
    "<script>\nalert(document.cookie)\n</script>\n",
    '<iframe src="https://evil.example"></iframe>',
    "[x](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))",
    "[x](&#106;avascript:alert(1))",
    "[x](java&#x09;script:alert(1))",
    "<javascript:alert(1)>",
    "[x](vbscript:msgbox(1))",
    "[x](file:///etc/passwd)",
    '<a href="javascript:alert(1)">click</a>',
    "![x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    '<b onmouseover="alert(1)">hover</b>',
    '[x](http://a.example" onmouseover="alert(1))',
    '[x](http://a.example "t\\" onmouseover=\\"alert(1)")',
    '![a" onerror="alert(1)](http://img.example/a.png)',
    '```"><img src=x onerror=1>\ncode\n```',
    "~~~ <script>alert(1)</script>\ncode\n~~~",
    "| a | <img src=x onerror=alert(1)> |\n|---|---|\n| <script>x</script> | [y](javascript:z) |",
    "> <iframe srcdoc='<script>alert(1)</script>'>\n> - <svg onload=alert(1)>",
    '<div style="background:url(javascript:alert(1))">x</div>',
    "`<script>alert(1)</script>` and <style>*{}</style>",
    "[ok](https://example.org) ![ok](https://example.org/i.png)",
    "$\\text{<script>alert(1)</script>}$ and $$\\href{javascript:alert(1)}{x}$$",
    '$\\color{red" onmouseover="alert(1)}{x}$ \\(\\style{color:red}{y}\\) \\[\\class{c}{z}\\]',
    "$$\n\\unicode{x3C}script\\unicode{x3E} \\mathcolor{url(javascript:x)}{a}\n$$",
    '```python"><script>alert(1)</script>\nx = "<img src=x onerror=alert(1)>"\n```',
    "```html\n<script>alert(1)</script>\n```",
]
ALL_PAYLOADS = "\n\n".join(PAYLOADS)


def assert_inert(html: str) -> None:
    lowered = html.lower()
    assert "<script" not in lowered
    assert "<iframe" not in lowered
    assert "<img src=x onerror" not in lowered
    assert 'href="javascript:' not in lowered
    assert audit(html) == []


def test_the_audit_catches_unsafe_html() -> None:
    unsafe = MarkdownIt().render(ALL_PAYLOADS)  # default preset: raw HTML passes through
    problems = audit(unsafe)
    assert any("onerror" in p for p in problems)
    assert any("<script>" in p for p in problems)
    assert any("<iframe>" in p for p in problems)
    assert any("onmouseover" in p for p in problems)
    assert audit('<a href="javascript:x">a</a><img src="data:image/png,x">') != []


def test_make_parser_settings() -> None:
    md = make_parser()
    assert md.options["html"] is False
    assert not md.options["typographer"]
    assert not md.options["linkify"]
    assert "<table>" in md.render("a | b\n--|--\n1 | 2\n")
    assert "<s>gone</s>" in md.render("~~gone~~")
    assert md.render('"quotes" -- (c)') == "<p>&quot;quotes&quot; -- (c)</p>\n"
    assert "<a " not in md.render("see https://example.org")


@pytest.mark.parametrize("payload", PAYLOADS)
def test_render_is_inert(payload: str) -> None:
    assert_inert(render(payload))
    assert_inert(render(f"Intro paragraph.\n\n- item\n\n  {payload}\n"))


def test_dangerous_markup_is_shown_as_text() -> None:
    html = render("<script>alert(1)</script>")
    assert html == "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>\n"
    assert render("[x](javascript:alert(1))") == "<p>[x](javascript:alert(1))</p>\n"
    assert 'data-lang="&quot;&gt;&lt;img"' in render('```"><img src=x onerror=1>\n```')
    assert render("[ok](https://example.org)") == '<p><a href="https://example.org">ok</a></p>\n'


@pytest.mark.parametrize("step", [1, 3])
def test_incremental_is_inert(step: int) -> None:
    md = IncrementalMarkdown()
    for c in cut_points(len(ALL_PAYLOADS), step):
        update = md.update(ALL_PAYLOADS[:c])
        assert_inert(update.frozen)
        assert_inert(update.tail)
        assert_inert(md.html)
    final = md.finish()
    assert not final.reset
    assert md.frozen_html == render(ALL_PAYLOADS)
    assert_inert(md.frozen_html)


# -- the corpus ------------------------------------------------------------------------------


def test_corpus_covers_what_it_should() -> None:
    assert len(CORPUS) >= 8
    assert all(1000 <= len(t.encode()) <= 20_000 for t in CORPUS.values())
    everything = "\n".join(CORPUS.values())
    for needle in ["```python", "```sql", "|---", "$x^2$", "\\(", "> ", "`` `", "](http"]:
        assert needle in everything, needle
    assert any("\r\n" in t for t in CORPUS.values()), "one file must use CRLF"
    assert any(not t.endswith("\n") for t in CORPUS.values()), "one file must end mid-line"
    assert any("\n---\n" in t or "\n===" in t for t in CORPUS.values()), "setext heading"
    unterminated = [t for t in CORPUS.values() if t.count("```") % 2]
    assert unterminated, "one file must end inside an unterminated fence"
    assert all(render(t).endswith("</code></pre></div>\n") for t in unterminated)


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_corpus_in_four_char_tokens(name: str) -> None:
    text = CORPUS[name]
    view = stream(text, cut_points(len(text), 4), check_prefix_every=17)
    assert view.resets == 0
    assert view.frozen == render(text)
    frozen_only_grows(view)


@pytest.mark.parametrize("name", SMALL)
def test_corpus_char_by_char(name: str) -> None:
    text = CORPUS[name]
    view = stream(text, cut_points(len(text), 1))
    assert view.resets == 0
    assert view.frozen == render(text)
    frozen_only_grows(view)


@pytest.mark.parametrize("name", ["01_pandas_groupby.md", "06_blockquote_review.md"])
def test_corpus_with_crlf_split_anywhere(name: str) -> None:
    text = CORPUS[name].replace("\r\n", "\n").replace("\n", "\r\n")
    view = stream(text, cut_points(len(text), 5), check_prefix_every=11)
    assert view.resets == 0
    assert view.frozen == render(text) == render(CORPUS[name])


def test_corpus_freezes_most_of_each_answer_while_streaming() -> None:
    """The incremental path really freezes: blocks go out once, the tail stays small."""
    for name, text in CORPUS.items():
        md = IncrementalMarkdown()
        frozen_pieces = 0
        for c in cut_points(len(text), 40):
            update = md.update(text[:c])
            frozen_pieces += bool(update.frozen)
            assert len(md.pending_source) < 2600, name
        assert frozen_pieces >= 3, name
        assert len(md.frozen_html) > len(md.html) / 3, name


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_corpus_random_splits(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(CORPUS)), label="file")
    text = CORPUS[name]
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=120), label="cuts")
    view = stream(text, cuts)
    assert view.resets == 0
    assert view.frozen == render(text)
    frozen_only_grows(view)


# -- generated markdown-ish text -------------------------------------------------------------

MARKDOWNISH = st.text(
    alphabet=st.sampled_from(list("#-*`|>0123456789. \n\n\nabcXYZ=[]():\t_~$\\")), max_size=160
)
LINE_FRAGMENTS = [
    "", "", "text", "a | b", "| a | b |", "|---|:-:|", "--|--", "---", "===", "- item", "* item",
    "+ item", "1. one", "2. two", "1) x", "  - nested", "   more", "    code", "\tcode", "> quote",
    ">", "> - q", "```", "```python", "~~~", "# head", "## h | x", "-", "* * *", "10. ten",
    "  ```", "[x]: http://a.example", "[x]", "[y]: /u 'title", "'", "`code` *em* **b**", "  ",
    "x|y", ":-:|--", "- # h", "- ```", "   > q", "1.", "***b***", " \t",
    "$$", "$x^2$", "\\[", "\\]", "$$ a $$ b", "a $b*c$ d*", "\\(x_1\\)", "costs $5 and $10",
    "$$x^{2}$$", "> $$", "- $$", "  $$", "def f(x):", '    """doc', '"""', "x = 1  # c",
    "| 1 | 2 | 3 |", "> > q", "> ```", ">     code", "   - deep", "- [ ] task", "\\frac{a}{b} $",
]  # fmt: skip
MARKDOWN_LINES = st.builds(
    lambda lines, sep, end: sep.join(lines) + (sep if end else ""),
    st.lists(st.sampled_from(LINE_FRAGMENTS), max_size=14),
    st.sampled_from(["\n", "\n", "\r\n"]),
    st.booleans(),
)


@settings(max_examples=400, deadline=None)
@given(text=st.one_of(MARKDOWNISH, MARKDOWN_LINES), data=st.data())
def test_generated_markdown_random_splits(text: str, data: st.DataObject) -> None:
    if data.draw(st.booleans(), label="char by char"):
        cuts = list(range(len(text)))
    else:
        cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=30), label="cuts")
    strict = labels_used_at_most_once(text)
    view = stream(text, cuts, check_prefix_every=1 if strict else 0)
    assert view.frozen == render(text)
    if strict:
        assert view.resets == 0
    frozen_only_grows(view)


LONG_MARKDOWN_LINES = st.builds(
    lambda lines, sep, end: sep.join(lines) + (sep if end else ""),
    st.lists(st.sampled_from(LINE_FRAGMENTS), max_size=40),
    st.sampled_from(["\n", "\n", "\r\n"]),
    st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(MARKDOWNISH, LONG_MARKDOWN_LINES), data=st.data())
def test_generated_markdown_with_open_blocks_random_splits(text: str, data: st.DataObject) -> None:
    """Every list, table, blockquote and fence is parsed by parts (the threshold is 0)."""
    if data.draw(st.booleans(), label="char by char"):
        cuts = list(range(len(text)))
    else:
        cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=40), label="cuts")
    strict = labels_used_at_most_once(text)
    with open_blocks_from(0):
        view = stream(text, cuts, check_prefix_every=1 if strict else 0)
    assert view.frozen == render(text)
    if strict:
        assert view.resets == 0
    frozen_only_grows(view)


@settings(max_examples=60, deadline=None)
@given(
    pieces=st.lists(st.one_of(st.sampled_from(PAYLOADS), MARKDOWN_LINES), max_size=6),
    data=st.data(),
)
def test_generated_markdown_with_payloads_stays_inert(
    pieces: list[str], data: st.DataObject
) -> None:
    text = "\n".join(pieces)
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=25), label="cuts")
    view = stream(text, cuts)
    for frozen, tail, _ in view.history:
        assert_inert(frozen + tail)


# -- specific streaming behaviour ------------------------------------------------------------


@pytest.mark.parametrize("before", ["Here is the code:\n\n", "Here is the code:\n", ""])
def test_streaming_fence_never_flickers(before: str) -> None:
    text = before + "```python\ndef f(x):\n\n    return x ** 2  # ``not closing``\n```\n\nDone.\n"
    opened = text.index("```python") + len("```python")
    md = IncrementalMarkdown()
    for c in range(1, len(text) + 1):
        md.update(text[:c])
        if c >= opened:
            assert md.html.count('<pre class="highlight"><code class="language-python">') == 1
    md.finish()
    assert md.html == render(text)


def test_paragraph_freezes_after_a_blank_line() -> None:
    md = IncrementalMarkdown()
    assert md.update("Hello *world*") == Update("", "<p>Hello <em>world</em></p>\n")
    assert md.update("Hello *world*\n") == Update("", "<p>Hello <em>world</em></p>\n")
    assert md.update("Hello *world*\n\n") == Update("<p>Hello <em>world</em></p>\n", "")
    assert md.update("Hello *world*\n\nNext") == Update("", "<p>Next</p>\n")
    assert md.pending_source == "Next"
    assert md.finish() == Update("<p>Next</p>\n", "")


def test_list_is_not_frozen_across_a_blank_line() -> None:
    md = IncrementalMarkdown()
    assert md.update("- a\n- b\n\n").frozen == ""
    update = md.update("- a\n- b\n\n- c\n")  # a third item makes the whole list loose
    assert update.frozen == ""
    assert "<li>\n<p>a</p>\n</li>" in update.tail
    update = md.update("- a\n- b\n\n- c\n\nAfter the list.\n")
    assert update.frozen.startswith("<ul>") and update.frozen.endswith("</ul>\n")
    assert not md.finish().reset
    assert md.html == render("- a\n- b\n\n- c\n\nAfter the list.\n")


def test_setext_heading_and_table_change_the_line_before() -> None:
    for text in ["Intro.\n\nTitle\n-----\n\nBody.\n", "Intro.\n\na | b\n--|--\n1 | 2\n\nBody.\n"]:
        view = stream(text, cut_points(len(text), 1), check_prefix_every=1)
        assert view.resets == 0
        assert view.frozen == render(text)
        assert "<h2>Title</h2>" in view.frozen or "<th>a</th>" in view.frozen


@pytest.mark.parametrize(
    "text",
    [
        "Intro line\n| col |\n--- and more\n\nEnd.\n",  # `--` + `-` makes a table, ` and` undoes it
        "Intro line\n| col |\n---\n\nEnd.\n",
        "- item\n  # head | x\n--|--\n\nEnd.\n",
    ],
)
def test_a_table_delimiter_row_reaches_two_lines_back(text: str) -> None:
    view = stream(text, cut_points(len(text), 1), check_prefix_every=1)
    assert view.resets == 0


@pytest.mark.parametrize(
    "text",
    [
        "[docs]:\n  https://docs.example/\n  'Title'\n\nSee [docs].\n",
        "---\n[docs]:\nhttps://docs.example/\n\nSee [docs].\n",
        "# Links\n[docs]: https://docs.example/ 'a title\nthat goes on'\n\nSee [docs].\n",
    ],
)
def test_reference_definitions_spanning_lines(text: str) -> None:
    view = stream(text, cut_points(len(text), 1), check_prefix_every=1)
    assert view.resets == 0
    assert '<a href="https://docs.example/"' in view.frozen


def test_indented_code_continues_across_blank_lines() -> None:
    text = "Code:\n\n    one\n\n\n    two\n\nafter\n"
    view = stream(text, cut_points(len(text), 1), check_prefix_every=1)
    assert "<pre><code>one\n\n\ntwo\n</code></pre>" in view.frozen
    assert view.resets == 0


def test_reference_defined_before_use_needs_no_reset() -> None:
    text = "[docs]: https://docs.example/\n\nSee [the docs][docs].\n\nAnd [docs] again.\n"
    view = stream(text, cut_points(len(text), 2), check_prefix_every=1)
    assert view.resets == 0
    assert view.frozen.count('<a href="https://docs.example/">') == 2


def test_reference_defined_late_resets_at_finish() -> None:
    text = "See [the docs][docs].\n\nMore text.\n\n[docs]: https://docs.example/\n"
    md = IncrementalMarkdown()
    view = Consumer()
    for c in cut_points(len(text), 3):
        view.apply(md.update(text[:c]))
    assert view.resets == 0
    assert "[the docs][docs]" in view.frozen  # frozen before the definition arrived
    final = md.finish()
    assert final.reset and final.tail == ""
    view.apply(final)
    assert view.frozen == render(text)
    assert '<a href="https://docs.example/">the docs</a>' in view.frozen


def test_text_that_does_not_extend_the_previous_one_resets() -> None:
    md = IncrementalMarkdown()
    md.update("First answer.\n\nSecond paragraph")
    update = md.update("Something else entirely.\n\n")
    assert update.reset
    assert update.frozen == "<p>Something else entirely.</p>\n"
    assert md.html == render("Something else entirely.\n\n")
    assert not md.update("Something else entirely.\n\nMore").reset


def test_repeated_text_and_repeated_finish() -> None:
    md = IncrementalMarkdown()
    first = md.update("# Title\n\nbody")
    assert md.update("# Title\n\nbody") == Update("", first.tail)
    assert md.update("").reset  # shrinking text restarts
    assert md.update("abc") == Update("", "<p>abc</p>\n")
    assert md.finish() == Update("<p>abc</p>\n", "")
    assert md.finish() == Update("", "")
    assert md.update("abc") == Update("", "")
    restarted = md.update("abc def")
    assert restarted.reset and md.html == "<p>abc def</p>\n"


def test_crlf_split_between_cr_and_lf() -> None:
    text = "a\r\n\r\nb\r\n\r\n- c\r\n"
    for cuts in ([2, 3, 4], [1, 2, 5, 6, 8, 9]):
        view = stream(text, cuts, check_prefix_every=1)
        assert view.resets == 0
        assert view.frozen == render(text) == "<p>a</p>\n<p>b</p>\n<ul>\n<li>c</li>\n</ul>\n"


# -- cost ------------------------------------------------------------------------------------


def long_answer(size: int) -> str:
    """Corpus answers (fences closed) back to back, cut at a paragraph break near ``size``."""
    docs = []
    for text in CORPUS.values():
        text = text.replace("\r\n", "\n").rstrip("\n") + "\n"
        if text.count("```") % 2:
            text += "```\n"
        docs.append(text)
    base = "\n".join(docs)
    text = base * (size // len(base) + 2)
    return text[: text.index("\n\n", size) + 2]


def work(text: str, every: int = 80) -> tuple[int, int]:
    md = IncrementalMarkdown()
    longest_tail = 0
    for c in cut_points(len(text), every):
        md.update(text[:c])
        longest_tail = max(longest_tail, len(md.pending_source))
    assert not md.finish().reset
    assert md.frozen_html == render(text)
    return md.chars_processed, longest_tail


def test_total_work_is_linear_in_the_answer_length() -> None:
    small, large = long_answer(42_000), long_answer(100_000)
    work_small, tail_small = work(small)
    work_large, tail_large = work(large)
    assert work_large / work_small <= 2.5  # sizes: 100 KB / 42 KB = 2.37; quadratic: ~5.6
    assert work_large / len(large) <= 1.1 * work_small / len(small)
    assert work_large <= 12 * len(large)  # a re-render per update would be ~600x
    assert max(tail_small, tail_large) < 2600  # the largest block of the corpus


def test_corpus_with_every_block_parsed_by_parts() -> None:
    """The corpus again, with the open-block path taken for every list, table, quote, fence."""
    with open_blocks_from(0):
        for name, text in CORPUS.items():
            view = stream(text, cut_points(len(text), 6), check_prefix_every=10)
            assert view.resets == 0, name
            assert view.frozen == render(text), name


# -- one long open block -----------------------------------------------------------------------


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_long_block_shapes_stream_like_a_one_shot_render(shape: str) -> None:
    text = SHAPES[shape](5000)
    with open_blocks_from(300):
        md = IncrementalMarkdown()
        view = Consumer()
        parts_seen = 0
        for c in bench_render.update_points(text):
            view.apply(md.update(text[:c]))
            parts_seen += md._open is not None
            if streaming_a_long_fence(md):
                assert same_but_highlighting(view.html, render(text[:c])), c
            else:
                assert view.html == render(text[:c]), c
        view.apply(md.finish())
    if shape != "paragraphs":  # paragraphs freeze one by one: no long open block
        assert parts_seen > 10, "the long block was never parsed by parts"
    assert view.resets == 0
    assert view.frozen == render(text)


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_render_work_is_linear_for_every_block_shape(shape: str) -> None:
    """chars_processed (deterministic) for 100 KB is ≤ 2.6× that for 40 KB, for each shape.

    Before the open-block path, one long list or table was re-parsed whole on every update:
    the ratio was ~6 (quadratic). The CPU times are in bench/bench_render.py.
    """
    work = {}
    for size in (40_000, 100_000):
        text = SHAPES[shape](size)
        md = IncrementalMarkdown()
        for c in bench_render.update_points(text):
            md.update(text[:c])
        assert not md.finish().reset
        assert md.frozen_html == render(text)
        work[size] = md.chars_processed
    assert work[100_000] / work[40_000] <= 2.6, work
    assert work[100_000] <= 8 * 100_000, work  # a bounded number of passes per character


def stream_checked(text: str, step: int = 1) -> Consumer:
    """Stream with every block parsed by parts; the HTML must equal a one-shot render at
    every step (exactly: no highlighted fence in these texts)."""
    with open_blocks_from(0):
        md = IncrementalMarkdown()
        view = Consumer()
        for c in cut_points(len(text), step):
            view.apply(md.update(text[:c]))
            assert view.html == render(text[:c]), repr(text[:c])
        view.apply(md.finish())
    assert view.resets == 0 and view.frozen == render(text)
    return view


def test_open_list_turns_loose_late() -> None:
    items = "".join(f"- item {i} with *emphasis*\n" for i in range(12))
    text = items + "\n- the blank line above makes every item loose\n\nAfter.\n"
    view = stream_checked(text)
    assert "<li>\n<p>item 0 with <em>emphasis</em></p>\n</li>" in view.frozen
    tight = stream_checked(items + "\nAfter.\n")
    assert "<li>item 0 with <em>emphasis</em></li>" in tight.frozen


def test_open_list_items_with_lazy_lines_nested_lists_and_numbers() -> None:
    text = (
        "3. first step\ncontinued lazily\n4. second\n   - nested a\n   - nested b\n\n"
        "     code in nested b\n5. third\n   > a quote\n   lazy quote line\n"
        "6) a new list: other delimiter\n7) and more\n\nEnd.\n"
    )
    view = stream_checked(text)
    assert '<ol start="3">' in view.frozen and '<ol start="6">' in view.frozen


def test_open_table_keeps_alignment_and_column_count() -> None:
    rows = "".join(f"| a{i} | `b{i}` |\n" if i % 3 else f"| only {i} |\n" for i in range(10))
    text = f"| left | right | center |\n|:--|--:|:-:|\n{rows}| x | y | z | extra |\n\nEnd.\n"
    view = stream_checked(text)
    assert '<td style="text-align:right"><code>b1</code></td>' in view.frozen
    assert '<td style="text-align:center"></td>' in view.frozen  # auto-completed cell
    assert "extra" not in view.frozen  # more cells than the header: dropped


def test_open_table_ends_at_a_line_that_starts_another_block() -> None:
    for end in ["# Heading\n", "> quote\n", "```\ncode\n```\n", "- item\n", "$$\nx\n$$\n"]:
        stream_checked("| a | b |\n|---|---|\n| 1 | 2 |\n| 3 | 4 |\n" + end + "\nDone.\n")


def test_open_blockquote_settles_its_inner_blocks() -> None:
    text = (
        "> First paragraph\n> of the quote.\n>\n> - a list\n> - in it\n>\n> ```python\n"
        "> x = 1\n> ```\n> Lazy paragraph\ncontinued without marker\n>\n> # Heading\n"
        "> last words\n\nAfter the quote.\n"
    )
    view = stream_checked(text)
    assert view.frozen.count("<blockquote>") == 1


def test_open_fence_is_highlighted_exactly_once_closed() -> None:
    code = 'def f(x):\n    """A docstring\n\n    over lines."""\n    return x  # done\n'
    text = f"Code:\n\n```python\n{code * 5}```\n\nAfter.\n"
    closed = text.index("```\n\nAfter") + 4
    with open_blocks_from(0):
        md = IncrementalMarkdown()
        for c in range(1, len(text) + 1):
            md.update(text[:c])
            want = render(text[:c])
            assert same_but_highlighting(md.html, want), c
            if c >= closed:  # the closing line is complete: highlighted in one go
                assert md.html == want and not streaming_a_long_fence(md)
        md.finish()
    assert md.html == render(text)


@pytest.mark.parametrize("opening", ["```", "```mermaid", "~~~ unknown-language"])
def test_open_fence_without_a_lexer_is_exact_while_streaming(opening: str) -> None:
    stream_checked(f"Diagram:\n\n{opening}\n" + "A --> B & <C>\n\n" * 20 + "~~~\n```\n\nEnd.\n")


# -- math and code in the Markdown pass ------------------------------------------------------------


def math_sources(html: str) -> list[str]:
    return [htmllib.unescape(m) for m in re.findall(r'x-tex">(.*?)</annotation>', html)]


def test_math_is_kept_out_of_the_markdown_pass() -> None:
    html = render("$a*b$ and $c*d$")
    assert "<em>" not in html and math_sources(html) == ["a*b", "c*d"]
    html = render(r"$\mathbf{x}_{i}$ and $\mathbf{y}_{j}$")
    assert "<em>" not in html and math_sources(html) == [r"\mathbf{x}_{i}", r"\mathbf{y}_{j}"]
    source = r"a\,b \\ c \{d\} 5\% \_"
    assert math_sources(render(f"${source}$")) == [source]
    assert math_sources(render(f"\\({source}\\)")) == [source]
    assert math_sources(render(f"$$\n{source}\n$$")) == [source]


@pytest.mark.parametrize(
    ("text", "inline", "block"),
    [
        ("Area $x^2$ here", 1, 0),
        (r"Inline \(x^2\) and display \[x^2\] in a paragraph", 1, 1),
        ("Display $$x^2$$ inside a paragraph", 0, 1),
        ("$$x^2$$", 0, 1),
        ("$$\nx^2\n$$", 0, 1),
        ("\\[\nx^2\n\\]", 0, 1),
        ("The rule:\n$$\nx_{t+1} = x_t\n$$\nends here.", 0, 1),
        ("- item $a$\n- $$b$$", 1, 1),
        ("| $a$ | b |\n|---|---|\n| $c$ | d |", 2, 0),
    ],
)
def test_math_delimiters(text: str, inline: int, block: int) -> None:
    html = render(text)
    assert (
        html.count('<math xmlns="http://www.w3.org/1998/Math/MathML" display="inline">') == inline
    )
    assert html.count('<math xmlns="http://www.w3.org/1998/Math/MathML" display="block">') == block
    assert_inert(html)


@pytest.mark.parametrize(
    "text",
    [
        "It costs $5 and $10.",
        "Between $5-$10 per month",
        "From $5 to $10, or $ 20 $ with spaces",
        r"Escaped \$x\$ is not math",
        "`$x$` is code",
        "```\n$$\nx\n$$\n```",
        "$",
        "$$",
    ],
)
def test_not_math(text: str) -> None:
    html = render(text)
    assert "<math" not in html
    assert "$" in htmllib.unescape(re.sub(r"<[^>]+>", "", html))


def test_math_block_ends_at_a_blank_line_and_bad_math_shows_its_source() -> None:
    html = render("$$\nx^2\n\nAfter the stray dollars.\n")  # never closed: shown as source
    assert html == (
        '<p><code class="nbstream-math-pending">$$\nx^2</code></p>\n'
        "<p>After the stray dollars.</p>\n"
    )
    assert render(r"$\frac{$") == '<p><code class="nbstream-math-error">$\\frac{$</code></p>\n'
    assert render("$$\n{\n$$") == '<p><code class="nbstream-math-error">$$\n{\n$$</code></p>\n'


def test_math_streams_without_resets() -> None:
    text = "Let $f(x) = x^2$.\n$$\n\\int_0^1 f(x)\\,dx = \\frac{1}{3}\n$$\nso \\(a < b\\).\n"
    view = stream(text, cut_points(len(text), 1), check_prefix_every=1)
    assert view.resets == 0 and view.frozen == render(text)


def test_fenced_code_structure() -> None:
    html = render("```python\ndef f():\n    return 1  # one\n```\n")
    assert html.startswith(
        '<div class="nbstream-code" data-lang="python"><div class="nbstream-code-lang">python'
        '</div><pre class="highlight"><code class="language-python"><span class=k>def</span>'
    )
    assert "<span class=c1># one</span>" in html and "style=" not in html
    assert html.endswith("</code></pre></div>\n")
    assert render("```mermaid\nA-->B\n```") == (
        '<div class="nbstream-code" data-lang="mermaid"><div class="nbstream-code-lang">mermaid'
        '</div><pre><code class="language-mermaid">A--&gt;B\n</code></pre></div>\n'
    )
    assert render("```\nx < y\n```") == (
        '<div class="nbstream-code"><pre><code>x &lt; y\n</code></pre></div>\n'
    )
    assert render("    indented\n") == "<pre><code>indented\n</code></pre>\n"


def test_code_blocks() -> None:
    text = (
        "Intro `inline`.\n\n```python title=x\nprint(1)\n```\n\n    indented\n\n"
        "- item\n\n  ~~~sql\n  SELECT 1;\n  ~~~\n\n> ```\n> plain\n> ```\n\n```js\nunterminated"
    )
    assert code_blocks(text) == [
        ("python", "print(1)\n"),
        ("sql", "SELECT 1;\n"),
        ("", "plain\n"),
        ("js", "unterminated"),
    ]
    assert code_blocks("no code") == []


def test_a_display_formula_being_written_is_pending_not_an_error() -> None:
    """While ``$$…`` streams, every prefix shows as pending source, never as an error, and
    the formula is typeset once its closer arrives (no error/typeset flicker)."""
    formula = r"$$\int_0^1 x^2\,dx = \frac{1}{3}$$"
    md = IncrementalMarkdown()
    for end in range(3, len(formula)):
        html = md.update("Area:\n\n" + formula[:end]).tail
        assert "nbstream-math-error" not in md.html, formula[:end]
        assert "nbstream-math-pending" in html or "<math" in html, formula[:end]
    md.update("Area:\n\n" + formula)
    md.finish()
    assert "<math" in md.html and "pending" not in md.html
