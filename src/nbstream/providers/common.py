"""What the HTTP providers share: one error mapping for both SDKs, wording, secret masking."""

from __future__ import annotations

import contextlib
import contextvars
import email.utils
import functools
import importlib
import json
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from nbstream.errors import ProviderError

KEY_VARIABLES: set[str] = set()
"""The environment variables that hold API keys: every registered provider's
``Capabilities.key_variables`` (:func:`nbstream.register_provider` adds them)."""

_HINTS = {
    400: "the server rejected the request; check the model name and the options",
    401: "the API key was refused; check {env}",
    403: "the API key may not use this model; check {env} and the model name",
    404: "not found; check the model name and the base URL",
    408: "the server timed out; try again",
    413: "the prompt is too large; shorten it",
    422: "the server rejected the options (temperature, top_p, max_tokens, stop)",
    429: "rate limited or out of quota; wait a moment or check your plan",
    529: "the provider is overloaded; try again in a moment",
}
RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 529})


# -- secrets -------------------------------------------------------------------------------

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s:]+(:[^/@\s]*)?@")
_MIN_PREFIX = 8  # a key's first characters often come back in error messages ("sk-proj-abc…")


def redact(text: str, *secrets: str | None) -> str:
    """Mask secrets in ``text``: the given ones and the well-known key variables' values,
    also when only their first characters appear (servers echo a truncated key), and
    ``user:password@`` in URLs."""
    candidates = {s for s in secrets if s}
    candidates.update(configured_keys())
    for secret in sorted(candidates, key=len, reverse=True):
        if len(secret) < 4:
            continue
        text = text.replace(secret, "***")
        for length in range(len(secret) - 1, _MIN_PREFIX - 1, -1):
            if secret[:length] in text:
                text = text.replace(secret[:length], "***")
                break
    return mask_url(text)


_QUERY_VALUE = re.compile(r"(?P<head>[?&;](?P<name>[A-Za-z0-9_.~%-]+)=)(?P<value>[^&#\s;'\"<>]*)")
SECRET_PARAMETERS = re.compile(
    r"(?:.*[-_.])?(?:api[-_]?key|key|token|access[-_]?token|auth|authorization|secret|"
    r"password|passwd|pwd|sig|signature|credentials?|session)",
    re.IGNORECASE,
)
"""Query parameters whose value is masked in any URL shown (``?api-key=``, ``?key=``,
``&access_token=``, ``?X-Amz-Signature=``, …)."""


def configured_keys() -> set[str]:
    """The API keys set in the environment (the well-known variables)."""
    return {v for v in (os.environ.get(k) for k in KEY_VARIABLES) if v and len(v) >= 4}


def mask_url(text: str) -> str:
    """Mask credentials in any URL in ``text``: ``http://user:pw@proxy:8080/v1`` →
    ``http://***@proxy:8080/v1``; the value of a secret-looking query parameter
    (:data:`SECRET_PARAMETERS`) or of one equal to a configured key → ``***``."""
    text = _URL_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}***@", text)
    if "=" not in text:
        return text
    keys = configured_keys()

    def query(match: re.Match[str]) -> str:
        value = match.group("value")
        if value and (SECRET_PARAMETERS.fullmatch(match.group("name")) or value in keys):
            return f"{match.group('head')}***"
        return match.group(0)

    return _QUERY_VALUE.sub(query, text)


def one_line(text: str, limit: int = 300) -> str:
    """Collapse whitespace and cap the length, so a message fits one status line."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- wording -------------------------------------------------------------------------------


def http_error_message(status: int, server_message: str, *, label: str, env: str) -> str:
    """``HTTP 401 from OpenAI: Incorrect API key — the API key was refused; check …``."""
    hint = _HINTS.get(status)
    if hint is None:
        hint = "the provider had a problem; try again" if status >= 500 else ""
    message = f"HTTP {status} from {label}: {one_line(server_message, 200) or 'no message'}"
    if hint:
        message += f" — {hint.format(env=env)}"
    return message


def missing_key_message(env: str, provider: str) -> str:
    return (
        f"No API key for {provider}: set the {env} environment variable before starting "
        f"Jupyter, or in a cell: import os, getpass; os.environ[{env!r}] = getpass.getpass(). "
        "Or use -m local for the embedded model, which needs no key."
    )


def server_message(body: object) -> str | None:
    """The human message inside an OpenAI- or Anthropic-style JSON error body."""
    if isinstance(body, dict):
        error = body.get("error", body)
        for holder in (error, body):
            message = holder.get("message") if isinstance(holder, dict) else None
            if isinstance(message, str):
                return message
    return None


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from ``retry-after-ms`` / ``retry-after`` (seconds or an HTTP date)."""
    if not headers:
        return None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def transport_errors() -> tuple[type[BaseException], ...]:
    """httpx's transport errors (the SDKs use ``httpx2`` in recent versions, ``httpx`` before)."""
    errors: list[type[BaseException]] = []
    for name in ("httpx2", "httpx"):
        try:
            module = __import__(name)
        except ImportError:
            continue
        errors.append(module.TransportError)
    return tuple(errors)


@dataclass
class Wire:
    """Who we are talking to, for error messages: ``label`` ("OpenAI"), the key variable a
    user should check, where the server is, and the secrets in play (to mask)."""

    label: str
    env: str
    where: str
    secrets: tuple[str | None, ...] = ()
    connected: bool = False
    """The response has started: a connection error now means a dropped stream."""

    def error(self, message: str, **kwargs: Any) -> ProviderError:
        return ProviderError(redact(message, *self.secrets), **kwargs)


def sdk_error(exc: BaseException, sdk: ModuleType, wire: Wire) -> ProviderError:
    """Map an exception raised while streaming through the ``openai`` or ``anthropic`` SDK
    (they share their exception names) to a :class:`ProviderError`."""
    label = wire.label
    if isinstance(exc, sdk.APIStatusError):
        status = int(exc.status_code)
        message = server_message(exc.body) or str(getattr(exc, "message", "") or exc)
        headers = getattr(getattr(exc, "response", None), "headers", None)
        if wire.connected:  # an error event inside a 200 stream (e.g. Anthropic "overloaded")
            return midstream_error(wire, message)
        return wire.error(
            http_error_message(status, message, label=label, env=wire.env),
            status=status,
            retry_after=retry_after(headers),
            retryable=status in RETRYABLE_STATUS,
        )
    at = "" if wire.where in label else f" at {wire.where}"  # "the server at <URL>" says it
    if isinstance(exc, sdk.APITimeoutError):
        return wire.error(
            f"could not connect to {label}{at} in time (connect timeout)",
            retryable=True,
            option="connect_timeout",
        )
    if isinstance(exc, sdk.APIConnectionError):
        cause = exc.__cause__ or exc
        if wire.connected:
            return wire.error(dropped_message(label, cause))
        return wire.error(
            f"Could not reach {label}{at}: {one_line(str(cause), 120)} — "
            "is the server running and the URL right?",
            retryable=True,
        )
    if isinstance(exc, sdk.APIError):  # e.g. an OpenAI-style {"error": …} chunk mid-stream
        return midstream_error(wire, server_message(exc.body) or str(exc))
    return wire_error(exc, wire)


def wire_error(exc: BaseException, wire: Wire) -> ProviderError:
    """What every SDK lets through unwrapped, the same for all: malformed JSON, bytes that
    are not UTF-8, the HTTP library's transport errors (before the response started: the
    server is unreachable or slow to connect; after: the stream broke)."""
    label = wire.label
    at = "" if wire.where in label else f" at {wire.where}"
    if isinstance(exc, json.JSONDecodeError):
        return wire.error(f"{label} sent a malformed event (not JSON): {exc.msg}")
    if isinstance(exc, UnicodeDecodeError):
        return wire.error(
            f"{label} sent bytes that are not UTF-8 text ({exc.reason} at byte {exc.start}); "
            "the server or a proxy in between is broken"
        )
    if isinstance(exc, transport_errors()):
        if wire.connected:
            return wire.error(dropped_message(label, exc))
        if type(exc).__name__ == "ConnectTimeout":
            return wire.error(
                f"could not connect to {label}{at} in time (connect timeout)",
                retryable=True,
                option="connect_timeout",
            )
        return wire.error(
            f"Could not reach {label}{at}: {one_line(str(exc), 120)} — "
            "is the server running and the URL right?",
            retryable=True,
        )
    return wire.error(f"{label}: {type(exc).__name__}: {one_line(str(exc))}")


def midstream_error(wire: Wire, message: str) -> ProviderError:
    """The server reported an error inside a stream it had started (HTTP 200). Retryable:
    the engine retries it only if no text has arrived yet."""
    return wire.error(
        f"{wire.label} reported an error mid-answer: {one_line(message, 200)} — "
        "what arrived before it is kept; try again",
        retryable=True,
    )


def dropped_message(label: str, exc: BaseException) -> str:
    """An SDK let a transport error out mid-stream (anthropic does, unwrapped)."""
    detail = f"{type(exc).__name__}: {one_line(str(exc), 120)}"
    return f"the connection to {label} broke mid-stream ({detail})"


def sdk_exceptions(sdk: ModuleType) -> tuple[type[BaseException], ...]:
    """What :func:`sdk_error` maps: the SDK's errors, malformed JSON, bad UTF-8, transport."""
    return (sdk.APIError, json.JSONDecodeError, UnicodeDecodeError, *transport_errors())


CLIENTS: contextvars.ContextVar[dict[tuple[Any, ...], Any] | None] = contextvars.ContextVar(
    "nbstream_clients", default=None
)
"""SDK clients shared by the requests of a batch (:func:`shared_clients`); ``None``: one
client per request."""


@contextlib.asynccontextmanager
async def shared_clients() -> AsyncIterator[None]:
    """Within this block (a batch of rows: :mod:`nbstream.batch`), the requests made in
    this context share one SDK client per configuration: kept-alive connections (no TCP
    and TLS handshake per row) and ~1.5 ms less CPU per request. A stopped stream still
    closes its own connection (a response closed before its end never goes back to the
    pool). The clients are closed when the block ends."""
    pool: dict[tuple[Any, ...], Any] = {}
    token = CLIENTS.set(pool)
    try:
        yield
    finally:
        CLIENTS.reset(token)
        for client in pool.values():
            with contextlib.suppress(Exception):
                await client.close()


@contextlib.asynccontextmanager
async def sdk_client(key: tuple[Any, ...], make: Callable[[], Any]) -> AsyncIterator[Any]:
    """The SDK client for one request: the batch's shared one for ``key`` (see
    :func:`shared_clients`), else a new one, closed when the request ends."""
    pool = CLIENTS.get()
    if pool is not None:
        client = pool.get(key)
        if client is None:
            client = pool[key] = make()
        yield client
        return
    async with make() as client:
        yield client


def http_client(sdk: ModuleType, timeout: Any) -> Any:
    """A new HTTP client for ``sdk`` (``openai`` or ``anthropic``) that shares one TLS
    context per process: building the default one reads the CA bundle, ~40 ms of CPU per
    client, which limited a batch of 1,000 rows to ~20 rows/s."""
    for cls in sdk.DefaultAsyncHttpxClient.__mro__:  # the SDK's httpx (httpx or httpx2)
        library = cls.__module__.partition(".")[0]
        if library != sdk.__name__ and library != "builtins":
            return sdk.DefaultAsyncHttpxClient(verify=tls_context(library), timeout=timeout)
    raise RuntimeError(f"{sdk.__name__}.DefaultAsyncHttpxClient is not an httpx client")


def tls_context(library: str) -> Any:
    """The TLS context ``library`` (``httpx`` or ``httpx2``) builds by default, built once
    per process (it reads ``SSL_CERT_FILE`` and ``SSL_CERT_DIR``: part of the cache key)."""
    return _tls_context(library, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.lru_cache(maxsize=8)
def _tls_context(library: str, cert_file: str | None, cert_dir: str | None) -> Any:
    return importlib.import_module(library).create_ssl_context()


def timeout_config(sdk: ModuleType, connect: float) -> Any:
    """The SDK's ``Timeout``: bounded connect, unbounded read (the engine watches tokens)."""
    return sdk.Timeout(None, connect=connect)
