"""The replay cache (:mod:`nbstream.cache`): the key, each mode against the fake server through
the real SDKs, the committable file format, and the replay itself."""

from __future__ import annotations

import dataclasses
import json

import pytest

import nbstream
from fake_llm_fixture import point_sdks_at
from nbstream import cache, pricing
from nbstream.providers.base import Request
from nbstream.run import make_stream

OPENAI_KEY = "sk-test-cache-SECRET-0123456789"
ANTHROPIC_KEY = "sk-ant-test-cache-SECRET-0123456789"
PROVIDERS = ["openai", "anthropic"]
TOKENS = ["The ", "answer ", "is ", "**42**."]


@pytest.fixture(autouse=True)
def _keys(monkeypatch, fake_llm):
    point_sdks_at(monkeypatch, fake_llm, OPENAI_KEY, ANTHROPIC_KEY)
    for name in ("NBSTREAM_CACHE", "NBSTREAM_CACHE_DIR", "NBSTREAM_MODEL"):
        monkeypatch.delenv(name, raising=False)


def ask(model_id, cache_dir, mode, prompt="What is the answer?", **options):
    return nbstream.ask_sync(
        prompt, model=model_id, display="none", cache=mode, cache_dir=str(cache_dir), **options
    )


def files(cache_dir):
    return sorted(p.name for p in cache_dir.glob("*.json")) if cache_dir.exists() else []


# -- the key -----------------------------------------------------------------------------------


def base(**fields):
    return Request(prompt="Summarise.", model="gpt-4o-mini", **fields)


def test_the_key_covers_what_is_asked_and_nothing_else():
    key = cache.request_key("openai", base())
    assert len(key) == 64 and key == cache.request_key("openai", base())
    different = [
        cache.request_key("anthropic", base()),
        cache.request_key("openai", Request(prompt="Summarise!", model="gpt-4o-mini")),
        cache.request_key("openai", Request(prompt="Summarise.", model="gpt-4o")),
        cache.request_key("openai", base(system="Be brief.")),
        cache.request_key("openai", base(temperature=0.0)),
        cache.request_key("openai", base(top_p=0.5)),
        cache.request_key("openai", base(max_tokens=10)),
        cache.request_key("openai", base(stop=("END",))),
    ]
    assert len({key, *different}) == len(different) + 1
    # how the request travels is not what is asked: same key
    same = base(base_url="http://user:secret@proxy:8080/v1", connect_timeout=99.0)
    assert cache.request_key("openai", same) == key
    material = json.dumps(cache.key_material("openai", same))
    assert "secret" not in material and "proxy" not in material


def test_future_request_fields_join_the_key_automatically():
    """Conversations and structured output will add fields to Request: they are hashed
    without touching the cache, and a field left at None/empty keeps old keys valid."""

    @dataclasses.dataclass(frozen=True)
    class Later(Request):
        messages: tuple[dict[str, str], ...] = ()
        schema: dict | None = None

    key = cache.request_key("openai", base())
    assert cache.request_key("openai", Later(prompt="Summarise.", model="gpt-4o-mini")) == key
    turns = ({"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"})
    with_turns = Later(prompt="Summarise.", model="gpt-4o-mini", messages=turns)
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    with_schema = Later(prompt="Summarise.", model="gpt-4o-mini", schema=schema)
    keys = {key, cache.request_key("openai", with_turns), cache.request_key("openai", with_schema)}
    assert len(keys) == 3
    assert cache.key_material("openai", with_schema)["schema"] == schema


# -- the modes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_auto_asks_once_then_replays(fake_llm, tmp_path, provider):
    model = fake_llm.script(tokens=TOKENS, usage={"input_tokens": 9, "output_tokens": 4})
    pricing.set_price(f"{provider}:{model}", 1.0, 1.0)
    try:
        first = ask(f"{provider}:{model}", tmp_path, "auto")
        second = ask(f"{provider}:{model}", tmp_path, "auto")
    finally:
        pricing.clear_prices()
    assert len(fake_llm.log(model)) == 1
    assert first == second == "The answer is **42**." and second.finish_reason == "stop"
    assert not first.cached and first.cost and first.cost > 0
    assert second.cached and second.cost == 0.0 and second.usage == first.usage
    assert "cached" in second.summary() and "$0" in second.summary()
    assert len(files(tmp_path)) == 1


def test_read_uses_a_hit_and_never_records(fake_llm, tmp_path):
    model = fake_llm.script(tokens=TOKENS)
    r = ask(f"openai:{model}", tmp_path, "read")
    assert r == "The answer is **42**." and not r.cached and files(tmp_path) == []
    ask(f"openai:{model}", tmp_path, "write")
    assert len(fake_llm.log(model)) == 2
    hit = ask(f"openai:{model}", tmp_path, "read")
    assert hit.cached and len(fake_llm.log(model)) == 2


def test_write_always_asks_and_overwrites(fake_llm, tmp_path):
    model = fake_llm.script(tokens=TOKENS)
    ask(f"openai:{model}", tmp_path, "write")
    (path,) = tmp_path.glob("*.json")
    stale = json.loads(path.read_text())
    stale["deltas"] = ["stale"]
    path.write_text(json.dumps(stale))
    assert ask(f"openai:{model}", tmp_path, "auto") == "stale"  # what was recorded
    r = ask(f"openai:{model}", tmp_path, "write")
    assert r == "The answer is **42**." and not r.cached and len(fake_llm.log(model)) == 2
    assert json.loads(path.read_text())["deltas"] == TOKENS


@pytest.mark.parametrize("provider", PROVIDERS)
def test_replay_miss_is_an_error_and_sends_nothing(fake_llm, tmp_path, provider):
    model = fake_llm.script(tokens=TOKENS)
    r = ask(f"{provider}:{model}", tmp_path, "replay")
    assert r == "" and r.finish_reason == "error" and r.cost == 0.0
    assert "no recorded answer" in r.error and 'cache="write"' in r.error
    assert "cache=…" in r.error  # ask() names the keyword to change
    assert fake_llm.log(model) == [] and files(tmp_path) == []
    ask(f"{provider}:{model}", tmp_path, "write")
    replayed = ask(f"{provider}:{model}", tmp_path, "replay")
    assert replayed == "The answer is **42**." and replayed.cached
    assert len(fake_llm.log(model)) == 1


def test_replay_miss_in_the_magic_names_the_flag(fake_llm, tmp_path, ip):
    model = fake_llm.script(tokens=TOKENS)
    ip.run_cell_magic(
        "llm", f"-m openai:{model} --display none --cache replay --cache-dir {tmp_path}", "Hi"
    )
    r = ip.user_ns["_llm"]
    assert r.finish_reason == "error" and "--cache (or %config LLMMagics.cache)" in r.error
    assert fake_llm.log(model) == []


def test_off_neither_reads_nor_writes(fake_llm, tmp_path):
    model = fake_llm.script(tokens=TOKENS)
    ask(f"openai:{model}", tmp_path, "write")
    r = ask(f"openai:{model}", tmp_path, "off")
    assert not r.cached and len(fake_llm.log(model)) == 2
    # and off is the default
    nbstream.ask_sync("What is the answer?", model=f"openai:{model}", display="none")
    assert len(fake_llm.log(model)) == 3


def test_the_key_follows_the_system_prompt_and_options(fake_llm, tmp_path):
    model = fake_llm.script(tokens=TOKENS)
    ask(f"openai:{model}", tmp_path, "auto")
    ask(f"openai:{model}", tmp_path, "auto", system="Be brief.")
    ask(f"openai:{model}", tmp_path, "auto", temperature=0.0)
    ask(f"openai:{model}", tmp_path, "auto", idle_timeout=5.0)  # not part of the question
    assert len(fake_llm.log(model)) == 3 and len(files(tmp_path)) == 3


@pytest.mark.parametrize("fault", [{"drop_after": 2}, {"status": 500, "status_times": 99}])
def test_failed_answers_are_not_recorded(fake_llm, tmp_path, fault):
    model = fake_llm.script(tokens=TOKENS, **fault)
    r = ask(f"openai:{model}", tmp_path, "auto", http_retries=0)
    assert r.finish_reason == "error" and files(tmp_path) == []


def test_length_answers_are_recorded_and_replayed_as_length(fake_llm, tmp_path):
    model = fake_llm.script(tokens=TOKENS, finish_reason="length")
    ask(f"openai:{model}", tmp_path, "auto", max_tokens=4)
    r = ask(f"openai:{model}", tmp_path, "auto", max_tokens=4)
    assert r.cached and r.finish_reason == "length"


# -- the files ---------------------------------------------------------------------------------


def test_the_file_is_committable_json_without_secrets(fake_llm, tmp_path):
    model = fake_llm.script(tokens=[*TOKENS, " é ✓"], usage={"input_tokens": 4, "output_tokens": 5})
    ask(f"openai:{model}", tmp_path, "write", system="Be brief.", temperature=0.2)
    (path,) = tmp_path.glob("*.json")
    text = path.read_text(encoding="utf-8")
    data = json.loads(text)
    key = data["key"]
    assert path.name == f"{key[:16]}.json" and len(key) == 64
    assert text.startswith('{\n "key"') and "é ✓" in text  # pretty, readable
    assert data["request"] == {
        "format": 1,
        "provider": "openai",
        "prompt": "What is the answer?",
        "model": model,
        "system": "Be brief.",
        "temperature": 0.2,
    }
    assert data["deltas"] == [*TOKENS, " é ✓"] and data["finish_reason"] == "stop"
    assert data["usage"] == {"input_tokens": 4, "output_tokens": 5}
    assert data["model"] == f"openai:{model}" and data["nbstream"] == nbstream.__version__
    assert data["created"].endswith("+00:00")
    assert OPENAI_KEY not in text and "SECRET" not in text
    assert fake_llm.openai_base_url not in text  # where it was sent is not recorded


def test_a_short_name_collision_is_a_miss(fake_llm, tmp_path):
    model = fake_llm.script(tokens=TOKENS)
    ask(f"openai:{model}", tmp_path, "write")
    (path,) = tmp_path.glob("*.json")
    data = json.loads(path.read_text())
    data["key"] = data["key"][:16] + "0" * 48  # another request with the same short name
    path.write_text(json.dumps(data))
    r = ask(f"openai:{model}", tmp_path, "auto")
    assert not r.cached and len(fake_llm.log(model)) == 2
    assert json.loads(path.read_text())["key"] != data["key"]  # re-recorded


# -- the replay --------------------------------------------------------------------------------


def test_a_hit_is_marked_cached_in_the_status_line(fake_llm, tmp_path):
    model = fake_llm.script(tokens=TOKENS)
    ask(f"openai:{model}", tmp_path, "write")
    call = {"model": f"openai:{model}", "display": "none", "cache": "auto"}
    stream = make_stream("What is the answer?", {**call, "cache_dir": str(tmp_path)})
    assert stream.note == "cached"
    miss = make_stream("Another question", {**call, "cache_dir": str(tmp_path)})
    assert miss.note is None


@pytest.mark.parametrize("n, at_least, at_most", [(20, 0.03, 0.5), (5000, 0.8, 2.0)])
def test_replay_streams_at_a_brisk_fixed_pace(tmp_path, n, at_least, at_most):
    """2 ms between deltas, 1 s at most for the whole answer."""
    request = Request(prompt="p", model="m")
    key = cache.request_key("openai", request)
    final = nbstream.Final("stop", {"input_tokens": 1, "output_tokens": n})
    deltas = [f"t{i} " for i in range(n)]
    cache.write(tmp_path, key, cache.key_material("openai", request), "openai:m", deltas, final)
    r = ask("openai:m", tmp_path, "replay", prompt="p")
    assert r.cached and r.chunks == n and r == "".join(deltas)
    assert at_least <= r.elapsed <= at_most, r.elapsed


# -- the verdict, damaged entries, folders that cannot be written ---------------------------------


def test_an_answer_that_fails_validation_is_not_recorded_and_is_asked_again(fake_llm, tmp_path):
    """Recorded after the verdict: a validation failure used to be replayed forever."""
    model = fake_llm.script(text='{"name": "Oslo"}')  # no population
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["name", "population"],
    }
    first = ask(f"openai:{model}", tmp_path, "auto", schema=schema, retries=0)
    assert first.finish_reason == "error" and "population" in (first.error or "")
    assert files(tmp_path) == []
    second = ask(f"openai:{model}", tmp_path, "auto", schema=schema, retries=0)
    assert not second.cached and len(fake_llm.log(model)) == 2


def test_a_valid_schema_answer_is_recorded_once_judged(fake_llm, tmp_path):
    model = fake_llm.script(text='{"name": "Oslo", "population": 7}')
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["name", "population"],
    }
    ask(f"openai:{model}", tmp_path, "auto", schema=schema)
    again = ask(f"openai:{model}", tmp_path, "auto", schema=schema)
    assert again.cached and again.data == {"name": "Oslo", "population": 7}
    assert len(files(tmp_path)) == 1 and len(fake_llm.log(model)) == 1


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data.pop("model"),
        lambda data: data["usage"].update(input_tokens=None),
        lambda data: data.update(deltas="not a list"),
        lambda data: data.update(finish_reason=None),
        "{not json",
        "[]",
    ],
)
def test_a_damaged_entry_is_a_miss_said_once(fake_llm, tmp_path, damage):
    model = fake_llm.script(tokens=TOKENS, usage={"input_tokens": 3, "output_tokens": 4})
    ask(f"openai:{model}", tmp_path, "write")
    (path,) = tmp_path.glob("*.json")
    if isinstance(damage, str):
        path.write_text(damage)
    else:
        data = json.loads(path.read_text())
        damage(data)
        path.write_text(json.dumps(data))
    with pytest.warns(RuntimeWarning, match="damaged") as seen:
        r = ask(f"openai:{model}", tmp_path, "read")
        ask(f"openai:{model}", tmp_path, "read")
    assert len([w for w in seen if "damaged" in str(w.message)]) == 1
    assert str(path) in str(seen[0].message)
    assert not r.cached and r == "The answer is **42**." and r.finish_reason == "stop"
    assert len(fake_llm.log(model)) == 3


def test_an_unwritable_cache_folder_warns_once_and_loses_no_answer(fake_llm, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    model = fake_llm.script(tokens=TOKENS)
    with pytest.warns(RuntimeWarning, match="cannot record answers") as seen:
        first = ask(f"openai:{model}", blocker, "auto")
        second = ask(f"openai:{model}", blocker, "write")
    assert first == second == "The answer is **42**." and second.finish_reason == "stop"
    assert len([w for w in seen if "cannot record" in str(w.message)]) == 1
    assert "cache_dir" in str(seen[0].message)
