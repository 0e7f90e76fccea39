"""The Python API: ``await nbstream.ask(...)`` and ``nbstream.ask_sync(...)``."""

from __future__ import annotations

from typing import Any

from .engine import Stream
from .kernel import get_shell, in_kernel
from .response import Response
from .run import Options, make_stream, run_awaited, run_blocking


def _stream(prompt: str, arguments: dict[str, Any]) -> Stream:
    """A ready stream for ``ask``/``ask_sync``: their keyword arguments over the defaults."""
    if not prompt or not prompt.strip():
        raise ValueError("the prompt is empty")
    overrides = {k: v for k, v in arguments.items() if k in _OPTION_NAMES}
    options, configured = _options(**overrides)
    return make_stream(prompt, options, configured)


_OPTION_NAMES = ("model", "system", "temperature", "max_tokens", "timeout", "base_url", "display")


def _options(**kwargs: Any) -> tuple[Options, str | None]:
    from . import magics

    config = magics._instance
    configured = config.model if config is not None else None
    options = Options()
    if config is not None:  # %config LLMMagics.* defaults apply to the API too
        options = Options(
            system=config.system or None,
            temperature=config.temperature,
            max_tokens=config.max_tokens,
            timeout=config.timeout,
            display=config.display,
            throttle=config.throttle,
        )
    for key, value in kwargs.items():
        if value is not None:
            setattr(options, key, value)
    return options, configured or None


async def ask(
    prompt: str,
    *,
    model: str | None = None,
    system: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    timeout: float | None = None,
    base_url: str | None = None,
    display: str | None = None,
) -> Response:
    """Stream an answer with the same live display, Stop button and semantics as ``%%llm``.

    ``await nbstream.ask("Explain …", model="openai:gpt-4o-mini")`` returns a
    :class:`~nbstream.Response` (also stored in ``_llm``). ``display`` is ``"auto"``
    (widget in notebooks, text elsewhere), ``"widget"``, ``"text"`` or ``"none"``.
    A kernel interrupt stores the partial answer in ``_llm`` and raises KeyboardInterrupt.
    """
    stream = _stream(prompt, locals())
    response = await run_awaited(stream)
    _store(response)
    if stream.interrupted and in_kernel():
        raise KeyboardInterrupt
    return response


def ask_sync(
    prompt: str,
    *,
    model: str | None = None,
    system: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    timeout: float | None = None,
    base_url: str | None = None,
    display: str | None = None,
) -> Response:
    """Blocking :func:`ask` for scripts and plain functions. Ctrl-C stops the stream and
    returns the partial answer (``finish_reason == "cancelled"``)."""
    response = run_blocking(_stream(prompt, {**locals(), "display": display or "text"}))
    _store(response)
    return response


def _store(response: Response) -> None:
    shell = get_shell()
    if shell is not None:
        shell.user_ns["_llm"] = response
