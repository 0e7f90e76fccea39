"""MCP servers as tool sources: real servers on the official SDK (``tests/mcp_server.py``)
over stdio and streamable HTTP, started by the tests and stopped by their PID."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import nbstream
from fake_llm_fixture import point_sdks_at
from nbstream.tools import ToolError, resolve_tools
from nbstream.tools.mcp import close_all

SERVER = str(Path(__file__).resolve().parents[1] / "mcp_server.py")


@pytest.fixture(autouse=True)
def _servers_closed():
    yield
    close_all()


@pytest.fixture
def stdio_config(tmp_path):
    path = tmp_path / "mcp.json"
    servers = {"calc": {"command": sys.executable, "args": [SERVER]}}
    path.write_text(json.dumps({"mcpServers": servers}))
    return str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def http_server(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, SERVER, "--http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    path = tmp_path / "mcp-http.json"
    path.write_text(json.dumps({"mcpServers": {"web": {"url": f"http://127.0.0.1:{port}/mcp"}}}))
    try:
        yield str(path)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


def test_a_stdio_server_offers_its_tools_with_their_schemas(stdio_config):
    tools = resolve_tools("mcp:calc", {}, mcp_config=stdio_config)
    assert [t.name for t in tools] == ["add", "shout", "fail", "pid"]
    add = tools[0]
    assert add.description == "Add two integers." and add.approve is True
    assert add.parameters["required"] == ["a", "b"]
    [only] = resolve_tools("mcp:calc/shout", {}, mcp_config=stdio_config)
    assert only.name == "shout"
    import asyncio

    assert asyncio.run(add.acall({"a": 2, "b": 3})) == "5"
    assert asyncio.run(only.acall('{"text": "hi"}')) == "HI"


def test_arguments_are_checked_against_the_servers_schema(stdio_config):
    [add] = resolve_tools("mcp:calc/add", {}, mcp_config=stdio_config)
    with pytest.raises(nbstream.tools.ToolArgumentsError, match="'a'"):
        add.arguments({"a": "two", "b": 3})


def test_the_model_calls_a_server_tool(fake_llm, monkeypatch, stdio_config, tmp_path):
    point_sdks_at(monkeypatch, fake_llm, "sk-mcp", "sk-ant-mcp")
    monkeypatch.setenv("NBSTREAM_HISTORY", "off")
    call = {"name": "add", "arguments": '{"a": 20, "b": 22}'}
    model = fake_llm.script(answers=[{"text": "", "tool_calls": [call]}, {"text": "42."}])
    r = nbstream.ask_sync(
        "Add.",
        model=f"openai:{model}",
        display="none",
        tools="mcp:calc/add",
        mcp_config=stdio_config,
        auto_approve=True,
    )
    assert r == "42." and r.tool_calls[0]["decision"] == "ran"
    assert r.tool_calls[0]["result"] == "42"
    sent = fake_llm.log(model)[1]["body"]["messages"][-1]
    assert sent["role"] == "tool" and sent["content"] == "42"
    # a tool that fails on the server: an error result, the answer goes on
    call = {"name": "fail", "arguments": '{"message": "no such file"}'}
    model = fake_llm.script(answers=[{"text": "", "tool_calls": [call]}, {"text": "Sorry."}])
    r = nbstream.ask_sync(
        "Fail.",
        model=f"openai:{model}",
        display="none",
        tools="mcp:calc",
        mcp_config=stdio_config,
        auto_approve=True,
    )
    assert r == "Sorry." and r.tool_calls[0]["decision"] == "failed"
    assert fake_llm.log(model)[1]["body"]["messages"][-1]["content"].startswith("error: ")


def test_a_server_that_died_restarts_on_the_next_use(stdio_config):
    import asyncio

    [pid_tool] = resolve_tools("mcp:calc/pid", {}, mcp_config=stdio_config)
    first = int(asyncio.run(pid_tool.acall({})))
    os.kill(first, signal.SIGKILL)
    with pytest.raises(ToolError, match="MCP server 'calc'"):
        for _ in range(50):  # the session notices the dead process
            asyncio.run(pid_tool.acall({}))
            time.sleep(0.1)
    [pid_tool] = resolve_tools("mcp:calc/pid", {}, mcp_config=stdio_config)
    second = int(asyncio.run(pid_tool.acall({})))
    assert second != first


def test_a_streamable_http_server(http_server):
    import asyncio

    tools = resolve_tools("mcp:web", {}, mcp_config=http_server)
    assert "add" in [t.name for t in tools]
    add = next(t for t in tools if t.name == "add")
    assert asyncio.run(add.acall({"a": 1, "b": 2})) == "3"


@pytest.mark.parametrize(
    "spec, config, words",
    [
        ("mcp:calc", None, "no MCP config is set"),
        ("mcp:nope", "cfg", "no MCP server 'nope'"),
        ("mcp:calc/nope", "cfg", "has no tool 'nope'"),
        ("mcp:dead", "dead", "could not start"),
    ],
)
def test_what_is_wrong_is_said(stdio_config, tmp_path, spec, config, words):
    if config == "cfg":
        config = stdio_config
    elif config == "dead":
        config = str(tmp_path / "dead.json")
        url = f"http://127.0.0.1:{free_port()}/mcp"  # nothing listens there
        Path(config).write_text(json.dumps({"mcpServers": {"dead": {"url": url}}}))
    with pytest.raises(ToolError, match=words):
        resolve_tools(spec, {}, mcp_config=config)
