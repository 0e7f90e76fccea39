"""A scriptable fake LLM HTTP server speaking the OpenAI, Anthropic and Gemini streaming formats.

Standard library only. Run it as a subprocess::

    python tests/fake_llm_server.py --port 0 --port-file /tmp/port

It binds 127.0.0.1 only, writes the chosen port into ``--port-file`` once listening and serves
until killed. Endpoints:

- ``POST /v1/chat/completions`` -- OpenAI chat completions (``"stream": true`` -> SSE chunks
  ending in ``data: [DONE]``; otherwise one ``chat.completion`` JSON object).
- ``POST /v1/messages`` -- Anthropic messages (``"stream": true`` -> named SSE events from
  ``message_start`` to ``message_stop``; otherwise one ``message`` JSON object).
- ``POST /v1beta/models/MODEL:streamGenerateContent?alt=sse`` -- Gemini (SSE chunks, each a
  ``GenerateContentResponse``; the last one carries ``finishReason`` and ``usageMetadata``:
  Gemini has no other terminal event); ``POST /v1beta/models/MODEL:generateContent`` -- one
  response JSON object. The model is the path's; the script keys work as for the others
  (Gemini's mid-stream error event is ``data: {"error": {"code", "message", "status"}}``).
- ``POST /_script`` -- body: a script spec (see below); answers ``{"model": NAME}``. A request
  whose ``model`` is NAME follows that script; any other model gets the default script. The
  spec's ``name`` chooses NAME (e.g. ``gpt-4o-mini``, to record a demo notebook's answer);
  without it NAME is new for each script.
- ``GET /_log?model=NAME`` -- one record per request received for that model.
- ``GET /_health`` -- ``{"ok": true}``.
- ``POST /v1/messages/count_tokens`` (Anthropic's token counting): ``{"input_tokens": N}``
  with N = the body's words × 4 / 3 + 3 (logged like a request).
- The providers' batch services (see "Batch services" below): OpenAI ``POST /v1/files``,
  ``GET /v1/files/ID``, ``GET /v1/files/ID/content``, ``POST /v1/batches``,
  ``GET /v1/batches/ID``, ``POST /v1/batches/ID/cancel``; Anthropic
  ``POST /v1/messages/batches``, ``GET /v1/messages/batches/ID``,
  ``POST /v1/messages/batches/ID/cancel``, ``GET /v1/messages/batches/ID/results``.
- ``GET /_log?batch=ID`` -- the batch-service requests for batch ID (``*``: all of them).
- ``GET /_batches`` / ``GET /_batches/ID`` -- the server's view of the batch jobs / of one;
  ``POST /_batches/ID/expire`` -- make a running batch expire at its next row.

Script spec keys (all optional):

- ``tokens``: list of strings (default ``["Hello", " world", "!"]``), or ``text`` plus
  ``token_size`` (chunks of N characters, default 1).
- ``delay``: seconds between tokens; ``first_delay``: seconds before the first token (after the
  preamble events: OpenAI's role chunk, Anthropic's message_start/content_block_start/ping).
- ``finish_reason``: ``"stop"`` (default) or ``"length"`` (Anthropic ``end_turn``/``max_tokens``,
  Gemini ``STOP``/``MAX_TOKENS``), or a Gemini reason sent as it is (``"SAFETY"`` …).
- ``drop_after``: after N tokens abort the connection: no terminal event, no ``[DONE]``.
  ``drop_mode``: ``"fin"`` (default; orderly close of a close-delimited body, which both SDKs
  take as a normal end of stream) or ``"reset"`` (TCP RST via SO_LINGER 0).
- ``malformed_after``: after N tokens send ``data: {not json`` (with an ``event:`` line for
  Anthropic, whose SDK ignores unnamed events), then finish normally.
- ``status`` (+ ``error_message``, ``status_times``): answer with that HTTP status and the
  provider's JSON error body, for the first ``status_times`` requests to that model, counted
  across both APIs (default: all).
- ``status_every`` (with ``status``; + ``error_message``, ``retry_after``/``retry_after_ms``):
  request number k to that model (the ``attempt`` count, across both APIs and batch rows)
  gets the error ``status`` when k % N == 0, all others the normal answer: ``status=429,
  status_every=10`` is "10 % of requests are rate limited". Not combinable with
  ``statuses``/``status_times``.
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
  Anthropic ``cache_read_input_tokens`` in ``message_start`` / the message's ``usage``
  (apart: ``input_tokens`` = P - K); streamed or not.
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
- ``answers``: a list, one entry per *answer* to that model (like ``texts``): ``{"text": …,
  "tool_calls": [{"name": …, "arguments": "<JSON text>"}]}``. An answer with tool calls
  streams its text, then the calls in the API's own way (OpenAI ``tool_calls`` deltas —
  the id and name first, the arguments in pieces of ``token_size`` characters, default 8 —
  and ``finish_reason: "tool_calls"``; Anthropic ``tool_use`` blocks with
  ``input_json_delta`` and ``stop_reason: "tool_use"``; Gemini ``functionCall`` parts).
  Not combinable with ``tokens`` / ``text`` / ``texts``.
- ``thinking``: a list of strings, the model's thinking, streamed before each answer's
  text (``delay`` apart) in the API's own way: OpenAI ``reasoning_content`` deltas
  (``think_format``: ``"reasoning_content"``, ``"reasoning"``, or ``"tags"`` — inside the
  content as ``<think>…</think>``, re-cut into 3-character deltas so that the tags split),
  and ``completion_tokens_details.reasoning_tokens``; Anthropic a ``thinking`` block
  (``thinking_delta`` per piece, then ``signature_delta`` with ``signature``, default
  ``"sig-fake"``) before the text block, after a ``redacted_thinking`` block when
  ``redacted_thinking`` (its ``data``) is given; Gemini ``thought: true`` parts and
  ``thoughtsTokenCount``.
- ``batch_seconds``: seconds a batch row for this model takes (default 0.01); see below.
- ``batch_create_status`` (+ ``error_message``, ``retry_after``/``retry_after_ms``): a batch
  creation whose first row is for this model (OpenAI ``POST /v1/batches``: the input file's
  first line's ``body.model``; Anthropic ``POST /v1/messages/batches``: ``requests[0].params
  .model``) is answered with that HTTP status and the provider's error body; no batch is made.
- ``echo``: true: the answer is ``"echo: "`` and the last user message's text, cut into as
  many tokens as ``tokens`` has (timing as scripted), so a test sees which answer went to
  which request.
- ``batch_max_rows`` / ``batch_max_bytes``: the batch service's limits for a batch whose first
  row is for this model, scaled down (defaults: the real ones, OpenAI 50,000 requests and a
  200 MB input file, Anthropic 100,000 requests and a 256 MB body). Over them: OpenAI answers
  the upload (bytes) or the batch creation (rows) 400; Anthropic the creation 413 (bytes) or
  400 (rows); no batch is made. Every batch created within them is logged with its size.

Structured answers: an OpenAI request with ``response_format`` gets the tokens as ordinary
``content`` deltas (the JSON text), as the API streams it. An Anthropic request with
``tools`` is answered with one ``tool_use`` content block (named after ``tool_choice.name``,
else the first tool): the tokens are streamed as ``input_json_delta`` events
(``partial_json``) and the message ends with ``stop_reason: "tool_use"``; without
``"stream": true`` the block's ``input`` is the parsed text (``{}`` if it is not JSON).

A request without ``"stream": true`` gets the whole answer after ``first_delay`` plus
``delay`` per token (as long as the stream would take). The other stream keys
(``*_after``, ``empty``, ``preamble_only``, ``framing``) apply to ``"stream": true``
requests only. Tokens may hold lone UTF-16 surrogates
(``["\\ud83d", "\\ude00"]``): all JSON is written with ``\\uXXXX`` escapes (``ensure_ascii``),
so the SDKs' JSON parsers yield those lone surrogates, and :meth:`FakeLLMServer.script` sends
them the same way.

Batch services. Both run a batch in a background thread that answers its rows **one after
another**, each taking its model's ``batch_seconds``; a row is answered exactly as a
non-streaming request with its body would be (same script lookup, ``attempt``/``texts``
counting, ``status``/``statuses``/``status_every``/``reject_fields`` errors, tokens, usage,
finish reason, ``tool_use`` for ``tools``) and logged in ``/_log?model=`` like one (with
``"batch"`` and ``"custom_id"`` added, ``headers`` empty). The output is in *reversed* row
order (the real services do not keep the order: clients must map by ``custom_id``).

- OpenAI: ``POST /v1/files`` takes the SDK's ``multipart/form-data`` upload (``purpose``,
  ``file``; a ``batch`` file must be named ``*.jsonl``) and answers a FileObject (``file-…``,
  status ``processed``); ``GET /v1/files/ID/content`` gives the bytes back. ``POST
  /v1/batches`` (``input_file_id``, ``endpoint`` ``/v1/chat/completions`` only,
  ``completion_window`` ``24h``, ``metadata``) answers a Batch (``batch_…``) in status
  ``validating``; the worker checks the input lines (``custom_id`` unique, ``method`` POST,
  ``url`` = endpoint, ``body.model``, no ``stream``): a bad file makes the batch ``failed``
  with ``errors.data`` (``code``, ``message``, ``line``). Else ``in_progress`` →
  ``finalizing`` → ``completed``, ``request_counts`` (``total``, ``completed``, ``failed``)
  moving live. At the end the output file holds the rows answered 200 as ``{"id",
  "custom_id", "response": {"status_code": 200, "request_id", "body": <chat.completion>},
  "error": null}``, the error file (``error_file_id``, null without errors) the others, with
  ``status_code`` S and ``body`` the error JSON. ``POST /v1/batches/ID/cancel`` → status
  ``cancelling``; the worker stops at the current row (that row and the later ones are in no
  file), writes the files and ends ``cancelled``; cancelling an ended batch answers 400.
  Expired (``/_batches/ID/expire``): the rows not run go to the error file with ``"response":
  null, "error": {"code": "batch_expired", ...}`` (counted as failed); status ``expired``.
- Anthropic: ``POST /v1/messages/batches`` (``{"requests": [{"custom_id", "params"}]}``,
  ``params`` a Messages body without ``stream``) answers a MessageBatch (``msgbatch_…``,
  ``processing_status`` ``in_progress``, RFC 3339 times). As documented for the real API,
  ``request_counts`` stay ``processing: n`` until the batch ends. ``POST .../cancel`` →
  ``canceling`` (``cancel_initiated_at`` set); the worker stops at the current row and the
  rows not run become ``canceled`` (``expired`` after ``/_batches/ID/expire``). Ended:
  ``processing_status`` ``ended``, ``ended_at``, final counts, and ``results_url`` =
  ``http://127.0.0.1:PORT/v1/messages/batches/ID/results`` (the SDK's ``results()`` GETs
  that absolute URL), serving JSONL lines ``{"custom_id", "result": {"type": "succeeded",
  "message": <message>}}`` / ``{"type": "errored", "error": {"type": "error", "error":
  {"type", "message"}}}`` / ``{"type": "canceled"}`` / ``{"type": "expired"}``.
- Unknown ids get the provider's 404 error body. Every batch-service request is logged
  (``GET /_log?batch=ID``): ``path``, ``method``, ``status``, ``received_at``, ``batch``,
  ``file`` (file requests count for the batch that uses or produced the file).
- Helpers: :meth:`FakeLLMServer.batch` (rows done, their states, the object, the requests),
  ``batches``, ``batch_log``, ``wait_batch`` (until finished or N rows done) and
  ``expire_batch``.

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
import datetime
import itertools
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

DEFAULT_TOKENS = ["Hello", " world", "!"]
POLL_INTERVAL = 0.01
REDACTED_HEADERS = {
    "authorization",
    "x-api-key",
    "api-key",
    "proxy-authorization",
    "x-goog-api-key",
}
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
    "status_every",
    "batch_seconds",
    "batch_create_status",
    "batch_max_rows",
    "batch_max_bytes",
    "echo",
    "answers",
    "name",
    "thinking",
    "think_format",
    "redacted_thinking",
    "signature",
}
INVALID_UTF8 = b"\xff\xfe"
ANTHROPIC_STREAM_ERROR = ("overloaded_error", "Overloaded")
GEMINI_STREAM_ERROR = ("UNAVAILABLE", "The model is overloaded. Please try again later.")
GEMINI_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
GEMINI_FINISH = {"stop": "STOP", "length": "MAX_TOKENS"}
GEMINI_PATH = re.compile(
    r"^/v1beta/models/(?P<model>[^/:]+):(?P<method>streamGenerateContent|generateContent)$"
)
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
        self.files: dict[str, dict[str, Any]] = {}
        """file id -> ``object`` (the FileObject), ``content`` (bytes), ``batch`` (its id)."""
        self.batches: dict[str, _Batch] = {}
        self.batch_log: list[dict[str, Any]] = []


def _validate_spec(spec: Any) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise ValueError("script spec must be a JSON object")
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        raise ValueError(f"unknown script keys: {sorted(unknown)}")
    if "name" in spec and not (isinstance(spec["name"], str) and spec["name"].strip()):
        raise ValueError("name must be a non-empty string")
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
    finish = spec.get("finish_reason", "stop")
    if finish not in ("stop", "length") and not (isinstance(finish, str) and finish.isupper()):
        raise ValueError("finish_reason must be 'stop', 'length' or a Gemini reason (SAFETY …)")
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
    thinking = spec.get("thinking")
    if thinking is not None and not (
        isinstance(thinking, list) and all(isinstance(t, str) for t in thinking)
    ):
        raise ValueError("thinking must be a list of strings")
    if spec.get("think_format", "reasoning_content") not in (
        "reasoning_content",
        "reasoning",
        "tags",
    ):
        raise ValueError("think_format must be reasoning_content, reasoning or tags")
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
    _validate_batch_keys(spec)


def _validate_batch_keys(spec: dict[str, Any]) -> None:
    if "status_every" in spec:
        every = spec["status_every"]
        if not (isinstance(every, int) and not isinstance(every, bool) and every >= 1):
            raise ValueError("status_every must be an int >= 1")
        if "statuses" in spec or "status_times" in spec:
            raise ValueError("give either status_every or statuses/status_times, not both")
        if "status" not in spec:
            raise ValueError("status_every needs status")
    if "batch_seconds" in spec and not (
        _is_number(spec["batch_seconds"]) and spec["batch_seconds"] >= 0
    ):
        raise ValueError("batch_seconds must be a number >= 0")
    if "batch_create_status" in spec and not (
        isinstance(spec["batch_create_status"], int)
        and not isinstance(spec["batch_create_status"], bool)
        and 400 <= spec["batch_create_status"] <= 599
    ):
        raise ValueError("batch_create_status must be an int in 400..599")
    for key in ("batch_max_rows", "batch_max_bytes"):
        if key in spec and not (
            isinstance(spec[key], int) and not isinstance(spec[key], bool) and spec[key] >= 1
        ):
            raise ValueError(f"{key} must be an int >= 1")


def _answer_of(spec: dict[str, Any], answer: int) -> dict[str, Any] | None:
    """The ``answers`` entry for answer number ``answer`` (the last one repeats)."""
    answers = spec.get("answers")
    if not answers:
        return None
    return dict(answers[min(max(answer, 1), len(answers)) - 1])


def _tokens_of(spec: dict[str, Any], answer: int = 1) -> list[str]:
    entry = _answer_of(spec, answer)
    if entry is not None:
        text = str(entry.get("text") or "")
        size = int(spec.get("token_size", 1))
        return [text[i : i + size] for i in range(0, len(text), size)]
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


def _last_user_text(body: dict[str, Any]) -> str:
    """The text of the last user message (OpenAI / Anthropic messages, Gemini contents)."""
    turns = body.get("messages") or body.get("contents") or []
    for turn in reversed(turns):
        if isinstance(turn, dict) and turn.get("role") == "user":
            content = turn.get("content", turn.get("parts"))
            if isinstance(content, str):
                return content
            texts = [p.get("text") for p in content or [] if isinstance(p, dict)]
            return "".join(t for t in texts if isinstance(t, str))
    return ""


def _prompt_words(body: dict[str, Any]) -> int:
    total = _content_words(body.get("system"))
    for message in body.get("messages") or []:
        if isinstance(message, dict):
            total += _content_words(message.get("content"))
    system = body.get("systemInstruction")  # Gemini
    for content in [system, *(body.get("contents") or [])]:
        if isinstance(content, dict):
            total += _content_words(content.get("parts"))
    return total


def _decide(state: _State, model: str, body: Any) -> tuple[dict[str, Any], int, int | None, int]:
    """Count a request to ``model`` (call with ``state.lock`` held): its script (a copy),
    its attempt number, the error status it gets (``None``: the normal answer) and, for a
    normal answer, the answer number (for ``texts``; else 0)."""
    spec = dict(state.scripts.get(model, {}))
    attempt = state.attempts.get(model, 0) + 1
    state.attempts[model] = attempt
    status = spec.get("status")
    if "statuses" in spec:
        statuses = spec["statuses"]
        status = statuses[attempt - 1] if attempt <= len(statuses) else 200
        status = None if status == 200 else status
    elif "status_every" in spec:
        status = status if attempt % int(spec["status_every"]) == 0 else None
    elif status is not None:
        served = state.status_served.get(model, 0)
        times = spec.get("status_times")
        if times is not None and served >= int(times):
            status = None
        else:
            state.status_served[model] = served + 1
    rejected = [f for f in spec.get("reject_fields", ()) if isinstance(body, dict) and f in body]
    if status is None and rejected:
        status = int(spec.get("reject_status", 400))
        if "error_message" not in spec:
            spec["error_message"] = f"Unsupported parameter: {rejected[0]!r}"
    answer = 0
    if status is None:
        answer = state.answers.get(model, 0) + 1
        state.answers[model] = answer
    return spec, attempt, status, answer


def _make_ctx(provider: str, spec: dict[str, Any], model: str, body: Any, answer: int) -> _Ctx:
    """What a normal answer to ``body`` says: tokens, usage, finish reason, tool."""
    tokens = _tokens_of(spec, answer)
    if spec.get("echo") and isinstance(body, dict):  # as many tokens as scripted (timing)
        echoed = "echo: " + _last_user_text(body)
        size = -(-len(echoed) // max(1, len(tokens)))
        tokens = [echoed[i : i + size] for i in range(0, len(echoed), size)]
    words = _prompt_words(body) if isinstance(body, dict) else 0
    usage = spec.get("usage") or {}
    prompt_tokens = int(usage.get("input_tokens", words))
    completion_tokens = int(usage.get("output_tokens", len(tokens)))
    finish = spec.get("finish_reason", "stop")
    ctx = _Ctx(model or "fake-default", tokens, prompt_tokens, completion_tokens, finish)
    ctx.cached_tokens = int(usage.get("cached_input_tokens", 0))
    entry = _answer_of(spec, answer)
    if entry is not None and entry.get("tool_calls"):
        ctx.tool_calls = [
            {"name": str(c["name"]), "arguments": str(c.get("arguments") or "{}")}
            for c in entry["tool_calls"]
        ]
        ctx.arguments_size = int(spec.get("token_size", 8)) if "token_size" in spec else 8
    if provider == "anthropic" and isinstance(body, dict) and "answers" not in spec:
        ctx.tool = _tool_name(body)  # a schema as one forced tool call (not with ``answers``)
    ctx.thinking = [str(t) for t in spec.get("thinking") or []]
    ctx.think_format = str(spec.get("think_format", "reasoning_content"))
    ctx.redacted = spec.get("redacted_thinking")
    ctx.signature = str(spec.get("signature", "sig-fake"))
    if provider == "anthropic" and (ctx.thinking or ctx.redacted):
        ctx.text_index = (1 if ctx.thinking else 0) + (1 if ctx.redacted else 0)
    if provider == "openai" and ctx.thinking and ctx.think_format == "tags":
        tagged = "<think>" + "".join(ctx.thinking) + "</think>\n\n" + ctx.text
        ctx.tokens = [tagged[i : i + 3] for i in range(0, len(tagged), 3)]
        ctx.thinking = []
    return ctx


def _retry_headers(spec: dict[str, Any]) -> dict[str, str]:
    return {
        header: str(spec[key])
        for key, header in (("retry_after", "retry-after"), ("retry_after_ms", "retry-after-ms"))
        if key in spec
    }


def _error_payload(provider: str, status: int, message: Any) -> dict[str, Any]:
    """The provider's JSON error body for HTTP ``status``."""
    message = str(message) if message is not None else f"fake error {status}"
    if provider == "gemini":
        code = GEMINI_STATUS.get(status, "INTERNAL" if status >= 500 else "INVALID_ARGUMENT")
        return {"error": {"code": status, "message": message, "status": code}}
    if provider in ("openai", "responses"):
        err_type, code = OPENAI_ERRORS.get(
            status, ("server_error" if status >= 500 else "invalid_request_error", None)
        )
        return {"error": {"message": message, "type": err_type, "param": None, "code": code}}
    err_type = ANTHROPIC_ERRORS.get(
        status, "api_error" if status >= 500 else "invalid_request_error"
    )
    return {
        "type": "error",
        "error": {"type": err_type, "message": message},
        "request_id": "req_fake",
    }


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
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
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
            self._nap(remaining)

    def _nap(self, seconds: float) -> None:
        """Block until the socket has something to say (EOF, reset, data) or ``seconds``
        pass. One blocking poll, not a 10 ms loop: 32 connections waiting at once would
        otherwise wake the server 3,200 times a second and delay every answer."""
        if not hasattr(select, "poll"):  # pragma: no cover - platforms without poll()
            time.sleep(min(POLL_INTERVAL, seconds))
            return
        try:
            poller = select.poll()
            poller.register(self.connection, select.POLLIN)
            events = poller.poll(seconds * 1000)
        except (OSError, ValueError):
            return
        if events and not self._client_gone():  # data from the client, not EOF: no spin
            time.sleep(min(POLL_INTERVAL, seconds))

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
        elif url.path == "/_log" and "batch" in urllib.parse.parse_qs(url.query):
            batch = urllib.parse.parse_qs(url.query)["batch"][0]
            with self.server.state.lock:
                log = self.server.state.batch_log
                records = [r for r in log if batch == "*" or r["batch"] == batch]
                payload = json.loads(json.dumps(records))
            self._send_json(200, payload)
        elif url.path == "/_log":
            query = urllib.parse.parse_qs(url.query)
            model = query.get("model", [None])[0]
            with self.server.state.lock:
                records = [r for r in self.server.state.log if model is None or r["model"] == model]
                payload = json.loads(json.dumps(records))
            self._send_json(200, payload)
        elif url.path == "/_batches" or url.path.startswith("/_batches/"):
            self._control_batches("GET", url.path)
        elif not self._batch_route("GET", url.path, b""):
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
                name = spec.pop("name", None) or f"fake-{next(state.counter)}-{os.urandom(4).hex()}"
                state.scripts[name] = spec
            self._send_json(200, {"model": name})
        elif url.path == "/v1/responses/input_tokens" or url.path.endswith(":countTokens"):
            self._count_tokens(url.path, raw)  # OpenAI's and Gemini's token counting
        elif url.path in (
            "/v1/chat/completions",
            "/v1/messages",
            "/v1/responses",
        ) or GEMINI_PATH.match(url.path):
            self._llm(url.path, raw)
        elif url.path == "/v1/messages/count_tokens":  # Anthropic's token counting
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {}
            with self.server.state.lock:
                self.server.state.log.append(
                    {"path": url.path, "model": body.get("model"), "body": body}
                )
            self._send_json(200, {"input_tokens": _prompt_words(body) * 4 // 3 + 3})
        elif url.path.startswith("/_batches/"):
            self._control_batches("POST", url.path)
        elif not self._batch_route("POST", url.path, raw):
            self._not_found(url.path)

    def _count_tokens(self, path: str, raw: bytes) -> None:
        """``POST /v1/responses/input_tokens`` (OpenAI) and ``models/M:countTokens`` (Gemini):
        the prompt's words × 4/3 + 3, as Anthropic's ``count_tokens`` here; logged."""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        words = _prompt_words(body) + _content_words(body.get("instructions"))
        for item in body.get("input") or []:
            if isinstance(item, dict):
                words += _content_words(item.get("content"))
        tokens = words * 4 // 3 + 3
        model = body.get("model") or path.rpartition("/")[2].partition(":")[0]
        with self.server.state.lock:
            self.server.state.log.append({"path": path, "model": model, "body": body})
        if path.endswith(":countTokens"):
            self._send_json(200, {"totalTokens": tokens})
        else:
            self._send_json(200, {"object": "response.input_tokens", "input_tokens": tokens})

    def _llm(self, path: str, raw: bytes) -> None:
        provider = {"/v1/chat/completions": "openai", "/v1/responses": "responses"}.get(
            path, "anthropic"
        )
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = raw.decode("utf-8", "replace")
        model = body.get("model") if isinstance(body, dict) else None
        model = model if isinstance(model, str) else ""
        stream = bool(body.get("stream")) if isinstance(body, dict) else False
        gemini = GEMINI_PATH.match(path)
        if gemini:
            provider, model = "gemini", urllib.parse.unquote(gemini["model"])
            stream = gemini["method"] == "streamGenerateContent"
        headers = {
            k.lower(): ("<redacted>" if k.lower() in REDACTED_HEADERS else v)
            for k, v in self.headers.items()
        }
        state = self.server.state
        with state.lock:
            spec, attempt, status, answer = _decide(state, model, body)
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
                "finished_at": None,
                "client_disconnected": False,
                "disconnected_at": None,
            }
            state.log.append(record)

        try:
            self._wait(float(spec.get("headers_delay", 0)), record)
        except ClientGone:
            return
        if status is not None:
            self._error(
                provider, int(status), spec.get("error_message"), record, _retry_headers(spec)
            )
            return
        ctx = _make_ctx(provider, spec, model, body, answer)
        tokens = ctx.tokens
        try:
            if not stream:  # a whole answer takes as long as its stream would
                pause = float(spec.get("delay", 0)) * len(tokens)
                self._wait(float(spec.get("first_delay", 0)) + pause, record)
                if provider == "openai":
                    payload = _openai_completion(ctx)
                elif provider == "gemini":
                    payload = _gemini_chunk(ctx, ctx.text, final=True)
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
        payload = _error_payload(provider, status, message)
        try:
            self._send_json(status, payload, {**_id_headers(provider), **(extra_headers or {})})
        except OSError:
            self._mark_gone(record)
            self.close_connection = True
            return
        with self.server.state.lock:
            record["completed"] = True

    # ---------------------------------------------------------------- batch services

    def _base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _batch_reply(
        self,
        status: int,
        payload: Any,
        *,
        batch: str | None = None,
        file: str | None = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer a batch-service request and log it (see ``GET /_log?batch=ID``)."""
        state = self.server.state
        with state.lock:
            if batch is None and file is not None and file in state.files:
                batch = state.files[file]["batch"]
            state.batch_log.append(
                {
                    "path": urllib.parse.urlsplit(self.path).path,
                    "method": self.command,
                    "status": status,
                    "received_at": self.received_at,
                    "batch": batch,
                    "file": file,
                }
            )
        if raw is None:
            self._send_json(status, payload, headers)
            return
        self.send_response(status)
        for key, value in {"content-type": "application/octet-stream", **(headers or {})}.items():
            self.send_header(key, value)
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _batch_error(
        self,
        provider: str,
        status: int,
        message: str,
        *,
        batch: str | None = None,
        file: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        payload = _error_payload(provider, status, message)
        headers = {**_id_headers(provider), **(headers or {})}
        self._batch_reply(status, payload, batch=batch, file=file, headers=headers)

    def _create_failure(self, provider: str, model: Any) -> bool:
        """``batch_create_status`` of the first row's script: answer that error, True."""
        with self.server.state.lock:
            spec = dict(self.server.state.scripts.get(model, {})) if isinstance(model, str) else {}
        if "batch_create_status" not in spec:
            return False
        status = int(spec["batch_create_status"])
        message = str(spec.get("error_message") or f"fake error {status}")
        self._batch_error(provider, status, message, headers=_retry_headers(spec))
        return True

    def _over_limit(self, provider: str, model: Any, rows: int | None, size: int | None) -> bool:
        """``batch_max_rows`` / ``batch_max_bytes`` of the first row's script (else the
        service's real limits): answer the service's error when over them, True."""
        with self.server.state.lock:
            spec = dict(self.server.state.scripts.get(model, {})) if isinstance(model, str) else {}
        real_rows, real_bytes = BATCH_LIMITS[provider]
        most_rows = int(spec.get("batch_max_rows", real_rows))
        most_bytes = int(spec.get("batch_max_bytes", real_bytes))
        if size is not None and size > most_bytes:
            status = 413 if provider == "anthropic" else 400
            what = "request" if provider == "anthropic" else "batch input file"
            message = f"The {what} is {size} bytes; the maximum is {most_bytes} bytes."
            self._batch_error(provider, status, message)
            return True
        if rows is not None and rows > most_rows:
            message = f"A batch may contain at most {most_rows} requests, got {rows}."
            self._batch_error(provider, 400, message)
            return True
        return False

    def _batch_route(self, method: str, path: str, raw: bytes) -> bool:
        """Serve a batch-service endpoint; False if ``path`` is not one."""
        parts = path.strip("/").split("/")
        if parts[:3] == ["v1", "messages", "batches"]:
            rest = parts[3:]
            if method == "POST" and not rest:
                self._anthropic_create(raw)
            elif method == "GET" and len(rest) == 1:
                self._batch_get("anthropic", rest[0])
            elif method == "POST" and rest[1:] == ["cancel"]:
                self._batch_cancel("anthropic", rest[0])
            elif method == "GET" and rest[1:] == ["results"]:
                self._anthropic_results(rest[0])
            else:
                self._batch_error("anthropic", 404, f"no route {method} {path}")
            return True
        if parts[:2] == ["v1", "batches"]:
            rest = parts[2:]
            if method == "POST" and not rest:
                self._openai_create(raw)
            elif method == "GET" and len(rest) == 1:
                self._batch_get("openai", rest[0])
            elif method == "POST" and rest[1:] == ["cancel"]:
                self._batch_cancel("openai", rest[0])
            else:
                self._batch_error("openai", 404, f"no route {method} {path}")
            return True
        if parts[:2] == ["v1", "files"]:
            rest = parts[2:]
            if method == "POST" and not rest:
                self._file_upload(raw)
            elif method == "GET" and len(rest) == 1:
                self._file_get(rest[0], content=False)
            elif method == "GET" and rest[1:] == ["content"]:
                self._file_get(rest[0], content=True)
            else:
                self._batch_error("openai", 404, f"no route {method} {path}")
            return True
        return False

    def _json_object(self, provider: str, raw: bytes) -> dict[str, Any] | None:
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._batch_error(provider, 400, "The request body is not a JSON object.")
            return None
        return body

    def _file_upload(self, raw: bytes) -> None:
        try:
            fields = _multipart(self.headers.get("content-type", ""), raw)
        except ValueError as exc:
            self._batch_error("openai", 400, f"Invalid multipart body: {exc}")
            return
        for name in ("purpose", "file"):
            if name not in fields:
                self._batch_error("openai", 400, f"Missing required parameter: '{name}'.")
                return
        purpose = fields["purpose"][1].decode("utf-8", "replace")
        filename, content = fields["file"]
        filename = filename or "upload"
        if purpose not in FILE_PURPOSES:
            self._batch_error("openai", 400, f"Invalid purpose {purpose!r}.")
            return
        if purpose == "batch" and not filename.endswith(".jsonl"):
            self._batch_error("openai", 400, "Invalid file format for Batch API. Must be .jsonl")
            return
        if purpose == "batch":
            first_line = content.split(b"\n", 1)[0]
            try:
                first_model = json.loads(first_line)["body"]["model"]
            except (ValueError, KeyError, TypeError):
                first_model = None
            if self._over_limit("openai", first_model, None, len(content)):
                return
        with self.server.state.lock:
            obj = _add_file(self.server.state, filename, purpose, content)
        self._batch_reply(200, obj, file=obj["id"])

    def _file_get(self, file_id: str, *, content: bool) -> None:
        with self.server.state.lock:
            stored = self.server.state.files.get(file_id)
            stored = dict(stored) if stored is not None else None
        if stored is None:
            self._batch_error("openai", 404, f"No such File object: {file_id}", file=file_id)
        elif content:
            self._batch_reply(200, None, file=file_id, raw=stored["content"])
        else:
            self._batch_reply(200, stored["object"], file=file_id)

    def _openai_create(self, raw: bytes) -> None:
        body = self._json_object("openai", raw)
        if body is None:
            return
        state = self.server.state
        file_id = body.get("input_file_id")
        with state.lock:
            stored = state.files.get(file_id) if isinstance(file_id, str) else None
            content = stored["content"] if stored is not None else b""
        if stored is None:
            self._batch_error("openai", 404, f"No such File object: {file_id}", file=file_id)
            return
        endpoint = body.get("endpoint")
        if endpoint not in OPENAI_ENDPOINTS:
            message = f"Invalid endpoint {endpoint!r}: this fake serves {OPENAI_ENDPOINTS}."
            self._batch_error("openai", 400, message)
            return
        if body.get("completion_window") != "24h":
            self._batch_error("openai", 400, "Invalid completion_window: only '24h' is supported.")
            return
        metadata = body.get("metadata")
        if metadata is not None and not (
            isinstance(metadata, dict)
            and len(metadata) <= 16
            and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
        ):
            self._batch_error("openai", 400, "metadata must map up to 16 strings to strings.")
            return
        rows, _ = _openai_rows(content, str(endpoint))
        if rows and self._create_failure("openai", rows[0]["model"]):
            return
        if rows and self._over_limit("openai", rows[0]["model"], len(rows), None):
            return
        created = int(time.time())
        batch_id = _new_id("batch_")
        obj: dict[str, Any] = {
            "id": batch_id,
            "object": "batch",
            "endpoint": endpoint,
            "model": None,
            "errors": None,
            "input_file_id": file_id,
            "completion_window": "24h",
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": created,
            "in_progress_at": None,
            "expires_at": created + DAY,
            "finalizing_at": None,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "cancelling_at": None,
            "cancelled_at": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "metadata": metadata,
        }
        batch = _Batch("openai", batch_id, obj)
        with state.lock:
            state.batches[batch_id] = batch
            state.files[str(file_id)]["batch"] = batch_id
            for record in state.batch_log:
                if record["file"] == file_id:
                    record["batch"] = batch_id
            snapshot = json.loads(json.dumps(obj))
        _start_worker(_openai_worker, state, batch)
        self._batch_reply(200, snapshot, batch=batch_id)

    def _anthropic_create(self, raw: bytes) -> None:
        body = self._json_object("anthropic", raw)
        if body is None:
            return
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            self._batch_error("anthropic", 400, "requests: a non-empty list is required")
            return
        rows: list[dict[str, Any]] = []
        for i, item in enumerate(requests):
            problem = None
            params = item.get("params") if isinstance(item, dict) else None
            custom_id = item.get("custom_id") if isinstance(item, dict) else None
            if not isinstance(custom_id, str) or not CUSTOM_ID.match(custom_id):
                problem = "custom_id: must match ^[a-zA-Z0-9_-]{1,64}$"
            elif any(row["custom_id"] == custom_id for row in rows):
                problem = f"custom_id: {custom_id!r} is not unique"
            elif not isinstance(params, dict) or not isinstance(params.get("model"), str):
                problem = "params.model: Field required"
            elif not isinstance(params.get("max_tokens"), int):
                problem = "params.max_tokens: Field required"
            elif not isinstance(params.get("messages"), list):
                problem = "params.messages: Field required"
            elif params.get("stream"):
                problem = "params.stream: streaming is not supported in batches"
            if problem is not None:
                self._batch_error("anthropic", 400, f"requests.{i}.{problem}")
                return
            assert isinstance(params, dict)
            rows.append({"custom_id": custom_id, "model": params["model"], "body": params})
        if self._create_failure("anthropic", rows[0]["model"]):
            return
        if self._over_limit("anthropic", rows[0]["model"], len(rows), len(raw)):
            return
        created = time.time()
        batch_id = _new_id("msgbatch_")
        obj: dict[str, Any] = {
            "id": batch_id,
            "type": "message_batch",
            "processing_status": "in_progress",
            "request_counts": {
                "processing": len(rows),
                "succeeded": 0,
                "errored": 0,
                "canceled": 0,
                "expired": 0,
            },
            "created_at": _rfc3339(created),
            "expires_at": _rfc3339(created + DAY),
            "ended_at": None,
            "cancel_initiated_at": None,
            "archived_at": None,
            "results_url": None,
        }
        batch = _Batch("anthropic", batch_id, obj)
        batch.set_rows(rows)
        state = self.server.state
        with state.lock:
            state.batches[batch_id] = batch
            snapshot = json.loads(json.dumps(obj))
        _start_worker(_anthropic_worker, state, batch, self._base_url())
        self._batch_reply(200, snapshot, batch=batch_id)

    def _find_batch(self, provider: str, batch_id: str) -> _Batch | None:
        with self.server.state.lock:
            batch = self.server.state.batches.get(batch_id)
        if batch is None or batch.provider != provider:
            message = (
                f"No batch found with id '{batch_id}'."
                if provider == "openai"
                else f"message_batch {batch_id!r} not found"
            )
            self._batch_error(provider, 404, message, batch=batch_id)
            return None
        return batch

    def _batch_get(self, provider: str, batch_id: str) -> None:
        batch = self._find_batch(provider, batch_id)
        if batch is None:
            return
        with self.server.state.lock:
            snapshot = json.loads(json.dumps(batch.obj))
        self._batch_reply(200, snapshot, batch=batch_id)

    def _batch_cancel(self, provider: str, batch_id: str) -> None:
        batch = self._find_batch(provider, batch_id)
        if batch is None:
            return
        conflict = None
        with self.server.state.lock:
            if provider == "openai":
                status = batch.obj["status"]
                if status in ("validating", "in_progress", "finalizing"):
                    batch.stop = "cancel"
                    batch.obj.update(status="cancelling", cancelling_at=int(time.time()))
                elif status != "cancelling":
                    conflict = f"Cannot cancel a batch with status '{status}'."
            elif batch.obj["processing_status"] == "in_progress":
                batch.stop = "cancel"
                batch.obj.update(
                    processing_status="canceling", cancel_initiated_at=_rfc3339(time.time())
                )
            snapshot = json.loads(json.dumps(batch.obj))
        if conflict is not None:
            self._batch_error("openai", 400, conflict, batch=batch_id)
            return
        self._batch_reply(200, snapshot, batch=batch_id)

    def _anthropic_results(self, batch_id: str) -> None:
        batch = self._find_batch("anthropic", batch_id)
        if batch is None:
            return
        with self.server.state.lock:
            ended = batch.obj["processing_status"] == "ended"
            results = batch.results
        if not ended:
            message = f"message_batch {batch_id!r} has not ended yet: no results"
            self._batch_error("anthropic", 400, message, batch=batch_id)
            return
        headers = {"content-type": "application/x-jsonl", **_id_headers("anthropic")}
        self._batch_reply(200, None, batch=batch_id, raw=results, headers=headers)

    def _control_batches(self, method: str, path: str) -> None:
        """``GET /_batches``, ``GET /_batches/ID``, ``POST /_batches/ID/expire``."""
        state = self.server.state
        parts = path.strip("/").split("/")[1:]
        with state.lock:
            if not parts and method == "GET":
                payload: Any = [b.view() for b in state.batches.values()]
                self._send_json(200, json.loads(json.dumps(payload)))
                return
            batch = state.batches.get(parts[0]) if parts else None
            if batch is None:
                self._send_json(404, {"error": f"no batch {parts[:1]}"})
                return
            if method == "GET" and len(parts) == 1:
                payload = batch.view()
                payload["requests"] = [r for r in state.batch_log if r["batch"] == batch.id]
            elif method == "POST" and parts[1:] == ["expire"]:
                if batch.stop is None and not batch.finished:
                    batch.stop = "expire"
                payload = {"ok": True, "stop": batch.stop}
            else:
                self._send_json(404, {"error": f"no route {method} {path}"})
                return
            payload = json.loads(json.dumps(payload))
        self._send_json(200, payload)

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
        events: _OpenAIEvents | _AnthropicEvents | _GeminiEvents | _ResponsesEvents
        if provider == "openai":
            events = _OpenAIEvents(ctx, include_usage)
        elif provider == "responses":
            events = _ResponsesEvents(ctx)
        elif provider == "gemini":
            events = _GeminiEvents(ctx)
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
            if not data:  # (Gemini has no preamble; an empty chunk would end the body)
                return
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
        for k, piece in enumerate(ctx.thinking):
            if k > 0:
                self._wait(delay, record)
            send(events.thinking(piece))
            with state.lock:
                record["thinking_sent"] = k + 1
        if ctx.thinking or ctx.redacted:
            send(events.after_thinking())
            if ctx.tokens:
                self._wait(delay, record)
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
            record["finished_at"] = time.time()


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
        self.tool_calls: list[dict[str, str]] = []
        """Calls this answer asks for (``answers``): name and arguments (JSON text)."""
        self.arguments_size = 8
        self.thinking: list[str] = []
        self.think_format = "reasoning_content"
        self.redacted: str | None = None
        self.signature = "sig-fake"
        self.text_index = 0
        """Anthropic: the text block's index (after the thinking blocks)."""


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
    if provider == "gemini":
        return {"x-gemini-service-tier": "standard"}
    if provider in ("openai", "responses"):
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

    def thinking(self, piece: str) -> bytes:
        return _sse(self._chunk({self.ctx.think_format: piece}, None))

    def after_thinking(self) -> bytes:
        return b""

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
        out = b""
        size = self.ctx.arguments_size
        for i, call in enumerate(self.ctx.tool_calls):
            head = {"index": i, "id": f"call_{i}", "type": "function"}
            head["function"] = {"name": call["name"], "arguments": ""}
            out += _sse(self._chunk({"tool_calls": [head]}, None))
            arguments = call["arguments"]
            for k in range(0, len(arguments), size):
                piece = {"index": i, "function": {"arguments": arguments[k : k + size]}}
                out += _sse(self._chunk({"tool_calls": [piece]}, None))
        finish = "tool_calls" if self.ctx.tool_calls else self.ctx.finish
        out += _sse(self._chunk({}, finish))
        if self.include_usage:
            p, c = self.ctx.prompt_tokens, self.ctx.completion_tokens
            chunk = self._chunk({}, None)
            chunk["choices"] = []
            chunk["usage"] = {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
            if self.ctx.cached_tokens:
                chunk["usage"]["prompt_tokens_details"] = {"cached_tokens": self.ctx.cached_tokens}
            if self.ctx.thinking:
                thought = {"reasoning_tokens": len(self.ctx.thinking)}
                chunk["usage"]["completion_tokens_details"] = thought
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
        start = _sse({"type": "message_start", "message": message}, "message_start")
        if self.ctx.text_index == 0:
            return (
                start
                + _sse(
                    {"type": "content_block_start", "index": 0, "content_block": self._block()},
                    "content_block_start",
                )
                + _sse({"type": "ping"}, "ping")
            )
        index = 0
        if self.ctx.redacted:
            block = {"type": "redacted_thinking", "data": self.ctx.redacted}
            start += _sse(
                {"type": "content_block_start", "index": 0, "content_block": block},
                "content_block_start",
            ) + _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
            index = 1
        if self.ctx.thinking:
            block = {"type": "thinking", "thinking": "", "signature": ""}
            start += _sse(
                {"type": "content_block_start", "index": index, "content_block": block},
                "content_block_start",
            )
        return start + _sse({"type": "ping"}, "ping")

    def thinking(self, piece: str) -> bytes:
        delta = {"type": "thinking_delta", "thinking": piece}
        index = self.ctx.text_index - 1
        return _sse({"type": "content_block_delta", "index": index, "delta": delta},
                    "content_block_delta")  # fmt: skip

    def after_thinking(self) -> bytes:
        out = b""
        if self.ctx.thinking:
            index = self.ctx.text_index - 1
            delta = {"type": "signature_delta", "signature": self.ctx.signature}
            out += _sse({"type": "content_block_delta", "index": index, "delta": delta},
                        "content_block_delta")  # fmt: skip
            out += _sse({"type": "content_block_stop", "index": index}, "content_block_stop")
        text = {"type": "content_block_start", "index": self.ctx.text_index,
                "content_block": self._block()}  # fmt: skip
        return out + _sse(text, "content_block_start")

    def _block(self) -> dict[str, Any]:
        if self.ctx.tool is None:
            return {"type": "text", "text": ""}
        return {"type": "tool_use", "id": "toolu_fake", "name": self.ctx.tool, "input": {}}

    def token(self, token: str) -> bytes:
        delta: dict[str, Any] = {"type": "text_delta", "text": token}
        if self.ctx.tool is not None:
            delta = {"type": "input_json_delta", "partial_json": token}
        event = {"type": "content_block_delta", "index": self.ctx.text_index, "delta": delta}
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
        calls = b""
        size = self.ctx.arguments_size
        for i, call in enumerate(self.ctx.tool_calls, start=self.ctx.text_index + 1):
            block = {"type": "tool_use", "id": f"toolu_{i}", "name": call["name"], "input": {}}
            start = {"type": "content_block_start", "index": i, "content_block": block}
            calls += _sse(start, "content_block_start")
            arguments = call["arguments"]
            for k in range(0, len(arguments), size):
                delta = {"type": "input_json_delta", "partial_json": arguments[k : k + size]}
                event = {"type": "content_block_delta", "index": i, "delta": delta}
                calls += _sse(event, "content_block_delta")
            calls += _sse({"type": "content_block_stop", "index": i}, "content_block_stop")
        if self.ctx.tool_calls:
            stop = "tool_use"
        return (
            _sse({"type": "content_block_stop", "index": self.ctx.text_index}, "content_block_stop")
            + calls
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


class _ResponsesEvents:
    """OpenAI's Responses API stream: named events (``response.created`` …
    ``response.output_text.delta`` … ``response.completed``), each data a JSON object with
    its ``type`` and a ``sequence_number``; thinking as reasoning-summary deltas of a
    ``reasoning`` item; calls as ``function_call`` items with streamed arguments."""

    def __init__(self, ctx: _Ctx) -> None:
        self.ctx = ctx
        self.seq = 0
        self.reasoning_open = False

    def _event(self, kind: str, **data: Any) -> bytes:
        self.seq += 1
        return _sse({"type": kind, "sequence_number": self.seq, **data}, kind)

    def _response(self, status: str) -> dict[str, Any]:
        return {"id": "resp_fake", "object": "response", "model": self.ctx.model,
                "status": status, "output": []}  # fmt: skip

    def preamble(self) -> bytes:
        return self._event("response.created", response=self._response("in_progress"))

    def _message_start(self) -> bytes:
        item = {"id": "msg_fake", "type": "message", "role": "assistant", "status": "in_progress",
                "content": []}  # fmt: skip
        index = 1 if self.reasoning_open else 0
        return self._event("response.output_item.added", output_index=index, item=item)

    def thinking(self, piece: str) -> bytes:
        out = b""
        if not self.reasoning_open:
            self.reasoning_open = True
            item = {"id": "rs_fake", "type": "reasoning", "summary": []}
            out += self._event("response.output_item.added", output_index=0, item=item)
        return out + self._event(
            "response.reasoning_summary_text.delta",
            item_id="rs_fake", output_index=0, summary_index=0, delta=piece,
        )  # fmt: skip

    def after_thinking(self) -> bytes:
        return self._message_start()

    def token(self, token: str) -> bytes:
        out = b""
        if self.seq == 1:  # the first token: the message item starts
            out += self._message_start()
        index = 1 if self.reasoning_open else 0
        return out + self._event(
            "response.output_text.delta",
            item_id="msg_fake", output_index=index, content_index=0, delta=token,
        )  # fmt: skip

    def malformed(self) -> bytes:
        return b"event: response.output_text.delta\ndata: {not json\n\n"

    def invalid_utf8(self) -> bytes:
        return _with_invalid_utf8(self.token)

    def error(self, err_type: str | None, message: Any) -> bytes:
        default_type, default_message = OPENAI_STREAM_ERROR
        return self._event(
            "error",
            code=err_type or default_type,
            message=default_message if message is None else str(message),
            param=None,
        )

    def terminal(self) -> bytes:
        out = b""
        first = 1 + (1 if self.reasoning_open else 0)
        size = self.ctx.arguments_size
        for i, call in enumerate(self.ctx.tool_calls):
            index = first + i
            item = {"id": f"fc_{i}", "type": "function_call", "call_id": f"call_{i}",
                    "name": call["name"], "arguments": "", "status": "in_progress"}  # fmt: skip
            out += self._event("response.output_item.added", output_index=index, item=item)
            arguments = call["arguments"]
            for k in range(0, len(arguments), size):
                out += self._event(
                    "response.function_call_arguments.delta",
                    item_id=f"fc_{i}", output_index=index, delta=arguments[k : k + size],
                )  # fmt: skip
            done = {**item, "arguments": arguments, "status": "completed"}
            out += self._event("response.output_item.done", output_index=index, item=done)
        p, c = self.ctx.prompt_tokens, self.ctx.completion_tokens
        response = self._response("completed")
        response["usage"] = {
            "input_tokens": p,
            "input_tokens_details": {"cached_tokens": self.ctx.cached_tokens},
            "output_tokens": c,
            "output_tokens_details": {"reasoning_tokens": len(self.ctx.thinking)},
            "total_tokens": p + c,
        }
        if self.ctx.finish == "length":
            response["status"] = "incomplete"
            response["incomplete_details"] = {"reason": "max_output_tokens"}
            return out + self._event("response.incomplete", response=response)
        return out + self._event("response.completed", response=response)


class _GeminiEvents:
    """Gemini's stream: one ``GenerateContentResponse`` per chunk, no preamble; the last
    chunk has ``finishReason`` and the usage."""

    def __init__(self, ctx: _Ctx) -> None:
        self.ctx = ctx

    def preamble(self) -> bytes:
        return b""

    def token(self, token: str) -> bytes:
        return _sse(_gemini_chunk(self.ctx, token, final=False))

    def thinking(self, piece: str) -> bytes:
        chunk = _gemini_chunk(self.ctx, piece, final=False)
        chunk["candidates"][0]["content"]["parts"][0]["thought"] = True
        return _sse(chunk)

    def after_thinking(self) -> bytes:
        return b""

    def malformed(self) -> bytes:
        return b"data: {not json\n\n"

    def invalid_utf8(self) -> bytes:
        return _with_invalid_utf8(self.token)

    def error(self, err_type: str | None, message: Any) -> bytes:
        default_status, default_message = GEMINI_STREAM_ERROR
        error = {
            "code": 503,
            "message": default_message if message is None else str(message),
            "status": err_type or default_status,
        }
        return _sse({"error": error})

    def terminal(self) -> bytes:
        calls = b""
        if self.ctx.tool_calls:  # Gemini sends each call whole, in one part
            parts = [
                {"functionCall": {"name": c["name"], "args": json.loads(c["arguments"] or "{}")}}
                for c in self.ctx.tool_calls
            ]
            chunk = _gemini_chunk(self.ctx, "", final=False)
            chunk["candidates"][0]["content"]["parts"] = parts
            calls = _sse(chunk)
        return calls + _sse(_gemini_chunk(self.ctx, "", final=True))


def _gemini_chunk(ctx: _Ctx, text: str, *, final: bool) -> dict[str, Any]:
    """A ``GenerateContentResponse``: ``text`` as the one part; with ``final``, the finish
    reason and the usage."""
    candidate: dict[str, Any] = {
        "content": {"parts": [{"text": text}], "role": "model"},
        "index": 0,
    }
    chunk: dict[str, Any] = {
        "candidates": [candidate],
        "modelVersion": ctx.model,
        "responseId": "fake",
    }
    if final:
        candidate["finishReason"] = GEMINI_FINISH.get(ctx.finish, ctx.finish)
        p, c = ctx.prompt_tokens, ctx.completion_tokens
        usage = {"promptTokenCount": p, "candidatesTokenCount": c, "totalTokenCount": p + c}
        if ctx.cached_tokens:
            usage["cachedContentTokenCount"] = ctx.cached_tokens
        if ctx.thinking:
            usage["thoughtsTokenCount"] = len(ctx.thinking)
        chunk["usageMetadata"] = usage
    return chunk


def _openai_completion(ctx: _Ctx) -> dict[str, Any]:
    p, c = ctx.prompt_tokens, ctx.completion_tokens
    usage: dict[str, Any] = {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
    if ctx.cached_tokens:
        usage["prompt_tokens_details"] = {"cached_tokens": ctx.cached_tokens}
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
        "usage": usage,
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
    usage: dict[str, Any] = {
        "input_tokens": ctx.prompt_tokens - ctx.cached_tokens,
        "output_tokens": ctx.completion_tokens,
    }
    if ctx.cached_tokens:
        usage["cache_read_input_tokens"] = ctx.cached_tokens
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": ctx.model,
        "content": [content],
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage,
    }


# --------------------------------------------------------------------------- batch services

BATCH_SECONDS = 0.01
DAY = 86400
OPENAI_ENDPOINTS = ("/v1/chat/completions",)
BATCH_LIMITS = {"openai": (50_000, 200 * 1024 * 1024), "anthropic": (100_000, 256_000_000)}
"""Requests and bytes one batch may hold (scaled down per model: ``batch_max_rows``/``_bytes``)."""
FILE_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
EXPIRED_MESSAGE = (
    "This request could not be executed before the completion window for this batch expired."
)


def _new_id(prefix: str) -> str:
    return prefix + os.urandom(12).hex()


def _rfc3339(when: float | None) -> str | None:
    if when is None:
        return None
    moment = datetime.datetime.fromtimestamp(when, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """The fields of a ``multipart/form-data`` body: name -> (filename or None, bytes)."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not content_type.lower().startswith("multipart/form-data") or match is None:
        raise ValueError("expected a multipart/form-data body with a boundary")
    delimiter = b"--" + match.group(1).encode("latin-1")
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in body.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        part = part.removeprefix(b"\r\n")
        head, sep, content = part.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("malformed multipart part")
        content = content.removesuffix(b"\r\n")
        disposition = ""
        for line in head.decode("utf-8", "replace").split("\r\n"):
            key, _, value = line.partition(":")
            if key.strip().lower() == "content-disposition":
                disposition = value
        name = re.search(r'(?<![a-z*])name="([^"]*)"', disposition)
        filename = re.search(r'filename="([^"]*)"', disposition)
        if name is None:
            raise ValueError("multipart part without a name")
        fields[name.group(1)] = (filename.group(1) if filename else None, content)
    return fields


class _Batch:
    """One batch job: its rows, what the worker did with each, and the provider's object."""

    def __init__(self, provider: str, batch_id: str, obj: dict[str, Any]) -> None:
        self.provider = provider
        self.id = batch_id
        self.obj = obj
        """The provider's batch object, as answered (kept up to date by the worker)."""
        self.rows: list[dict[str, Any]] = []
        """``custom_id``, ``model``, ``body`` (the request body the row stands for)."""
        self.states: list[str] = []
        """Per row: pending, running, succeeded, errored, canceled, expired."""
        self.lines: list[dict[str, Any] | None] = []
        """Per row: its output line once the worker ran it (or gave up on it)."""
        self.stop: str | None = None
        """``"cancel"`` or ``"expire"`` once asked; the worker stops at the next row."""
        self.finished = False
        self.results = b""
        """Anthropic: the results JSONL, once ended."""
        self.crash: str | None = None

    def set_rows(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.states = ["pending"] * len(rows)
        self.lines = [None] * len(rows)

    def view(self) -> dict[str, Any]:
        """The server's side of the batch (for ``GET /_batches/ID``)."""
        return {
            "id": self.id,
            "provider": self.provider,
            "status": self.obj.get("status") or self.obj.get("processing_status"),
            "total": len(self.rows),
            "done": sum(s in ("succeeded", "errored") for s in self.states),
            "rows": [
                {
                    "custom_id": row["custom_id"],
                    "model": row["model"],
                    "state": state,
                    "status_code": _line_status(line),
                }
                for row, state, line in zip(self.rows, self.states, self.lines, strict=True)
            ],
            "stop": self.stop,
            "finished": self.finished,
            "crash": self.crash,
            "object": self.obj,
        }


def _line_status(line: dict[str, Any] | None) -> int | None:
    if line is None:
        return None
    response = line.get("response")
    if isinstance(response, dict):
        return int(response["status_code"])
    result = line.get("result")
    if isinstance(result, dict):
        return 200 if result.get("type") == "succeeded" else None
    return None


def _openai_rows(
    content: bytes, endpoint: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows of an OpenAI batch input file, and the validation errors (as the batch's
    ``errors.data``)."""
    rows: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()

    def error(code: str, message: str, line: int, param: str | None = None) -> None:
        errors.append({"code": code, "message": message, "param": param, "line": line})

    for number, raw in enumerate(content.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except ValueError:
            error("invalid_json_line", f"Line {number} is not valid JSON.", number)
            continue
        if not isinstance(item, dict):
            error("invalid_request", f"Line {number} is not a JSON object.", number)
            continue
        custom_id = item.get("custom_id")
        body = item.get("body")
        if not isinstance(custom_id, str) or not custom_id:
            error("missing_required_parameter", "custom_id is missing.", number, "custom_id")
        elif custom_id in seen:
            error("duplicate_custom_id", f"custom_id {custom_id!r} is not unique.", number)
        elif item.get("method") != "POST":
            error("invalid_method", "Only POST is supported.", number, "method")
        elif item.get("url") != endpoint:
            error(
                "mismatched_endpoint",
                f"The url {item.get('url')!r} does not match the batch endpoint {endpoint}.",
                number,
                "url",
            )
        elif not isinstance(body, dict) or not isinstance(body.get("model"), str):
            error("missing_required_parameter", "body.model is missing.", number, "body.model")
        elif body.get("stream"):
            error("invalid_request", "Streaming is not supported in batches.", number, "stream")
        else:
            seen.add(custom_id)
            rows.append({"custom_id": custom_id, "model": body["model"], "body": body})
    if not rows and not errors:
        error("empty_file", "The input file has no requests.", 0)
    return rows, errors


def _pause(batch: _Batch, seconds: float) -> bool:
    """Sleep ``seconds``; False as soon as the batch is asked to stop."""
    deadline = time.monotonic() + max(0.0, seconds)
    while batch.stop is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return True
        time.sleep(min(POLL_INTERVAL, remaining))
    return False


def _run_rows(state: _State, batch: _Batch) -> None:
    """Answer the rows one after another, ``batch_seconds`` each, until done or stopped."""
    for i, row in enumerate(batch.rows):
        with state.lock:
            if batch.stop is not None:
                return
            seconds = float(state.scripts.get(row["model"], {}).get("batch_seconds", BATCH_SECONDS))
            batch.states[i] = "running"
        if not _pause(batch, seconds):
            with state.lock:
                batch.states[i] = "pending"
            return
        body = row["body"]
        with state.lock:
            spec, attempt, status, answer = _decide(state, row["model"], body)
            now = time.time()
            path = "/v1/chat/completions" if batch.provider == "openai" else "/v1/messages"
            record: dict[str, Any] = {
                "path": path,
                "model": row["model"],
                "body": body,
                "headers": {},
                "stream": False,
                "status": int(status) if status is not None else 200,
                "attempt": attempt,
                "received_at": now,
                "started": now,
                "tokens_sent": 0,
                "completed": True,
                "client_disconnected": False,
                "disconnected_at": None,
                "batch": batch.id,
                "custom_id": row["custom_id"],
            }
            state.log.append(record)
            line: dict[str, Any]
            if status is not None:
                error = _error_payload(batch.provider, int(status), spec.get("error_message"))
                if batch.provider == "openai":
                    line = _openai_line(row["custom_id"], int(status), error)
                else:
                    line = {
                        "custom_id": row["custom_id"],
                        "result": {
                            "type": "errored",
                            "error": {"type": "error", "error": error["error"]},
                        },
                    }
                batch.states[i] = "errored"
            else:
                ctx = _make_ctx(batch.provider, spec, row["model"], body, answer)
                record["tokens_sent"] = len(ctx.tokens)
                if batch.provider == "openai":
                    line = _openai_line(row["custom_id"], 200, _openai_completion(ctx))
                else:
                    line = {
                        "custom_id": row["custom_id"],
                        "result": {"type": "succeeded", "message": _anthropic_message(ctx)},
                    }
                batch.states[i] = "succeeded"
            batch.lines[i] = line
            if batch.provider == "openai":  # OpenAI's counts move live, Anthropic's at the end
                counts = batch.obj["request_counts"]
                counts["completed" if status is None else "failed"] += 1


def _openai_line(custom_id: str, status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": _new_id("batch_req_"),
        "custom_id": custom_id,
        "response": {"status_code": status, "request_id": _new_id("req_"), "body": body},
        "error": None,
    }


def _jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def _add_file(
    state: _State, filename: str, purpose: str, content: bytes, batch: str | None = None
) -> dict[str, Any]:
    """Store a file (call with ``state.lock`` held); returns its FileObject."""
    created = int(time.time())
    obj = {
        "id": _new_id("file-"),
        "object": "file",
        "bytes": len(content),
        "created_at": created,
        "filename": filename,
        "purpose": purpose,
        "status": "processed",
        "status_details": None,
        "expires_at": created + 30 * DAY if purpose.startswith("batch") else None,
    }
    state.files[obj["id"]] = {"object": obj, "content": content, "batch": batch}
    return obj


def _openai_worker(state: _State, batch: _Batch) -> None:
    with state.lock:
        content = state.files[batch.obj["input_file_id"]]["content"]
    rows, errors = _openai_rows(content, batch.obj["endpoint"])
    with state.lock:
        now = int(time.time())
        if errors:
            batch.obj.update(
                status="failed", failed_at=now, errors={"object": "list", "data": errors}
            )
            return
        batch.set_rows(rows)
        batch.obj["request_counts"]["total"] = len(rows)
        batch.obj["model"] = rows[0]["model"]
        if batch.stop is None:
            batch.obj.update(status="in_progress", in_progress_at=now)
    _run_rows(state, batch)
    with state.lock:
        if batch.stop is None:
            batch.obj.update(status="finalizing", finalizing_at=int(time.time()))
    time.sleep(POLL_INTERVAL)
    with state.lock:
        stop = batch.stop
        if stop == "expire":
            for i, line in enumerate(batch.lines):
                if line is None:
                    batch.lines[i] = {
                        "id": _new_id("batch_req_"),
                        "custom_id": batch.rows[i]["custom_id"],
                        "response": None,
                        "error": {"code": "batch_expired", "message": EXPIRED_MESSAGE},
                    }
                    batch.states[i] = "expired"
                    batch.obj["request_counts"]["failed"] += 1
        for i, state_name in enumerate(batch.states):
            if state_name in ("pending", "running"):
                batch.states[i] = "canceled"
        done = [line for line in reversed(batch.lines) if line is not None]  # not in row order
        good = [line for line in done if _line_status(line) == 200]
        bad = [line for line in done if _line_status(line) != 200]
        output = _add_file(state, "batch_output.jsonl", "batch_output", _jsonl(good), batch.id)
        batch.obj["output_file_id"] = output["id"]
        if bad:
            error_file = _add_file(
                state, "batch_errors.jsonl", "batch_output", _jsonl(bad), batch.id
            )
            batch.obj["error_file_id"] = error_file["id"]
        now = int(time.time())
        if stop == "cancel":
            batch.obj.update(status="cancelled", cancelled_at=now)
        elif stop == "expire":
            batch.obj.update(status="expired", expired_at=now)
        else:
            batch.obj.update(status="completed", completed_at=now)


def _anthropic_worker(state: _State, batch: _Batch, base_url: str) -> None:
    _run_rows(state, batch)
    with state.lock:
        kind = "expired" if batch.stop == "expire" else "canceled"
        for i, line in enumerate(batch.lines):
            if line is None:
                batch.lines[i] = {"custom_id": batch.rows[i]["custom_id"], "result": {"type": kind}}
                batch.states[i] = kind
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        for state_name in batch.states:
            counts[state_name] += 1
        batch.results = _jsonl([line for line in reversed(batch.lines) if line is not None])
        batch.obj.update(
            processing_status="ended",
            request_counts=counts,
            ended_at=_rfc3339(time.time()),
            results_url=f"{base_url}/v1/messages/batches/{batch.id}/results",
        )


def _start_worker(target: Callable[..., None], state: _State, batch: _Batch, *args: Any) -> None:
    def run() -> None:
        try:
            target(state, batch, *args)
        except Exception:
            with state.lock:
                batch.crash = traceback.format_exc()
            traceback.print_exc()
        finally:
            with state.lock:
                batch.finished = True

    threading.Thread(target=run, name=f"batch-{batch.id}", daemon=True).start()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # the default 5 drops connections when a batch opens 32 at once

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

    @property
    def gemini_base_url(self) -> str:
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

    def batch(self, batch_id: str) -> dict[str, Any]:
        """The server's view of a batch job (either API): ``provider``, ``status`` (the
        provider's word), ``total``, ``done`` (rows answered, with success or error),
        ``rows`` (``custom_id``, ``model``, ``state``: pending, running, succeeded, errored,
        canceled or expired; ``status_code``), ``stop`` (``"cancel"``/``"expire"`` once asked),
        ``finished`` (the worker is done), ``crash`` (a worker traceback, else None),
        ``object`` (the provider's batch object) and ``requests`` (as :meth:`batch_log`)."""
        return dict(self._get("/_batches/" + urllib.parse.quote(batch_id)))

    def batches(self) -> list[dict[str, Any]]:
        """:meth:`batch` of every batch job, oldest first (without ``requests``)."""
        return list(self._get("/_batches"))

    def batch_log(self, batch_id: str = "*") -> list[dict[str, Any]]:
        """The batch-service requests for ``batch_id`` (its input file upload and output
        downloads included; ``"*"``: every batch-service request), oldest first: ``path``,
        ``method``, ``status``, ``received_at``, ``batch``, ``file``."""
        return list(self._get("/_log?" + urllib.parse.urlencode({"batch": batch_id})))

    def expire_batch(self, batch_id: str) -> None:
        """Make a running batch expire at its next row (as if its 24 h window had passed)."""
        req = urllib.request.Request(
            f"{self.url}/_batches/{urllib.parse.quote(batch_id)}/expire", data=b"", method="POST"
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            resp.read()

    def wait_batch(
        self, batch_id: str, *, done: int | None = None, timeout: float = 10.0
    ) -> dict[str, Any]:
        """Wait until the batch's worker has finished (or, with ``done``, until at least that
        many rows are answered); returns :meth:`batch`."""
        deadline = time.monotonic() + timeout
        view: dict[str, Any] = {}
        while time.monotonic() < deadline:
            view = self.batch(batch_id)
            if view["crash"]:
                raise AssertionError(f"batch worker crashed: {view['crash']}")
            if view["finished"] if done is None else view["done"] >= done:
                return view
            time.sleep(0.01)
        raise AssertionError(f"batch {batch_id} not there within {timeout}s: {view}")

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
