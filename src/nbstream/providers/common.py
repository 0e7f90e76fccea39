"""Helpers shared by the HTTP providers: error wording and secret redaction."""

from __future__ import annotations

import os

_HINTS = {
    400: "the server rejected the request; check the model name and options",
    401: "the API key was refused; check {env}",
    403: "the API key may not use this model; check {env} and the model name",
    404: "not found; check the model name and the base URL",
    408: "the server timed out; try again",
    413: "the prompt is too large; shorten it",
    422: "the server rejected the options; check --temperature / --max-tokens",
    429: "rate limited or out of quota; wait a moment or check your plan",
}


def redact(text: str, *secrets: str | None) -> str:
    """Replace every secret (and the well-known key variables' values) in ``text``."""
    candidates = [s for s in secrets if s]
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"):
        value = os.environ.get(var)
        if value:
            candidates.append(value)
    for secret in sorted(set(candidates), key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def one_line(text: str, limit: int = 300) -> str:
    """Collapse whitespace and cap the length, so a message fits one status line."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
        if isinstance(body.get("message"), str):
            return body["message"]
    return None


def dropped_message(label: str, exc: BaseException) -> str:
    """An SDK let a transport error out mid-stream (anthropic does, unwrapped)."""
    detail = f"{type(exc).__name__}: {one_line(str(exc), 120)}"
    return f"the connection to {label} broke mid-stream ({detail})"


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
