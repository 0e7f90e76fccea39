"""A scriptable fake LLM HTTP server speaking the OpenAI and Anthropic streaming wire formats.

Standard library only. Run it as a subprocess::

    python tests/fake_llm_server.py --port 0 --port-file /tmp/port

It binds 127.0.0.1 only, writes the chosen port into ``--port-file`` once listening and serves
until killed. Endpoints:

- ``POST /v1/chat/completions`` -- OpenAI chat completions (``"stream": true`` -> SSE chunks
  ending in ``data: [DONE]``; otherwise one ``chat.completion`` JSON object).
- ``POST /v1/messages`` -- Anthropic messages (``"stream": true`` -> named SSE events from
  ``message_start`` to ``message_stop``; otherwise one ``message`` JSON object).
- ``POST /_script`` -- body: a script spec (see below); answers ``{"model": NAME}``. A request
  whose ``model`` is NAME follows that script; any other model gets the default script.
- ``GET /_log?model=NAME`` -- one record per request received for that model.
- ``GET /_health`` -- ``{"ok": true}``.

Script spec keys (all optional):

- ``tokens``: list of strings (default ``["Hello", " world", "!"]``), or ``text`` plus
  ``token_size`` (chunks of N characters, default 1).
- ``delay``: seconds between tokens; ``first_delay``: seconds before the first token (after the
  preamble events: OpenAI's role chunk, Anthropic's message_start/content_block_start/ping).
- ``finish_reason``: ``"stop"`` (default) or ``"length"`` (Anthropic ``end_turn``/``max_tokens``).
- ``drop_after``: after N tokens abort the connection: no terminal event, no ``[DONE]``.
  ``drop_mode``: ``"fin"`` (default; orderly close of a close-delimited body, which both SDKs
  take as a normal end of stream) or ``"reset"`` (TCP RST via SO_LINGER 0).
- ``malformed_after``: after N tokens send ``data: {not json`` (with an ``event:`` line for
  Anthropic, whose SDK ignores unnamed events), then finish normally.
- ``status`` (+ ``error_message``, ``status_times``): answer with that HTTP status and the
  provider's JSON error body, for the first ``status_times`` requests to that model, counted
  across both APIs (default: all).
- ``statuses``: a list of HTTP statuses for consecutive requests to that model (counted across
  both APIs, like ``status_times``), e.g. ``[429, 503, 200]``: request 1 gets a 429 error,
  request 2 a 503, request 3 the normal answer. ``200`` means the normal answer, and so do all
  requests past the end of the list. Not combinable with ``status``/``status_times``.
- ``retry_after`` / ``retry_after_ms`` (with ``status`` or ``statuses``): send a
  ``Retry-After`` / ``retry-after-ms`` header with every error response. The value (a string or a
  number, e.g. ``"0.2"``, ``1``, or an HTTP date) is sent as given; OpenAI's and Anthropic's SDKs
  read ``retry-after-ms`` first.
- ``headers_delay``: seconds to wait after reading the request and before sending the status line
  and headers (of any answer, error or not), watching for the client to go away like a stall;
  for first-byte/read timeouts as opposed to a mid-stream stall.
- ``stall_after``: after N tokens send nothing for ``stall_seconds`` (default 60) while
  watching for the client to go away; then the remaining tokens follow normally.
- ``error_event_after``: after N tokens (N <= number of tokens) send the provider's mid-stream
  error event and end the response (no terminal events, no ``[DONE]``; the body is ended
  properly: ``"close"`` framing closes the connection, ``"chunked"`` sends the last chunk and
  keeps the connection alive, as after a normal answer). Anthropic: ``event: error`` with
  ``{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}``; OpenAI:
  ``data: {"error": {"message": ..., "type": "server_error", "param": null, "code": null}}``.
  ``error_type`` and ``error_message`` override the type and the message. The anthropic SDK
  raises a plain ``APIStatusError`` (``status_code`` 200, ``body`` the event's JSON), the openai
  SDK an ``APIError`` (no ``status_code``; ``body`` the ``error`` object).
- ``invalid_utf8_after``: after N tokens send an otherwise well-formed token event whose text
  is the bytes ``b"\\xff\\xfe"`` (not UTF-8); then ``invalid_utf8_then``: ``"finish"``
  (default: the remaining tokens and the terminal events follow) or ``"close"`` (end the
  response there, like ``error_event_after``). The bad event does not count in ``tokens_sent``.
  Both SDKs let the ``UnicodeDecodeError`` of their SSE line decoder escape unwrapped.
- ``empty``: true -> answer 200 with the streaming headers, then end the response without a
  single event (what llama.cpp's server does with an over-long prompt).
- ``preamble_only``: true -> send only the preamble events (OpenAI's role chunk; Anthropic's
  message_start/content_block_start/ping), then end the response.
- ``usage``: ``{"input_tokens": P, "output_tokens": C, "cached_input_tokens": K}`` (default:
  P = words in the prompt, C = number of tokens, K = 0). K is sent the way each API reports
  prompt-cache reads: OpenAI ``usage.prompt_tokens_details.cached_tokens`` (part of P),
  Anthropic ``cache_read_input_tokens`` in ``message_start`` (apart: ``input_tokens`` = P - K).
- ``framing``: ``"close"`` (default; HTTP/1.1 ``connection: close``, the body ends when the
  socket closes) or ``"chunked"`` (``transfer-encoding: chunked``, connection kept alive; a
  ``drop_after`` then makes the SDKs raise an incomplete-body error instead of ending quietly).
- ``texts``: a list of strings, one per *answer* to that model (the first answer streams
  ``texts[0]``, the second ``texts[1]`` …, all later ones the last), each split into chunks of
  ``token_size`` characters (default 1); requests answered with an error status do not count.
  For answers that differ between a first request and a re-ask. Not combinable with
  ``tokens`` or ``text``.
- ``reject_fields``: a list of request-body field names (e.g. ``["response_format"]``): a
  request whose body has any of them is answered with ``reject_status`` (default 400) and the
  provider's error body, message ``error_message`` or ``"Unsupported parameter:
  'response_format'"`` (what an OpenAI-compatible server without that feature says); a
  request without them gets the normal answer. Not counted as an answer (see ``texts``).

Structured answers: an OpenAI request with ``response_format`` gets the tokens as ordinary
``content`` deltas (the JSON text), as the API streams it. An Anthropic request with
``tools`` is answered with one ``tool_use`` content block (named after ``tool_choice.name``,
else the first tool): the tokens are streamed as ``input_json_delta`` events
(``partial_json``) and the message ends with ``stop_reason: "tool_use"``; without
``"stream": true`` the block's ``input`` is the parsed text (``{}`` if it is not JSON).

The stream keys (``delay``, ``*_after``, ``empty``, ``preamble_only``, ``framing``) apply to
``"stream": true`` requests only. Tokens may hold lone UTF-16 surrogates
(``["\\ud83d", "\\ude00"]``): all JSON is written with ``\\uXXXX`` escapes (``ensure_ascii``),
so the SDKs' JSON parsers yield those lone surrogates, and :meth:`FakeLLMServer.script` sends
them the same way.

Every event is written with its own ``send`` (no buffering, TCP_NODELAY), so the SDKs see tokens
one by one.

Each log record has ``path``, ``model``, ``body`` (parsed JSON), ``headers`` (with
``authorization`` and ``x-api-key`` redacted), ``stream``, ``status``, ``attempt`` (1-based count
of the requests for that model so far, across both APIs), ``received_at`` (``time.time()`` when
the request line was read), ``started``, ``tokens_sent``, ``completed`` (terminal event
written), ``client_disconnected`` and ``disconnected_at``. A disconnect is noticed by a failed
write, or by polling the socket for EOF every 10 ms while waiting between tokens, stalled or
delaying the headers.

In tests use :class:`FakeLLMServer` (usually via the ``fake_llm`` fixture in
``fake_llm_fixture.py``)::

    with FakeLLMServer() as server:
        model = server.script(tokens=["a", "b"], delay=0.05)
        client = openai.OpenAI(base_url=server.openai_base_url, api_key="sk-test")
        ...
        server.log(model)[-1]["completed"]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

DEFAULT_TOKENS = ["Hello", " world", "!"]
POLL_INTERVAL = 0.01
REDACTED_HEADERS = {"authorization", "x-api-key", "api-key", "proxy-authorization"}
SPEC_KEYS = {
    "tokens",
    "text",
    "token_size",
    "delay",
    "first_delay",
    "finish_reason",
    "drop_after",
    "drop_mode",
    "framing",
    "malformed_after",
    "status",
    "status_times",
    "error_message",
    "stall_after",
    "stall_seconds",
    "usage",
    "statuses",
    "retry_after",
    "retry_after_ms",
    "headers_delay",
    "error_event_after",
    "error_type",
    "invalid_utf8_after",
    "invalid_utf8_then",
    "empty",
    "preamble_only",
    "texts",
    "reject_fields",
    "reject_status",
}
INVALID_UTF8 = b"\xff\xfe"
ANTHROPIC_STREAM_ERROR = ("overloaded_error", "Overloaded")
OPENAI_STREAM_ERROR = ("server_error", "The server had an error while processing your request.")

OPENAI_ERRORS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", None),
}
ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


class ClientGone(Exception):
    """The client closed or reset the connection."""


# --------------------------------------------------------------------------- server side


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.scripts: dict[str, dict[str, Any]] = {}
        self.status_served: dict[str, int] = {}
        self.attempts: dict[str, int] = {}
        self.answers: dict[str, int] = {}
        self.log: list[dict[str, Any]] = []
        self.counter = itertools.count(1)


def _validate_spec(spec: Any) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise ValueError("script spec must be a JSON object")
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        raise ValueError(f"unknown script keys: {sorted(unknown)}")
    if sum(key in spec for key in ("tokens", "text", "texts")) > 1:
        raise ValueError("give one of tokens, text and texts")
    if "texts" in spec and not (
        isinstance(spec["texts"], list)
        and spec["texts"]
        and all(isinstance(t, str) for t in spec["texts"])
    ):
        raise ValueError("texts must be a non-empty list of strings")
    if "reject_fields" in spec and not (
        isinstance(spec["reject_fields"], list)
        and all(isinstance(f, str) for f in spec["reject_fields"])
    ):
        raise ValueError("reject_fields must be a list of strings")
    if "reject_status" in spec and not (
        isinstance(spec["reject_status"], int) and 400 <= spec["reject_status"] <= 599
    ):
        raise ValueError("reject_status must be an int in 400..599")
    if "tokens" in spec and not (
        isinstance(spec["tokens"], list) and all(isinstance(t, str) for t in spec["tokens"])
    ):
        raise ValueError("tokens must be a list of strings")
    if spec.get("finish_reason", "stop") not in ("stop", "length"):
        raise ValueError("finish_reason must be 'stop' or 'length'")
    if spec.get("drop_mode", "fin") not in ("fin", "reset"):
        raise ValueError("drop_mode must be 'fin' or 'reset'")
    if spec.get("framing", "close") not in ("close", "chunked"):
        raise ValueError("framing must be 'close' or 'chunked'")
    if "token_size" in spec and int(spec["token_size"]) < 1:
        raise ValueError("token_size must be >= 1")
    _validate_new_keys(spec)
    return spec


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _validate_new_keys(spec: dict[str, Any]) -> None:
    if "statuses" in spec:
        statuses = spec["statuses"]
        if not (
            isinstance(statuses, list)
            and statuses
            and all(
                isinstance(s, int) and not isinstance(s, bool) and (s == 200 or 400 <= s <= 599)
                for s in statuses
            )
        ):
            raise ValueError("statuses must be a non-empty list of 200 or 400..599 ints")
        if "status" in spec or "status_times" in spec:
            raise ValueError("give either statuses or status/status_times, not both")
    for key in ("retry_after", "retry_after_ms"):
        if key not in spec:
            continue
        value = spec[key]
        if not (_is_number(value) or isinstance(value, str)):
            raise ValueError(f"{key} must be a string or a number")
        if any(ord(ch) < 32 or ord(ch) > 126 for ch in str(value)):
            raise ValueError(f"{key} must be printable ASCII")
        if "status" not in spec and "statuses" not in spec:
            raise ValueError(f"{key} needs status or statuses")
    if "headers_delay" in spec and not (
        _is_number(spec["headers_delay"]) and spec["headers_delay"] >= 0
    ):
        raise ValueError("headers_delay must be a number >= 0")
    for key in ("error_event_after", "invalid_utf8_after"):
        if key in spec and not (
            isinstance(spec[key], int) and not isinstance(spec[key], bool) and spec[key] >= 0
        ):
            raise ValueError(f"{key} must be an int >= 0")
    if "error_type" in spec and not isinstance(spec["error_type"], str):
        raise ValueError("error_type must be a string")
    if spec.get("invalid_utf8_then", "finish") not in ("finish", "close"):
        raise ValueError("invalid_utf8_then must be 'finish' or 'close'")
    for key in ("empty", "preamble_only"):
        if key in spec and not isinstance(spec[key], bool):
            raise ValueError(f"{key} must be true or false")
    if spec.get("empty") and spec.get("preamble_only"):
        raise ValueError("give either empty or preamble_only, not both")


def _tokens_of(spec: dict[str, Any], answer: int = 1) -> list[str]:
    if "texts" in spec or "text" in spec:
        texts = spec.get("texts") or [spec["text"]]
        text = str(texts[min(answer, len(texts)) - 1])
        size = int(spec.get("token_size", 1))
        return [text[i : i + size] for i in range(0, len(text), size)]
    return list(spec.get("tokens", DEFAULT_TOKENS))


def _content_words(content: Any) -> int:
    if isinstance(content, str):
        return len(content.split())
    if isinstance(content, list):
        total = 0
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                total += len(part["text"].split())
            elif isinstance(part, str):
                total += len(part.split())
        return total
    return 0


def _prompt_words(body: dict[str, Any]) -> int:
    total = _content_words(body.get("system"))
    for message in body.get("messages") or []:
        if isinstance(message, dict):
            total += _content_words(message.get("content"))
    return total


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server
    received_at = 0.0

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def parse_request(self) -> bool:
        # called right after the request line is read, before the headers
        self.received_at = time.time()
        return super().parse_request()

    # ---------------------------------------------------------------- plumbing

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _not_found(self, path: str) -> None:
        self._send_json(404, {"error": {"message": f"no route {path}", "type": "not_found"}})

    def _read_body(self) -> bytes:
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _client_gone(self) -> bool:
        """True if the peer has closed (EOF) or reset the connection."""
        sock = self.connection
        try:
            if hasattr(select, "poll"):
                poller = select.poll()
                poller.register(sock, select.POLLIN)
                events = poller.poll(0)
                flags = events[0][1] if events else 0
                if flags & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                    return True
                readable = bool(flags & select.POLLIN)
            else:  # pragma: no cover - platforms without poll()
                readable = bool(select.select([sock], [], [], 0)[0])
        except (OSError, ValueError):
            return True
        if not readable:
            return False
        try:
            peek = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        except OSError:
            return True
        return peek == b""

    def _mark_gone(self, record: dict[str, Any]) -> None:
        with self.server.state.lock:
            if not record["client_disconnected"]:
                record["client_disconnected"] = True
                record["disconnected_at"] = time.time()
        self.close_connection = True

    def _wait(self, seconds: float, record: dict[str, Any]) -> None:
        """Sleep for ``seconds``, raising ClientGone as soon as the client goes away."""
        deadline = time.monotonic() + max(0.0, seconds)
        while True:
            if self._client_gone():
                self._mark_gone(record)
                raise ClientGone
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(POLL_INTERVAL, remaining))

    def _write(self, data: bytes, record: dict[str, Any]) -> None:
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError) as exc:
            self._mark_gone(record)
            raise ClientGone from exc
        except OSError as exc:
            self._mark_gone(record)
            raise ClientGone from exc

    def _abort(self, mode: str) -> None:
        sock = self.connection
        with contextlib.suppress(OSError):
            if mode == "reset":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()
        self.close_connection = True

    # ---------------------------------------------------------------- routes

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/_health":
            self._send_json(200, {"ok": True, "pid": os.getpid()})
        elif url.path == "/_log":
            query = urllib.parse.parse_qs(url.query)
            model = query.get("model", [None])[0]
            with self.server.state.lock:
                records = [r for r in self.server.state.log if model is None or r["model"] == model]
                payload = json.loads(json.dumps(records))
            self._send_json(200, payload)
        else:
            self._not_found(url.path)

    def do_POST(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        raw = self._read_body()
        if url.path == "/_script":
            try:
                spec = _validate_spec(json.loads(raw or b"{}"))
            except (ValueError, TypeError) as exc:
                self._send_json(400, {"error": str(exc)})
                return
            state = self.server.state
            with state.lock:
                name = f"fake-{next(state.counter)}-{os.urandom(4).hex()}"
                state.scripts[name] = spec
            self._send_json(200, {"model": name})
        elif url.path in ("/v1/chat/completions", "/v1/messages"):
            self._llm(url.path, raw)
        else:
            self._not_found(url.path)

    def _llm(self, path: str, raw: bytes) -> None:
        provider = "openai" if path == "/v1/chat/completions" else "anthropic"
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = raw.decode("utf-8", "replace")
        model = body.get("model") if isinstance(body, dict) else None
        model = model if isinstance(model, str) else ""
        stream = bool(body.get("stream")) if isinstance(body, dict) else False
        headers = {
            k.lower(): ("<redacted>" if k.lower() in REDACTED_HEADERS else v)
            for k, v in self.headers.items()
        }
        state = self.server.state
        with state.lock:
            spec = dict(state.scripts.get(model, {}))
            attempt = state.attempts.get(model, 0) + 1
            state.attempts[model] = attempt
            status = spec.get("status")
            if "statuses" in spec:
                statuses = spec["statuses"]
                status = statuses[attempt - 1] if attempt <= len(statuses) else 200
                status = None if status == 200 else status
            elif status is not None:
                served = state.status_served.get(model, 0)
                times = spec.get("status_times")
                if times is not None and served >= int(times):
                    status = None
                else:
                    state.status_served[model] = served + 1
            rejected = [
                f for f in spec.get("reject_fields", ()) if isinstance(body, dict) and f in body
            ]
            if status is None and rejected:
                status = int(spec.get("reject_status", 400))
                if "error_message" not in spec:
                    spec["error_message"] = f"Unsupported parameter: {rejected[0]!r}"
            answer = 0
            if status is None:
                answer = state.answers.get(model, 0) + 1
                state.answers[model] = answer
            record: dict[str, Any] = {
                "path": path,
                "model": model,
                "body": body,
                "headers": headers,
                "stream": stream,
                "status": int(status) if status is not None else 200,
                "attempt": attempt,
                "received_at": self.received_at,
                "started": time.time(),
                "tokens_sent": 0,
                "completed": False,
                "client_disconnected": False,
                "disconnected_at": None,
            }
            state.log.append(record)

        try:
            self._wait(float(spec.get("headers_delay", 0)), record)
        except ClientGone:
            return
        if status is not None:
            extra = {
                header: str(spec[key])
                for key, header in (
                    ("retry_after", "retry-after"),
                    ("retry_after_ms", "retry-after-ms"),
                )
                if key in spec
            }
            self._error(provider, int(status), spec.get("error_message"), record, extra)
            return
        tokens = _tokens_of(spec, answer)
        words = _prompt_words(body) if isinstance(body, dict) else 0
        usage = spec.get("usage") or {}
        prompt_tokens = int(usage.get("input_tokens", words))
        completion_tokens = int(usage.get("output_tokens", len(tokens)))
        finish = spec.get("finish_reason", "stop")
        ctx = _Ctx(model or "fake-default", tokens, prompt_tokens, completion_tokens, finish)
        ctx.cached_tokens = int(usage.get("cached_input_tokens", 0))
        if provider == "anthropic" and isinstance(body, dict):
            ctx.tool = _tool_name(body)
        try:
            if not stream:
                self._wait(float(spec.get("first_delay", 0)), record)
                if provider == "openai":
                    payload = _openai_completion(ctx)
                else:
                    payload = _anthropic_message(ctx)
                self._send_json(200, payload, _id_headers(provider))
                with state.lock:
                    record["tokens_sent"] = len(tokens)
                    record["completed"] = True
                return
            self._stream(provider, spec, ctx, body, record)
        except ClientGone:
            self.close_connection = True

    def _error(
        self,
        provider: str,
        status: int,
        message: Any,
        record: dict[str, Any],
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        message = str(message) if message is not None else f"fake error {status}"
        if provider == "openai":
            err_type, code = OPENAI_ERRORS.get(
                status, ("server_error" if status >= 500 else "invalid_request_error", None)
            )
            payload: dict[str, Any] = {
                "error": {"message": message, "type": err_type, "param": None, "code": code}
            }
        else:
            err_type = ANTHROPIC_ERRORS.get(
                status, "api_error" if status >= 500 else "invalid_request_error"
            )
            payload = {
                "type": "error",
                "error": {"type": err_type, "message": message},
                "request_id": "req_fake",
            }
        try:
            self._send_json(status, payload, {**_id_headers(provider), **(extra_headers or {})})
        except OSError:
            self._mark_gone(record)
            self.close_connection = True
            return
        with self.server.state.lock:
            record["completed"] = True

    def _stream(
        self,
        provider: str,
        spec: dict[str, Any],
        ctx: _Ctx,
        body: Any,
        record: dict[str, Any],
    ) -> None:
        state = self.server.state
        include_usage = (
            provider == "openai"
            and isinstance(body, dict)
            and isinstance(body.get("stream_options"), dict)
            and bool(body["stream_options"].get("include_usage"))
        )
        events: _OpenAIEvents | _AnthropicEvents
        if provider == "openai":
            events = _OpenAIEvents(ctx, include_usage)
        else:
            events = _AnthropicEvents(ctx)
        drop_after = spec.get("drop_after")
        malformed_after = spec.get("malformed_after")
        invalid_utf8_after = spec.get("invalid_utf8_after")
        error_event_after = spec.get("error_event_after")
        stall_after = spec.get("stall_after")
        delay = float(spec.get("delay", 0))
        chunked = spec.get("framing", "close") == "chunked"

        def send(data: bytes) -> None:
            if chunked:
                data = b"%x\r\n%s\r\n" % (len(data), data)
            self._write(data, record)

        def end_early() -> None:
            """End the body properly, without the terminal events."""
            if chunked:  # last chunk; the connection stays open for the next request
                self._write(b"0\r\n\r\n", record)

        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        if chunked:
            self.send_header("transfer-encoding", "chunked")
        else:
            self.send_header("connection", "close")
        for key, value in _id_headers(provider).items():
            self.send_header(key, value)
        self.end_headers()
        if spec.get("empty"):
            self.wfile.flush()
            end_early()
            return
        send(events.preamble())
        if spec.get("preamble_only"):
            end_early()
            return

        self._wait(float(spec.get("first_delay", 0)), record)
        for i, token in enumerate([*ctx.tokens, None]):
            if drop_after is not None and i == int(drop_after):
                self._abort(str(spec.get("drop_mode", "fin")))
                return
            if malformed_after is not None and i == int(malformed_after):
                send(events.malformed())
            if invalid_utf8_after is not None and i == int(invalid_utf8_after):
                send(events.invalid_utf8())
                if spec.get("invalid_utf8_then", "finish") == "close":
                    end_early()
                    return
            if stall_after is not None and i == int(stall_after):
                self._wait(float(spec.get("stall_seconds", 60)), record)
            if error_event_after is not None and i == int(error_event_after):
                send(events.error(spec.get("error_type"), spec.get("error_message")))
                end_early()
                return
            if token is None:
                break
            if i > 0:
                self._wait(delay, record)
            send(events.token(token))
            with state.lock:
                record["tokens_sent"] = i + 1
        send(events.terminal())
        if chunked:
            self._write(b"0\r\n\r\n", record)
        with state.lock:
            record["completed"] = True


class _Ctx:
    def __init__(
        self, model: str, tokens: list[str], prompt: int, completion: int, finish: str
    ) -> None:
        self.model = model
        self.tokens = tokens
        self.prompt_tokens = prompt
        self.completion_tokens = completion
        self.finish = finish
        self.text = "".join(tokens)
        self.cached_tokens = 0
        self.tool: str | None = None
        """Anthropic: the tool whose input the tokens are (the request carried ``tools``)."""


def _tool_name(body: dict[str, Any]) -> str | None:
    """The tool an Anthropic request asks to be called: ``tool_choice.name``, else the first
    of ``tools``; ``None`` without tools."""
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools:
        return None
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and isinstance(choice.get("name"), str):
        return str(choice["name"])
    first = tools[0]
    return str(first.get("name", "tool")) if isinstance(first, dict) else "tool"


def _id_headers(provider: str) -> dict[str, str]:
    if provider == "openai":
        return {"x-request-id": "req_fake"}
    return {"request-id": "req_fake"}


def _sse(data: Any, event: str | None = None) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {text}\n\n".encode()


def _with_invalid_utf8(token_event: Callable[[str], bytes]) -> bytes:
    marker = "INVALID-UTF8-MARKER"
    data = token_event(marker)
    return data.replace(marker.encode(), INVALID_UTF8)


class _OpenAIEvents:
    def __init__(self, ctx: _Ctx, include_usage: bool) -> None:
        self.ctx = ctx
        self.include_usage = include_usage

    def _chunk(self, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": self.ctx.model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    def preamble(self) -> bytes:
        return _sse(self._chunk({"role": "assistant", "content": ""}, None))

    def token(self, token: str) -> bytes:
        return _sse(self._chunk({"content": token}, None))

    def malformed(self) -> bytes:
        return b"data: {not json\n\n"

    def invalid_utf8(self) -> bytes:
        return _with_invalid_utf8(self.token)

    def error(self, err_type: str | None, message: Any) -> bytes:
        default_type, default_message = OPENAI_STREAM_ERROR
        error = {
            "message": default_message if message is None else str(message),
            "type": err_type or default_type,
            "param": None,
            "code": None,
        }
        return _sse({"error": error})

    def terminal(self) -> bytes:
        out = _sse(self._chunk({}, self.ctx.finish))
        if self.include_usage:
            p, c = self.ctx.prompt_tokens, self.ctx.completion_tokens
            chunk = self._chunk({}, None)
            chunk["choices"] = []
            chunk["usage"] = {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
            if self.ctx.cached_tokens:
                chunk["usage"]["prompt_tokens_details"] = {"cached_tokens": self.ctx.cached_tokens}
            out += _sse(chunk)
        return out + b"data: [DONE]\n\n"


class _AnthropicEvents:
    def __init__(self, ctx: _Ctx) -> None:
        self.ctx = ctx

    def preamble(self) -> bytes:
        message = {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": self.ctx.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": self.ctx.prompt_tokens - self.ctx.cached_tokens,
                "output_tokens": 1,
            },
        }
        if self.ctx.cached_tokens:
            message["usage"]["cache_read_input_tokens"] = self.ctx.cached_tokens
        return (
            _sse({"type": "message_start", "message": message}, "message_start")
            + _sse(
                {"type": "content_block_start", "index": 0, "content_block": self._block()},
                "content_block_start",
            )
            + _sse({"type": "ping"}, "ping")
        )

    def _block(self) -> dict[str, Any]:
        if self.ctx.tool is None:
            return {"type": "text", "text": ""}
        return {"type": "tool_use", "id": "toolu_fake", "name": self.ctx.tool, "input": {}}

    def token(self, token: str) -> bytes:
        delta: dict[str, Any] = {"type": "text_delta", "text": token}
        if self.ctx.tool is not None:
            delta = {"type": "input_json_delta", "partial_json": token}
        event = {"type": "content_block_delta", "index": 0, "delta": delta}
        return _sse(event, "content_block_delta")

    def malformed(self) -> bytes:
        return b"event: content_block_delta\ndata: {not json\n\n"

    def invalid_utf8(self) -> bytes:
        return _with_invalid_utf8(self.token)

    def error(self, err_type: str | None, message: Any) -> bytes:
        default_type, default_message = ANTHROPIC_STREAM_ERROR
        error = {
            "type": err_type or default_type,
            "message": default_message if message is None else str(message),
        }
        return _sse({"type": "error", "error": error}, "error")

    def terminal(self) -> bytes:
        stop = "end_turn" if self.ctx.finish == "stop" else "max_tokens"
        if self.ctx.tool is not None and self.ctx.finish == "stop":
            stop = "tool_use"
        return (
            _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
            + _sse(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": self.ctx.completion_tokens},
                },
                "message_delta",
            )
            + _sse({"type": "message_stop"}, "message_stop")
        )


def _openai_completion(ctx: _Ctx) -> dict[str, Any]:
    p, c = ctx.prompt_tokens, ctx.completion_tokens
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": ctx.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": ctx.text, "refusal": None},
                "logprobs": None,
                "finish_reason": ctx.finish,
            }
        ],
        "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c},
    }


def _anthropic_message(ctx: _Ctx) -> dict[str, Any]:
    content: dict[str, Any] = {"type": "text", "text": ctx.text}
    stop = "end_turn" if ctx.finish == "stop" else "max_tokens"
    if ctx.tool is not None:
        try:
            data = json.loads(ctx.text)
        except ValueError:
            data = {}
        content = {"type": "tool_use", "id": "toolu_fake", "name": ctx.tool, "input": data}
        stop = "tool_use" if ctx.finish == "stop" else stop
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": ctx.model,
        "content": [content],
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": ctx.prompt_tokens, "output_tokens": ctx.completion_tokens},
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.state = _State()


def serve(port: int = 0, port_file: str | None = None) -> None:
    """Bind 127.0.0.1:``port`` (0 = any free port), write the port to ``port_file``, serve."""
    server = _Server(port)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    actual = server.server_address[1]
    if port_file:
        tmp = f"{port_file}.tmp"
        with open(tmp, "w") as fh:
            fh.write(str(actual))
        os.replace(tmp, port_file)
    else:
        print(actual, flush=True)
    server.serve_forever(poll_interval=0.1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file")
    args = parser.parse_args(argv)
    serve(args.port, args.port_file)


# --------------------------------------------------------------------------- client side


class FakeLLMServer:
    """Runs ``fake_llm_server.py`` in a subprocess and talks to its control endpoints."""

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python
        self.proc: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("server not started")
        return self.proc.pid

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("server not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    def _stderr(self) -> str:
        if self._tmpdir is None:
            return ""
        try:
            with open(os.path.join(self._tmpdir.name, "stderr")) as fh:
                return fh.read()[-4000:]
        except OSError:
            return ""

    def start(self, timeout: float = 15.0) -> FakeLLMServer:
        if self.proc is not None:
            raise RuntimeError("server already started")
        self._tmpdir = tempfile.TemporaryDirectory(prefix="fake-llm-")
        port_file = os.path.join(self._tmpdir.name, "port")
        with open(os.path.join(self._tmpdir.name, "stderr"), "wb") as err:
            self.proc = subprocess.Popen(
                [self.python, os.path.abspath(__file__), "--port", "0", "--port-file", port_file],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"fake LLM server exited with {self.proc.returncode}: {self._stderr()}"
                    )
                if os.path.exists(port_file):
                    with open(port_file) as fh:
                        self.port = int(fh.read().strip())
                    with contextlib.suppress(OSError):
                        if self._get("/_health").get("ok"):
                            return self
                if time.monotonic() > deadline:
                    raise RuntimeError(f"fake LLM server did not start: {self._stderr()}")
                time.sleep(0.02)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=5) as resp:
            return json.loads(resp.read())

    def script(self, **spec: Any) -> str:
        """Register a script; returns the model name that selects it."""
        req = urllib.request.Request(
            self.url + "/_script",
            data=json.dumps(spec).encode(),
            headers={"content-type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return str(json.loads(resp.read())["model"])
        except urllib.error.HTTPError as exc:
            raise ValueError(f"bad script spec: {exc.read().decode()}") from None

    def log(self, model: str) -> list[dict[str, Any]]:
        """One record per request received for ``model``, oldest first."""
        return list(self._get("/_log?" + urllib.parse.urlencode({"model": model})))

    def wait_for_disconnect(self, model: str, timeout: float = 5.0) -> dict[str, Any]:
        """Wait until the last request for ``model`` is marked client_disconnected."""
        deadline = time.monotonic() + timeout
        records: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            records = self.log(model)
            if records and records[-1]["client_disconnected"]:
                return records[-1]
            time.sleep(0.01)
        raise AssertionError(
            f"server saw no client disconnect for {model} within {timeout}s; log: {records}"
        )


if __name__ == "__main__":
    main()
