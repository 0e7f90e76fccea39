from nbstream.prompt import interpolate


def test_variables_and_expressions_are_filled_in():
    ns = {"topic": "entropy", "cols": ["a", "b"]}
    assert interpolate("Explain {topic}.", ns) == "Explain entropy."
    assert interpolate("Columns: {cols}, n={len(cols)}", ns) == "Columns: ['a', 'b'], n=2"


def test_braces_that_are_not_variables_survive():
    ns = {"x": 1}
    for text in [
        'Return JSON like {"name": "x"}',
        "function f() { return y; }",
        "a set {1, 2}",
        "unknown {nope}",
        "{x.missing_attr}",
        "empty {}",
        "a {\nnewline}",
    ]:
        assert interpolate(text, ns) == text, text


def test_double_braces_escape():
    assert interpolate("{{topic}} and {topic}", {"topic": "t"}) == "{topic} and t"
