"""``interpolate``: fills ``{name}``-style fields by lookup only and never runs code."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbstream.prompts.interpolate import interpolate


class Recorder:
    """Callable, with any attribute or item: every call is logged, so the test sees it."""

    def __init__(self, log: list[str], name: str) -> None:
        self._log = log
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Recorder:
        self._log.append(self._name)
        return Recorder(self._log, self._name + "()")

    def __getattr__(self, attr: str) -> Recorder:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return Recorder(self._log, f"{self._name}.{attr}")

    def __getitem__(self, key: Any) -> Recorder:
        return Recorder(self._log, f"{self._name}[{key!r}]")

    def __str__(self) -> str:
        return f"<{self._name}>"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


class Config:
    def __init__(self) -> None:
        self.host = "db.local"
        self.port = 5432
        self._secret = "hunter2"

    @property
    def broken(self) -> str:
        raise RuntimeError("property failed")


# -- issue 8, defect 1 ---------------------------------------------------------------------


def test_pasted_code_is_sent_verbatim_and_runs_nothing():
    data = [1, 2, 3]
    prompt = "Explain this JS: if (ok) {data.pop()} else {data.clear()}"
    assert interpolate(prompt, {"data": data}) == prompt
    assert data == [1, 2, 3]


def test_calls_of_any_kind_are_never_made():
    log: list[str] = []
    ns = {"obj": Recorder(log, "obj"), "data": {"k": 1}}
    for text in [
        "{obj()}",
        "{obj.run()}",
        "{obj.run(1, 2)}",
        "{obj['k'].go()}",
        "{data.popitem()}",
        "{data.clear()}",
        "{obj.a.b.c()}",
        "{(obj)}",
        "{[obj() for _ in 'ab']}",
        "{obj if obj() else obj}",
        "{obj.__class__}",
        "{obj.__call__}",
    ]:
        assert interpolate(text, ns) == text, text
    assert log == []
    assert ns["data"] == {"k": 1}
    # Looking an attribute up is allowed, calling it is not: the value is the object itself.
    assert interpolate("{obj.run}", ns) == "<obj.run>"
    assert log == []


def test_rust_go_and_c_snippets_survive():
    ns = {"v": [1, 2], "x": 1, "s": "str", "self": object()}
    for text in [
        'fn main() { let v = vec![1, 2]; println!("{}", v.len()); }',
        'fmt.Printf("%v", x) // Go: func f() {x.String()}',
        "for (int i = 0; i < n; i++) {x++;}",
        "impl Foo for Bar {fn f(&self) {self.g()}}",
        "match s {Some(x) => x, None => 0}",
        "{v.len()}",
        "{s.upper()}",
    ]:
        assert interpolate(text, ns) == text, text


# -- what is filled in ---------------------------------------------------------------------


def test_names_attributes_and_literal_keys_are_filled_in():
    cfg = {"db": Config(), "list": [10, 20, 30], "a b": "spaced"}
    ns = {"topic": "entropy", "cfg": cfg, "rows": [[1, 2], [3, 4]], "conf": Config()}
    assert interpolate("Explain {topic}.", ns) == "Explain entropy."
    assert interpolate("{conf.host}:{conf.port}", ns) == "db.local:5432"
    assert interpolate('{cfg["db"].host}', ns) == "db.local"
    assert interpolate("{cfg['db'].port}", ns) == "5432"
    assert interpolate('{cfg["list"][0]} {cfg["list"][-1]}', ns) == "10 30"
    assert interpolate("{rows[1][0]}", ns) == "3"
    assert interpolate('{cfg["a b"]}', ns) == "spaced"
    assert interpolate("{topic.upper}", ns).startswith("<built-in method upper")


def test_attribute_chains():
    class Node:
        def __init__(self, name: str, child: Node | None = None) -> None:
            self.name = name
            self.child = child

    ns = {"a": Node("a", Node("b", Node("c")))}
    assert interpolate("{a.child.child.name}", ns) == "c"
    assert interpolate("{a.child.child.child.name}", ns) == "{a.child.child.child.name}"


def test_format_specs_and_conversions():
    ns = {"x": 3.14159, "n": 1234567, "s": "hi", "d": {"k": [1]}}
    assert interpolate("{x:.2f}", ns) == "3.14"
    assert interpolate("{n:,}", ns) == "1,234,567"
    assert interpolate("{s!r}", ns) == "'hi'"
    assert interpolate("{s!s}", ns) == "hi"
    assert interpolate("{s!r:>6}", ns) == "  'hi'"
    assert interpolate("{x:>8.3f}|", ns) == "   3.142|"
    assert interpolate('{d["k"]!r}', ns) == "[1]"
    assert interpolate("{d}", ns) == '{"k": [1]}'  # no conversion: to_prompt gives JSON


def test_scalars_render_as_str():
    ns = {"n": 3, "f": 0.5, "b": True, "none": None}
    assert interpolate("{n} {f} {b} {none}", ns) == "3 0.5 True None"


def test_lists_render_as_json():
    ns = {"cols": ["a", "b"], "t": (1000, 5)}
    assert interpolate("Columns: {cols}, shape {t}", ns) == 'Columns: ["a", "b"], shape (1000, 5)'


# -- what is left as written ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        'Return JSON like {"name": "x"}',
        "function f() { return y; }",
        "a set {1, 2}",
        "unknown {nope}",
        "{x.missing_attr}",
        "empty {}",
        "a {\nnewline}",
        "{x\n}",
        "{len(rows)}",
        "{x + 1}",
        "{ x }",
        "{x }",
        "{ x}",
        "{x: >5}",
        "{rows[i]}",
        "{rows[0:1]}",
        "{rows[1.5]}",
        "{rows[True]}",
        "{rows[0]()}",
        '{cfg["k"}',
        "{x!a}",
        "{x!z}",
        "{x:zz}",
        "{x:{w}}z",
        "{rows[5]}",
        "{rows[-9]}",
        "{cfg[0]}",
        '{cfg["missing"]}',
        "{x[0]}",
        "{x.real.imag.nope}",
        "{conf._secret}",
        "{conf.__dict__}",
        "{conf.__class__}",
        "{conf.broken}",
        "{_private_missing}",
        "{1x}",
        "{x.1}",
        "{x..real}",
        "{x.}",
        "{.x}",
        "{'x'}",
        "{-x}",
    ],
)
def test_anything_else_is_left_exactly_as_written(text):
    ns = {"x": 1, "rows": [[1, 2], [3, 4]], "cfg": {"k": 1}, "conf": Config()}
    assert interpolate(text, ns) == text


def test_braces_in_a_sentence_with_a_real_field():
    ns = {"topic": "entropy"}
    text = 'Explain {topic} as JSON {"topic": "{topic}"} and code {f(topic)}'
    assert interpolate(text, ns) == (
        'Explain entropy as JSON {"topic": "entropy"} and code {f(topic)}'
    )


# -- escapes --------------------------------------------------------------------------------


def test_double_braces_escape():
    assert interpolate("{{topic}} and {topic}", {"topic": "t"}) == "{topic} and t"
    assert interpolate("{{{topic}}}", {"topic": "t"}) == "{t}"
    assert interpolate('{{"a": {{"b": 1}}}}', {}) == '{"a": {"b": 1}}'


def test_closing_pairs_without_an_escape_survive():
    ns = {"x": 1}
    for text in [
        '{"a": {"b": 1}}',
        "if (a) { if (b) { go(); }}",
        "fn f() {}}",
        "}}",
        "{x} }}",
    ]:
        expected = text.replace("{x}", "1")
        assert interpolate(text, ns) == expected, text


# -- budget -----------------------------------------------------------------------------------


def test_budget_is_passed_to_the_renderer():
    long = "word " * 2000
    ns = {"s": long, "n": 5}
    out = interpolate("Summarise: {s}", ns, budget=500)
    assert len(out) <= len("Summarise: ") + 500
    assert "truncated" in out
    assert out.startswith("Summarise: word word")
    assert len(interpolate("{s}", ns)) <= 4000  # the default budget
    assert len(interpolate("{s!r}", ns, budget=300)) <= 300
    assert interpolate("{n}", ns, budget=0) == "5"


# -- properties -------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.characters(exclude_characters="{")))
def test_text_without_an_opening_brace_is_unchanged(text):
    ns = {"x": 1, "text": "t", "a": [1]}
    assert interpolate(text, ns) == text


_NAMES = ["obj", "fn", "data", "missing", "_"]
_TAILS = [
    "",
    "()",
    "(1)",
    ".pop()",
    ".clear()",
    ".run",
    ".run()",
    ".a.b()",
    "[0]",
    "[0]()",
    "['k']",
    '["k"].go()',
    "!r",
    "!s:>9",
    ":>5",
    ".__call__()",
    " + 1",
    ".x!r",
]


@st.composite
def templates(draw: st.DrawFn) -> str:
    parts = draw(
        st.lists(
            st.one_of(
                st.text(alphabet="ab {}()[].'\"!:\n", max_size=8),
                st.builds(
                    lambda n, t: "{" + n + t + "}", st.sampled_from(_NAMES), st.sampled_from(_TAILS)
                ),
                st.builds(lambda n, t: n + t, st.sampled_from(_NAMES), st.sampled_from(_TAILS)),
            ),
            max_size=12,
        )
    )
    return "".join(parts)


@settings(max_examples=400, deadline=None)
@given(template=templates())
def test_no_callable_in_the_namespace_is_ever_called(template):
    log: list[str] = []
    data = [1, 2, 3]

    def fn(*args: Any) -> str:
        log.append("fn")
        return "RESULT-OF-A-CALL"

    ns = {"obj": Recorder(log, "obj"), "fn": fn, "data": data, "_": Recorder(log, "_")}
    out = interpolate(template, ns)
    assert log == []
    assert data == [1, 2, 3]
    assert "RESULT-OF-A-CALL" not in out
