import copy
import json
import pickle

from nbstream import Response


def make(**kw):
    base = dict(
        finish_reason="cancelled",
        model="openai:gpt-4o-mini",
        usage=None,
        ttft=0.12,
        elapsed=1.5,
        prompt="Say hi",
        chunks=3,
    )
    base.update(kw)
    return Response("Hello world", **base)


def test_is_a_str_with_metadata():
    r = make()
    assert isinstance(r, str)
    assert r == "Hello world"
    assert r.upper() == "HELLO WORLD" and type(r.upper()) is str
    assert f"{r}!" == "Hello world!"
    assert json.dumps(r) == '"Hello world"'
    assert r.finish_reason == "cancelled" and not r.ok
    assert r.model == "openai:gpt-4o-mini" and r.prompt == "Say hi"
    assert r.text == "Hello world" and type(r.text) is str


def test_repr_shows_text_and_ending():
    r = make(finish_reason="error", error="HTTP 500 from OpenAI: boom")
    text = repr(r)
    assert text.startswith("Response('Hello world'")
    assert "finish_reason='error'" in text and "HTTP 500 from OpenAI: boom" in text
    long = Response("x" * 1000, finish_reason="stop")
    assert len(repr(long)) < 400 and "…" in repr(long)


def test_output_tokens_prefers_usage():
    assert make(usage={"input_tokens": 5, "output_tokens": 9}).output_tokens == 9
    assert make(usage=None).output_tokens == 3


def test_pickle_and_copy_keep_metadata():
    r = make(usage={"input_tokens": 1, "output_tokens": 2}, error=None)
    for clone in (pickle.loads(pickle.dumps(r)), copy.copy(r), copy.deepcopy(r)):
        assert clone == r and isinstance(clone, Response)
        assert clone.metadata() == r.metadata()


def test_a_finished_answer_awaits_waits_and_stops_as_itself():
    """A background answer's variable becomes its Response when it ends: ``await x``,
    ``x.wait()`` and ``x.stop()`` keep working on it."""
    import asyncio

    r = Response("done", finish_reason="length")

    async def main():
        return await r

    assert asyncio.run(main()) is r
    assert r.wait() is r and r.wait(timeout=0) is r and r.done
    r.stop()
    assert r.finish_reason == "length"
