"""The front-door logic shared by ``%%llm`` and :func:`nbstream.ask`.

Resolves the model, builds the :class:`Request`, picks the sink, runs the
:class:`~nbstream.engine.Stream` either awaited (in a kernel, so Stop works) or blocking
(terminal IPython, scripts: Ctrl-C stops, the partial answer is kept).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from dataclasses import dataclass

from .engine import NullSink, Sink, Stream
from .kernel import in_kernel, widget_messages_pumped
from .providers import get_provider, parse_model_id
from .providers.base import Request
from .response import Response

DISPLAY_MODES = ("auto", "widget", "text", "none")


@dataclass
class Options:
    """Everything a user can set per call (``None`` = use the configured default)."""

    model: str | None = None
    system: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    timeout: float = 60.0
    base_url: str | None = None
    display: str = "auto"
    throttle: float = 0.05


def resolve_model(explicit: str | None, configured: str | None) -> tuple[str, str | None]:
    """Pick the model id, and say why when it was not asked for explicitly.

    Precedence: ``-m`` / ``model=`` → ``%config LLMMagics.model`` → ``$NBSTREAM_MODEL`` →
    ``openai`` if ``OPENAI_API_KEY`` is set → ``anthropic`` if ``ANTHROPIC_API_KEY`` is set →
    the embedded ``local`` model.
    """
    if explicit:
        return explicit, None
    if configured:
        return configured, None
    env = os.environ.get("NBSTREAM_MODEL", "").strip()
    if env:
        return env, None
    if os.environ.get("OPENAI_API_KEY"):
        return "openai", "default: OPENAI_API_KEY is set"
    if os.environ.get("ANTHROPIC_API_KEY"):
        return "anthropic", "default: ANTHROPIC_API_KEY is set"
    return "local", "default: no model configured and no API key found"


def make_stream(prompt: str, options: Options, configured_model: str | None = None) -> Stream:
    """Build a ready-to-run stream. Raises ``ModelIdError`` for a bad model id."""
    model_id, note = resolve_model(options.model, configured_model)
    provider_name, name = parse_model_id(model_id)
    request = Request(
        prompt=prompt,
        model=name,
        system=options.system or None,
        temperature=options.temperature,
        max_tokens=options.max_tokens,
        base_url=options.base_url or None,
        timeout=options.timeout,
    )
    return Stream(
        get_provider(provider_name),
        request,
        model_id=f"{provider_name}:{name}" if name else provider_name,
        sink=make_sink(options),
        note=note,
    )


def make_sink(options: Options) -> Sink:
    mode = options.display
    if mode not in DISPLAY_MODES:
        raise ValueError(f"display must be one of {', '.join(DISPLAY_MODES)}, got {mode!r}")
    if mode == "none":
        return NullSink()
    if mode == "widget" or (mode == "auto" and in_kernel() and _widgets_available()):
        from .widget import WidgetSink

        return WidgetSink(interval=options.throttle)
    from .terminal import TerminalSink

    return TerminalSink()


def _widgets_available() -> bool:
    try:
        import anywidget  # noqa: F401
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


async def run_awaited(stream: Stream) -> Response:
    """Run inside the caller's event loop (a kernel cell that awaits): Stop works."""
    from .widget import WidgetSink

    if isinstance(stream.sink, WidgetSink):
        async with widget_messages_pumped():
            return await stream.run()
    return await stream.run()


def run_blocking(stream: Stream) -> Response:
    """Run to the end from synchronous code. Ctrl-C (SIGINT) stops the stream cleanly."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _run_own_loop(stream)
    return _run_in_thread(stream)  # a loop is running here (kernel): don't nest it


def _run_own_loop(stream: Stream) -> Response:
    loop = asyncio.new_event_loop()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, lambda *_: stream.interrupt())
    try:
        return loop.run_until_complete(stream.run())
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def _run_in_thread(stream: Stream) -> Response:
    result: list[Response] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(stream.run()))
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    worker = threading.Thread(target=target, name="nbstream-stream", daemon=True)
    worker.start()
    while worker.is_alive():
        try:
            worker.join(0.05)
        except KeyboardInterrupt:
            stream.interrupt()
    if errors:
        raise errors[0]
    return result[0]


__all__ = [
    "DISPLAY_MODES",
    "Options",
    "make_stream",
    "resolve_model",
    "run_awaited",
    "run_blocking",
]
