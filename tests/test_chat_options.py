"""The options of issue 11 (``chat``, ``chat_budget``, ``schema``, ``retries``) at the front
doors, and the line commands ``%llm thread`` / ``%llm reset``, in the test process's own
IPython (no kernel)."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

import nbstream
from nbstream import conversation, settings
from nbstream.notebook import magics
from nbstream.providers.base import Final, Request, note
from nbstream.settings import resolve


def parse(line: str):
    return magics.LLMMagics.llm.parser.parse_args(line.split())


def test_a_bare_chat_flag_means_the_default_thread():
    assert parse("--chat").chat == "default"
    assert parse("--chat -m openai").chat == "default"
    assert parse("-m openai --chat research").chat == "research"
    assert parse("-m openai").chat is None  # not given: %config / env / default decide
    assert parse("--schema list[City] --retries 2").schema == "list[City]"


def test_chat_values():
    assert resolve({"chat": True}).chat == "default"
    assert resolve({"chat": False}, {"chat": "x"}).chat is None
    assert resolve({"chat": "off"}, {"chat": "x"}).chat is None  # a cell opts out
    assert resolve({}, {"chat": "x"}).chat == "x"
    assert resolve({}, {}, {"NBSTREAM_CHAT": "team"}).chat == "team"
    assert resolve({"chat": "  "}).chat is None
    with pytest.raises(
        settings.SettingsError, match="the retries option: input should be less than or equal to 5"
    ):
        resolve({"retries": 9})


def test_line_commands(ip, capsys):
    conversation.reset("lines")
    conversation.record(conversation.Turn("q", "a", cell_id="c1"), "lines")
    ip.run_line_magic("llm", "thread lines")
    out = capsys.readouterr().out
    assert out.startswith("Thread 'lines': 1 turn") and "Next prompt sends: 1 earlier" in out
    assert nbstream.thread("lines") == [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a"},
    ]
    ip.run_line_magic("llm", "reset lines")
    assert capsys.readouterr().out.strip() == "Thread 'lines' cleared."
    assert nbstream.thread("lines") == []
    with pytest.raises(UsageError, match="unknown %llm command"):
        ip.run_line_magic("llm", "threads")


def test_a_provider_note_reaches_the_status_line():
    seen = []

    class Sink:
        pumps_widget_messages = False

        def on_start(self, stream):
            pass

        def on_delta(self, stream, delta):
            pass

        def on_status(self, stream):
            seen.append(stream.note)

        def on_end(self, stream, response):
            pass

    async def provider(request):
        note("took the other road")
        note("took the other road")  # said once
        yield "ok"
        yield Final("stop")

    import asyncio

    from nbstream.engine import Stream

    stream = Stream(provider, Request("p", "m"), model_id="t:m", sink=Sink(), note="first")
    response = asyncio.run(stream.run())
    assert response == "ok" and stream.note == "first · took the other road"
    assert seen[0] == "first · took the other road"
    note("outside a stream: nothing happens")


def test_a_re_ask_in_the_terminal_prints_both_answers(fake_llm, monkeypatch, capsys):
    from pydantic import BaseModel

    class Pair(BaseModel):
        a: int

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.openai_base_url)
    model = fake_llm.script(texts=['{"a": "x"}', '{"a": 1}'])
    r = nbstream.ask_sync("pair", model=f"openai:{model}", schema=Pair, display="text")
    out = capsys.readouterr().out
    assert r.data == Pair(a=1)
    first, ending, second = out.strip().splitlines()
    assert first == '{"a": "x"}' and second == '{"a": 1}'
    assert "failed" in ending and "a: Input should be a valid integer" in ending
