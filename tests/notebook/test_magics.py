"""Options, usage errors and the input transformer, in a real IPython shell (no kernel)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from IPython.core.error import UsageError

from nbstream.notebook import magics, transform
from nbstream.providers import ModelIdError, parse_model_id
from nbstream.run import resolve_model
from nbstream.settings import resolve


@pytest.mark.parametrize(
    "line, message",
    [
        ("--bogus", "unrecognized arguments"),
        ("-m", "expected one argument"),
        ("-m nope:thing", "unknown provider 'nope'"),
        ("-m openai:", "malformed model id"),
        ("-o 1abc", "Python variable name"),
        ("-o In", "IPython uses 'In' itself"),
        ("-o Out", "IPython uses 'Out' itself"),
        ("-o len", "hide the built-in len"),
        ("-o class", "is a Python keyword"),
        ("--timeout 0", "--idle-timeout: input should be greater than 0, got '0'"),
        ("--timeout nan", "--idle-timeout: input should be a finite number, got 'nan'"),
        ("--first-token-timeout -1", "--first-token-timeout: input should be greater than 0"),
        ("--connect-timeout inf", "--connect-timeout: input should be a finite number"),
        ("-t nan", "--temperature: input should be a finite number, got 'nan'"),
        ("-t 3", "--temperature: input should be less than or equal to 2"),
        ("--top-p 0", "--top-p: input should be greater than 0"),
        ("--max-tokens -3", "--max-tokens: input should be greater than 0"),
        ("--max-tokens 2.5", "--max-tokens: input should be a valid integer"),
        ("--http-retries 99", "--http-retries: input should be less than or equal to 10"),
        ("--display fancy", "--display: input should be 'auto', 'widget', 'html', 'text' or"),
        ("--base-url localhost:8000", "--base-url: must start with http:// or https://"),
        ("--stop ''", "--stop: a stop sequence cannot be empty"),
        ('-s "unclosed', "cannot parse the %%llm line"),
    ],
)
def test_bad_options_are_usage_errors_and_make_no_request(ip, line, message):
    with pytest.raises(UsageError, match=message):
        ip.run_cell_magic("llm", line, "Hello")


def test_empty_prompt_is_a_usage_error(ip):
    with pytest.raises(UsageError, match="prompt is empty"):
        ip.run_cell_magic("llm", "-m local", "   \n  ")


def test_model_ids():
    assert parse_model_id("openai:gpt-4o") == ("openai", "gpt-4o")
    assert parse_model_id("ollama:llama3.2:3b") == ("ollama", "llama3.2:3b")
    assert parse_model_id("local") == ("local", "gemma3-270m")
    assert parse_model_id("anthropic") == ("anthropic", "claude-sonnet-4-5")
    for bad in ["", "open ai:x", "x:y", "openai:"]:
        with pytest.raises(ModelIdError):
            parse_model_id(bad)


def test_default_model_precedence(monkeypatch):
    for var in ("NBSTREAM_MODEL", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(var, raising=False)

    def model(call=None, config=None):
        return resolve_model(resolve(call or {}, config or {}))

    assert model() == ("local", "default: no model configured and no API key found")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    assert model()[0] == "anthropic"
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    assert model()[0] == "openai"
    monkeypatch.setenv("NBSTREAM_MODEL", "ollama:qwen")
    assert model() == ("ollama:qwen", None)
    assert model(config={"model": "anthropic:x"}) == ("anthropic:x", None)
    assert model({"model": "openai:y"}, {"model": "anthropic:x"}) == ("openai:y", None)


def test_quoted_option_values_lose_their_quotes(ip):
    args = magics.instance().parse_line(
        """-s "Be brief." --base-url 'http://127.0.0.1:9/v1' --stop "a b" --stop c -t 0.5"""
    )
    assert args.system == "Be brief." and args.base_url == "http://127.0.0.1:9/v1"
    assert args.stop == ["a b", "c"] and args.temperature == "0.5"


def test_config_via_traitlets(ip, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-should-not-show-123456")
    ip.run_line_magic("config", 'LLMMagics.model = "anthropic:claude-x"')
    try:
        ip.run_line_magic("llm", "config")
        out = capsys.readouterr().out
        assert "anthropic:claude-x" in out and "%config LLMMagics.model" in out
        assert "OPENAI_API_KEY" in out and "sk-should-not-show" not in out
    finally:
        ip.run_line_magic("config", 'LLMMagics.model = ""')


def test_help(ip, capsys):
    ip.run_line_magic("llm", "help")
    out = capsys.readouterr().out
    assert "--max-tokens" in out and "Stop" in out and "_llm" in out
    with pytest.raises(UsageError, match="unknown %llm command"):
        ip.run_line_magic("llm", "frobnicate")


def test_transformer_rewrites_llm_cells_only():
    rewritten = transform.rewrite_llm_cell(["%%llm -m local -o x\n", "Say {hi}\n", "'q'\n"])
    assert rewritten == ["await _nbstream_run_cell('-m local -o x', \"Say {hi}\\n'q'\\n\")\n"]
    for cell in (["%%llmx\n", "a\n"], ["%%llm?\n"], ["print(1)\n"], []):
        assert transform.rewrite_llm_cell(cell) == cell


def test_load_ext_imports_no_sdk():
    code = (
        "import sys, time; from IPython.testing.globalipapp import start_ipython; "
        "ip = start_ipython(); t = time.perf_counter(); ip.run_line_magic('load_ext', 'nbstream');"
        "dt = time.perf_counter() - t; "
        "bad = [m for m in ('openai', 'anthropic', 'llama_cpp', 'httpx2', 'anywidget') "
        "if m in sys.modules]; print(bad, round(dt, 3))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    bad, seconds = out.stdout.strip().rsplit(" ", 1)
    assert bad == "[]", out.stdout
    print(f"%load_ext nbstream took {float(seconds) * 1000:.0f} ms")
