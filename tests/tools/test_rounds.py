"""Answers that call tools, through the real SDKs against the test server: the calls stream
in, approved ones run on the caller's thread, the results go back in the provider's format,
and the answer continues; refusals, invalid arguments, errors, round limits and replays."""

from __future__ import annotations

import json
import time

import pytest

import nbstream
from fake_llm_fixture import point_sdks_at
from nbstream.tools import tool
from nbstream.tools.running import ALWAYS, REFUSED

PROVIDERS = ["openai", "anthropic", "gemini"]


class OpenAIWire:
    @staticmethod
    def tool(body: dict) -> dict:
        return body["tools"][0]["function"]

    @staticmethod
    def round(body: dict) -> tuple[tuple[str, dict], str]:
        """The last round sent back: (the call's name and arguments), its result."""
        *_, asked, answered = body["messages"]
        assert asked["role"] == "assistant" and answered["role"] == "tool"
        call = asked["tool_calls"][0]
        assert answered["tool_call_id"] == call["id"]
        function = call["function"]
        return (function["name"], json.loads(function["arguments"])), answered["content"]


class AnthropicWire:
    @staticmethod
    def tool(body: dict) -> dict:
        t = body["tools"][0]
        return {"name": t["name"], "parameters": t["input_schema"]}

    @staticmethod
    def round(body: dict) -> tuple[tuple[str, dict], str]:
        *_, asked, answered = body["messages"]
        assert asked["role"] == "assistant" and answered["role"] == "user"
        use = next(b for b in asked["content"] if b["type"] == "tool_use")
        result = answered["content"][0]
        assert result["type"] == "tool_result" and result["tool_use_id"] == use["id"]
        return (use["name"], use["input"]), result["content"]


class GeminiWire:
    @staticmethod
    def tool(body: dict) -> dict:
        declared = body["tools"][0]["functionDeclarations"][0]
        schema = declared.get("parametersJsonSchema") or declared["parameters_json_schema"]
        return {"name": declared["name"], "parameters": schema}

    @staticmethod
    def round(body: dict) -> tuple[tuple[str, dict], str]:
        *_, asked, answered = body["contents"]
        assert asked["role"] == "model" and answered["role"] == "user"
        called = next(p["functionCall"] for p in asked["parts"] if "functionCall" in p)
        response = answered["parts"][0]["functionResponse"]
        assert response["name"] == called["name"]
        return (called["name"], called["args"]), response["response"]["result"]


WIRE = {"openai": OpenAIWire, "anthropic": AnthropicWire, "gemini": GeminiWire}


@pytest.fixture(autouse=True)
def _keys(monkeypatch, fake_llm, tmp_path):
    point_sdks_at(monkeypatch, fake_llm, "sk-tools-openai", "sk-ant-tools")
    monkeypatch.setenv("NBSTREAM_HISTORY", str(tmp_path / "history.sqlite"))
    ALWAYS.clear()


CALLS: list[tuple[str, str | None]] = []


@tool(approve=False)
def load_sales(quarter: str, region: str | None = None) -> dict:
    """Sales of one quarter.

    Args:
        quarter: e.g. 2026-Q3.
        region: one region, else all.
    """
    CALLS.append((quarter, region))
    return {"EU": 120, "US": 95} if region is None else {region: 120}


def needs_approval(x: int) -> int:
    """Doubles x."""
    CALLS.append(("approval", str(x)))
    return 2 * x


def ask(provider, model, prompt="Which region sold most in Q3?", **options):
    return nbstream.ask_sync(prompt, model=f"{provider}:{model}", display="none", **options)


def two_rounds(fake_llm, arguments='{"quarter": "2026-Q3"}', name="load_sales"):
    return fake_llm.script(
        answers=[
            {"text": "Let me look.", "tool_calls": [{"name": name, "arguments": arguments}]},
            {"text": "EU sold most."},
        ]
    )


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_tool_round_runs_the_function_and_the_answer_continues(fake_llm, provider):
    CALLS.clear()
    model = two_rounds(fake_llm)
    r = ask(provider, model, tools=[load_sales])
    assert r.finish_reason == "stop", r.error
    assert r == "Let me look.\n\nEU sold most."
    assert CALLS == [("2026-Q3", None)]
    [record] = r.tool_calls
    assert record["name"] == "load_sales" and record["decision"] == "ran"
    assert json.loads(record["arguments"]) == {"quarter": "2026-Q3"}
    assert "120" in record["result"] and record["round"] == 1
    first, second = fake_llm.log(model)
    sent = WIRE[provider].tool(first["body"])
    assert sent["name"] == "load_sales" and sent["parameters"]["required"] == ["quarter"]
    assert sent["parameters"]["properties"]["quarter"]["description"] == "e.g. 2026-Q3."
    call, result = WIRE[provider].round(second["body"])
    assert call == ("load_sales", {"quarter": "2026-Q3"}) and "120" in result
    assert r.usage is not None and r.usage["output_tokens"] > 0  # both rounds summed


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_call_that_needs_approval_is_refused_where_nobody_can_ask(fake_llm, provider):
    CALLS.clear()
    model = two_rounds(fake_llm, '{"x": 2}', "needs_approval")
    r = ask(provider, model, tools=[needs_approval])
    assert CALLS == []  # never a silent run
    assert r.tool_calls[0]["decision"] == "refused"
    assert WIRE[provider].round(fake_llm.log(model)[1]["body"])[1] == REFUSED
    assert r.finish_reason == "stop" and r.endswith("EU sold most.")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_auto_approve_runs_it(fake_llm, provider):
    CALLS.clear()
    model = two_rounds(fake_llm, '{"x": 21}', "needs_approval")
    r = ask(provider, model, tools=[needs_approval], auto_approve=True)
    assert CALLS == [("approval", "21")] and r.tool_calls[0]["result"] == "42"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_invalid_arguments_go_back_to_the_model_and_nothing_runs(fake_llm, provider):
    CALLS.clear()
    model = two_rounds(fake_llm, '{"quarter": 3, "colour": "red"}')
    r = ask(provider, model, tools=[load_sales])
    assert CALLS == [] and r.finish_reason == "stop"
    [record] = r.tool_calls
    assert record["decision"] == "invalid" and "'colour': no such parameter" in record["result"]
    assert "'quarter'" in WIRE[provider].round(fake_llm.log(model)[1]["body"])[1]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_exception_in_the_tool_is_an_error_result(fake_llm, provider):
    @tool(approve=False)
    def broken(n: int) -> int:
        """Always fails."""
        raise RuntimeError(f"no data for {n}")

    model = two_rounds(fake_llm, '{"n": 7}', "broken")
    r = ask(provider, model, tools=[broken])
    [record] = r.tool_calls
    assert record["decision"] == "failed" and record["error"] == "RuntimeError: no data for 7"
    assert WIRE[provider].round(fake_llm.log(model)[1]["body"])[1].startswith("error: ")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_rounds_are_capped(fake_llm, provider):
    call = {"name": "load_sales", "arguments": '{"quarter": "Q1"}'}
    model = fake_llm.script(answers=[{"text": "", "tool_calls": [call]}])  # forever
    r = ask(provider, model, tools=[load_sales], max_tool_rounds=2)
    assert r.finish_reason == "error" and "after 2 rounds of tool calls" in r.error
    assert "max_tool_rounds=…" in r.error and len(fake_llm.log(model)) == 3
    assert [c["round"] for c in r.tool_calls] == [1, 2]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_replay_hands_back_the_recorded_results_and_runs_no_tool(fake_llm, provider, tmp_path):
    CALLS.clear()
    model = two_rounds(fake_llm)
    cache = {"cache": "auto", "cache_dir": str(tmp_path / "cache")}
    first = ask(provider, model, tools=[load_sales], **cache)
    assert CALLS == [("2026-Q3", None)] and not first.cached
    again = ask(provider, model, tools=[load_sales], **cache)
    assert CALLS == [("2026-Q3", None)]  # the tool did not run again
    assert again == first and again.cached
    assert again.tool_calls[0]["decision"] == "replayed"
    assert len(fake_llm.log(model)) == 2  # nothing more was sent


def test_tools_need_a_provider_that_calls_them(fake_llm):
    from nbstream.providers import _PROVIDERS

    async def talks_only(request):
        yield "hi"

    nbstream.register_provider("talks_only", talks_only)  # no Capabilities(tools=True)
    try:
        with pytest.raises(nbstream.tools.ToolError, match="'talks_only' cannot call tools"):
            nbstream.ask_sync("hi", model="talks_only:m", tools=[load_sales], display="none")
    finally:
        _PROVIDERS.pop("talks_only")
    with pytest.raises(nbstream.tools.ToolError, match="schema"):
        nbstream.ask_sync("hi", model="openai:x", tools=[load_sales], schema=dict[str, int])


def test_tools_by_name_in_a_cell(ip, fake_llm, capsys):
    CALLS.clear()
    model = two_rounds(fake_llm)
    ip.user_ns["load_sales"] = load_sales
    ip.run_cell_magic("llm", f"-m openai:{model} --tools load_sales --display none -o r", "Go")
    r = ip.user_ns["r"]
    assert r.endswith("EU sold most.") and CALLS == [("2026-Q3", None)]
    from IPython.core.error import UsageError

    with pytest.raises(UsageError, match="--tools: no function 'nope'"):
        ip.run_cell_magic("llm", f"-m openai:{model} --tools nope --display none", "Go")
    ip.user_ns.pop("load_sales")


def test_a_server_that_rejects_tools_says_so(fake_llm):
    model = fake_llm.script(
        reject_fields=["tools"], error_message="this model does not support tools"
    )
    r = ask("openai", model, tools=[load_sales])
    assert r.finish_reason == "error" and len(fake_llm.log(model)) == 1  # not retried
    assert r.error.startswith(f"the server at {fake_llm.openai_base_url} does not take tools")
    assert "this model does not support tools" in r.error and "leave --tools out" in r.error


def test_ollama_sends_tools_too(fake_llm, monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", fake_llm.url)
    CALLS.clear()
    model = two_rounds(fake_llm)
    r = ask("ollama", model, tools=[load_sales])
    assert r.endswith("EU sold most.") and CALLS == [("2026-Q3", None)]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_follow_up_in_the_thread_sees_the_tool_round(fake_llm, provider):
    call = {"name": "load_sales", "arguments": '{"quarter": "2026-Q3"}'}
    model = fake_llm.script(
        answers=[
            {"text": "Checking.", "tool_calls": [call]},
            {"text": "EU sold most."},
            {"text": "Because of the EU's 120."},
        ]
    )
    thread = f"tools-{provider}"
    first = ask(provider, model, tools=[load_sales], chat=thread)
    assert first.endswith("EU sold most.")
    ask(provider, model, "Why?", tools=[load_sales], chat=thread)
    body = fake_llm.log(model)[-1]["body"]
    history = json.dumps(body.get("messages") or body.get("contents"))
    assert "Checking." in history and "EU sold most." in history  # the rounds' texts
    assert '"load_sales"' in history and "120" in history  # the call and its result
    assert history.count("EU sold most.") == 1  # not repeated by the turn's full text


def test_history_rows_carry_the_calls(fake_llm, tmp_path, ip, capsys):
    from nbstream import store
    from nbstream.notebook.history import format_table

    CALLS.clear()
    model = two_rounds(fake_llm)
    ask("openai", model, tools=[load_sales])
    path = tmp_path / "history.sqlite"
    store.flush(path)
    asked, answered = store.read(path, 2)
    assert asked["tool_calls"] == [
        {"name": "load_sales", "arguments": '{"quarter": "2026-Q3"}', "decision": "asked"}
    ]
    [call] = answered["tool_calls"]
    assert (call["name"], call["decision"], call["round"]) == ("load_sales", "ran", 1)
    assert "120" in call["result"]
    table = format_table([answered])
    assert "[ran load_sales] Let me look." in table


def test_stop_in_map_reaches_a_rows_later_round(fake_llm):
    """Stop on a map closes the stream of the round running now, not only a row's first."""
    CALLS.clear()
    model = fake_llm.script(
        answers=[
            {
                "text": "Looking.",
                "tool_calls": [{"name": "load_sales", "arguments": '{"quarter": "Q3"}'}],
            },
            {"text": "word " * 60},
        ],
        delay=0.05,
    )
    job = nbstream.map_sync(
        ["q"], "{item}", model=f"openai:{model}", tools=[load_sales], background=True
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # the second round is streaming
        log = fake_llm.log(model)
        if len(log) == 2 and log[1]["tokens_sent"] >= 5:
            break
        time.sleep(0.02)
    job.stop()
    [result] = job.wait(timeout=20)
    assert CALLS == [("Q3", None)]
    assert result.finish_reason == "cancelled"
    assert result.startswith("Looking.") and "word" in result  # both rounds' text kept
    assert len(fake_llm.log(model)) == 2
    assert fake_llm.wait_for_disconnect(model)["client_disconnected"]
