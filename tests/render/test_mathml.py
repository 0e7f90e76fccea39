"""LaTeX to sanitized MathML (nbstream.render.mathml): structure, error fallback, security."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbstream.render.mathml import MATHML_ATTRIBUTES, MATHML_TAGS, latex_to_mathml

MATHML_NS = "http://www.w3.org/1998/Math/MathML"


class MathAudit(HTMLParser):
    """Collects tags, attributes and text; flags anything that is not allow-listed MathML."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self.tags: list[str] = []
        self.annotation: list[str] = []
        self._in_annotation = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self._in_annotation = tag == "annotation"
        allowed = MATHML_ATTRIBUTES | {"xmlns"} if tag == "math" else MATHML_ATTRIBUTES
        if tag == "annotation":
            allowed = {"encoding"}
        if tag not in MATHML_TAGS and not (tag == "code" and len(self.tags) == 1):
            self.problems.append(f"tag <{tag}>")
        for name, value in attrs:
            value = value or ""
            if tag == "code" and (name, value) == ("class", "nbstream-math-error"):
                continue
            if name not in allowed:
                self.problems.append(f"attribute {name}= on <{tag}>")
            elif not re.fullmatch(r"[\w#.%+\- /:]{0,64}", value):  # xmlns has "/" and ":"
                self.problems.append(f"{name}={value!r} on <{tag}>")
            if name == "xmlns" and value != MATHML_NS:
                self.problems.append(f"xmlns={value!r}")
            if ":" in value and name != "xmlns":
                self.problems.append(f"{name}={value!r}: a scheme?")

    def handle_endtag(self, tag: str) -> None:
        self._in_annotation = False

    def handle_data(self, data: str) -> None:
        if self._in_annotation:
            self.annotation.append(data)


def audit(markup: str) -> MathAudit:
    parser = MathAudit()
    parser.feed(markup)
    parser.close()
    return parser


def test_the_audit_catches_unsafe_markup() -> None:
    bad = '<math><mrow href="javascript:x" style="x" onclick="y"><script></script></mrow></math>'
    problems = audit(bad).problems
    assert any("href" in p for p in problems)
    assert any("style" in p for p in problems)
    assert any("onclick" in p for p in problems)
    assert any("<script>" in p for p in problems)
    assert audit('<math><mstyle mathcolor="red&quot; onmouseover=&quot;x"></mstyle></math>')


def test_the_allow_lists_hold_no_dangerous_names() -> None:
    assert not MATHML_TAGS & {"script", "style", "a", "iframe", "maction", "annotation-xml"}
    assert not {a for a in MATHML_ATTRIBUTES if a.startswith("on")}
    assert not MATHML_ATTRIBUTES & {"href", "src", "style", "class", "id", "xlink:href"}


@pytest.mark.parametrize("display", [False, True])
def test_structure(display: bool) -> None:
    out = latex_to_mathml(r"\frac{a}{b} < c", display)
    mode = "block" if display else "inline"
    assert out.startswith(f'<math xmlns="{MATHML_NS}" display="{mode}"><semantics><mrow>')
    assert out.endswith(
        '<annotation encoding="application/x-tex">\\frac{a}{b} &lt; c</annotation>'
        "</semantics></math>"
    )
    assert "<mfrac>" in out and "<mo>&lt;</mo>" in out
    result = audit(out)
    assert result.problems == []
    assert "".join(result.annotation) == r"\frac{a}{b} < c"


PAYLOADS = [
    r"\text{<script>alert(1)</script>}",
    r"\mbox{<img src=x onerror=alert(1)>}",
    r"\href{javascript:alert(1)}{x}",
    r"\href{https://example.org}{x}",
    r"\style{background:url(javascript:alert(1))}{x}",
    r"\class{evil}{x}",
    r"\unicode{x3C}script\unicode{x3E}alert(1)\unicode{x3C}/script\unicode{x3E}",
    r"\unicode{0}\unicode{xD800}\unicode{x110000}",
    r'\color{red" onmouseover="alert(1)}{x}',
    r"\color{url(javascript:alert(1))}{x}",
    r'\textcolor{blue" style="x}{y}',
    r'\colorbox{red" onload="x}{y}',
    r"\mathcolor{expression(alert(1))}{x}",
    r'\rule{1em" onclick="x}{2em}',
    r'\hspace{1em" onclick="x}',
    r"\operatorname{<b>bold</b>}",
    r"\begin{array}{c|c} <a> & </a> \end{array}",
    "&lt;script&gt; &#60;script&#62; &amp;",
    r"\text{&#x3C;script&#x3E;}",
    "]]></annotation></semantics></math><script>alert(1)</script>",
]


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("display", [False, True])
def test_payloads_produce_only_mathml(payload: str, display: bool) -> None:
    out = latex_to_mathml(payload, display)
    result = audit(out)
    assert result.problems == []
    tags = " ".join(re.findall(r"<[^>]*>", out)).lower()  # markup only: text is escaped
    for needle in ("<script", "<img", "<a ", "<b>", "href", " style=", " class=", " on", "url("):
        assert needle not in tags, needle
    if out.startswith("<math"):
        assert "".join(result.annotation) == payload  # the source survives, escaped


def test_attributes_pass_a_value_filter() -> None:
    assert 'mathcolor="red"' in latex_to_mathml(r"\color{red}{x}")
    assert 'mathcolor="#f00"' in latex_to_mathml(r"\color{#f00}{x}")
    assert "mathcolor" not in latex_to_mathml(r'\color{red" onmouseover="x}{y}')
    assert 'width="3em"' in latex_to_mathml(r"\hspace{3em}")


@pytest.mark.parametrize(
    "latex", ["{", r"\frac{", r"\left( x", r"\begin{pmatrix} 1", "{" * 2000 + "x" + "}" * 2000]
)
def test_failures_show_the_source_as_code(latex: str) -> None:
    out = latex_to_mathml(latex, True, source=f"$${latex}$$")
    assert out == f'<code class="nbstream-math-error">$${html.escape(latex, quote=False)}$$</code>'


def test_memoised() -> None:
    assert latex_to_mathml("x^2") is latex_to_mathml("x^2")


LATEX_PIECES = [
    r"\frac", r"\text", r"\href", r"\color", r"\style", r"\class", r"\unicode", r"\mathbf",
    r"\left(", r"\right)", r"\begin{array}", r"\end{array}", r"\\", "{", "}", "&", "<", ">",
    '"', "javascript:", "x3C", "red", "x", "^", "_",
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    latex=st.text(alphabet=st.sampled_from(list("\\{}[]^_&<>\"'=:;#()abcxyz019 ")), max_size=40)
    | st.lists(st.sampled_from(LATEX_PIECES), max_size=12).map("".join),
    display=st.booleans(),
)
def test_any_input_gives_allow_listed_markup(latex: str, display: bool) -> None:
    out = latex_to_mathml(latex, display)
    assert out.startswith(("<math ", '<code class="nbstream-math-error">'))
    assert audit(out).problems == []


def test_a_pathological_nesting_shows_the_source_whatever_the_recursion_limit() -> None:
    """Whether 2,000 nested braces failed depended on sys.getrecursionlimit() (a library that
    raised it — mypy's API does — made them typeset as 2,000 nested <mrow>)."""
    import sys

    deep = "{" * 2000 + "x" + "}" * 2000
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)
    try:
        latex_to_mathml.cache_clear()
        out = latex_to_mathml(deep, True)
    finally:
        sys.setrecursionlimit(limit)
    assert out.startswith('<code class="nbstream-math-error">') and "<mrow>" not in out
    assert "<math" in latex_to_mathml("{" * 50 + "x" + "}" * 50)  # deep, but a formula
