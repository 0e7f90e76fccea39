"""Sanitized one-shot and incremental Markdown rendering (nbstream.markdown)."""

from __future__ import annotations

import collections
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from nbstream.markdown import IncrementalMarkdown, Update, make_parser, render

CORPUS_DIR = Path(__file__).parent / "corpus"
CORPUS = {p.name: p.read_bytes().decode("utf-8") for p in sorted(CORPUS_DIR.glob("*.md"))}
SMALL = [name for name, text in CORPUS.items() if len(text) < 2200]


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
            assert view.html == render(text[:c]), f"intermediate html differs at {c}"
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

ALLOWED_TAGS = {
    "p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "pre", "code", "em", "strong",
    "a", "img", "blockquote", "hr", "br", "table", "thead", "tbody", "tr", "th", "td", "del",
    "s",
}  # fmt: skip
ALLOWED_ATTRS = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "code": {"class"},
    "ol": {"start"},
    "th": {"style"},
    "td": {"style"},
}
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
    assert 'class="language-&quot;&gt;&lt;img"' in render('```"><img src=x onerror=1>\n```')
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
    assert all(render(t).endswith("</code></pre>\n") for t in unterminated)


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
    alphabet=st.sampled_from(list("#-*`|>0123456789. \n\n\nabcXYZ=[]():\t_~")), max_size=160
)
LINE_FRAGMENTS = [
    "", "", "text", "a | b", "| a | b |", "|---|:-:|", "--|--", "---", "===", "- item", "* item",
    "+ item", "1. one", "2. two", "1) x", "  - nested", "   more", "    code", "\tcode", "> quote",
    ">", "> - q", "```", "```python", "~~~", "# head", "## h | x", "-", "* * *", "10. ten",
    "  ```", "[x]: http://a.example", "[x]", "[y]: /u 'title", "'", "`code` *em* **b**", "  ",
    "x|y", ":-:|--", "- # h", "- ```", "   > q", "1.", "***b***", " \t",
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
            assert md.html.count('<pre><code class="language-python">') == 1, text[:c]
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
