"""The front-door logic shared by ``%%llm`` and :func:`nbstream.ask`.

Merges the options (:func:`nbstream.settings.resolve`), resolves the model, builds the
:class:`Request`, picks the sink, and runs the :class:`~nbstream.engine.Stream` either
awaited (in a kernel, so Stop works) or blocking (terminal IPython, scripts, and cells
wrapped by ``%%time`` / ``%%capture``: Ctrl-C or interrupt stops, the partial answer is
kept).
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import signal
import threading
from collections.abc import Callable, Mapping
from typing import Any

from . import cache
from . import store as records
from .engine import NullSink, Sink, Stream, neutral
from .kernel import get_shell, in_kernel, widget_messages_pumped
from .providers import get_provider, parse_model_id
from .providers.base import Request
from .response import Response
from .settings import Settings, request_fields, resolve


def configured() -> dict[str, Any]:
    """The ``%config LLMMagics.*`` values (``None`` = not configured), if nbstream is loaded."""
    from . import magics

    instance = magics.instance()
    if instance is None:
        return {}
    return instance.configured()


def resolve_model(settings: Settings) -> tuple[str, str | None]:
    """Pick the model id, and say why when it was not asked for.

    An explicit model (call → ``%config`` → ``$NBSTREAM_MODEL``, merged by
    :func:`~nbstream.settings.resolve`) wins; else ``openai`` if ``OPENAI_API_KEY`` is set,
    ``anthropic`` if ``ANTHROPIC_API_KEY`` is set, else the embedded ``local`` model.
    """
    if settings.model:
        return settings.model, None
    if os.environ.get("OPENAI_API_KEY"):
        return "openai", "default: OPENAI_API_KEY is set"
    if os.environ.get("ANTHROPIC_API_KEY"):
        return "anthropic", "default: ANTHROPIC_API_KEY is set"
    return "local", "default: no model configured and no API key found"


def make_request(settings: Settings, prompt: str, model: str) -> Request:
    """The provider request: the prompt, the model name and every ``request=True`` option."""
    values: dict[str, Any] = {name: getattr(settings, name) for name in request_fields()}
    if values.get("stop") is not None:
        values["stop"] = tuple(values["stop"])
    return Request(prompt=prompt, model=model, **values)


def make_stream(
    prompt: str | Callable[[Settings], str],
    call: Mapping[str, Any],
    *,
    describe_option: Callable[[str], str] = neutral,
    awaited: bool = True,
) -> Stream:
    """Build a ready-to-run stream from the call's options (:data:`~nbstream.settings.UNSET`
    = not given). ``prompt`` may be a function of the merged settings (e.g. interpolation
    within ``context_budget``). Raises ``SettingsError`` or ``ModelIdError``; nothing is
    sent then."""
    settings = resolve(call, configured())
    model_id, note = resolve_model(settings)
    provider_name, name = parse_model_id(model_id)
    text = prompt(settings) if callable(prompt) else prompt
    request = make_request(settings, text, name)
    full_id = f"{provider_name}:{name}" if name else provider_name
    provider, lookup = cache.wrap(
        get_provider(provider_name), provider_name, full_id, request, settings
    )
    if lookup.hit:
        note = f"cached · {note}" if note else "cached"
    return Stream(
        provider,
        request,
        model_id=full_id,
        settings=settings,
        sink=make_sink(settings, stoppable=awaited),
        note=note,
        describe_option=describe_option,
        on_response=Bookkeeping(lookup, records.front_end_context()),
    )


class Bookkeeping:
    """What happens to every answer before it is shown as ended (the engine's
    ``on_response``, which also runs after an interrupt): its cost, the session's total,
    and a row in the history (queued: the stream never waits for the disk)."""

    def __init__(self, lookup: cache.Lookup, context: dict[str, str | None]) -> None:
        self.lookup = lookup
        self.context = context

    def __call__(self, stream: Stream, response: Response) -> None:
        from . import pricing

        settings = stream.settings
        response.cached = self.lookup.hit
        try:
            if self.lookup.replay_miss:
                response.cost = 0.0  # nothing was sent
            else:
                response.cost = pricing.cost(
                    response.model,
                    response.usage,
                    cached=response.cached,
                    prices_file=settings.prices,
                )
        finally:  # a prices file gone bad must not lose the answer's record
            pricing.add_to_session(response)
            path = records.history_path(settings.history)
            if path is not None:
                row = records.record_of(
                    stream, response, request_key=self.lookup.key, context=self.context
                )
                records.record(path, row)


WIDGET_FALLBACK_AFTER = 3.0
"""``display="auto"``: seconds into a stream without any view rendering the widget before
the answer streams as live HTML instead (the front end does not show widgets)."""


def make_sink(settings: Settings, *, stoppable: bool = True) -> Sink:
    """The display for ``settings.display``. ``auto``: in a kernel, the widget when
    ipywidgets + anywidget are installed (falling back to live HTML if no view renders),
    else live HTML; text outside a kernel. ``stoppable``: the Stop button can work (the
    cell awaits the stream)."""
    mode = settings.display
    if mode == "none":
        return NullSink()
    if mode == "auto":
        mode = ("widget" if _widgets_available() else "html") if in_kernel() else "text"
    if mode == "widget":
        from .widget import WidgetSink

        return WidgetSink(
            interval=settings.throttle,
            stoppable=stoppable,
            show_prompt=settings.show_prompt,
            fallback_after=WIDGET_FALLBACK_AFTER if settings.display == "auto" else None,
        )
    if mode == "html":
        from .live_html import HtmlSink

        return HtmlSink(show_prompt=settings.show_prompt)
    from .terminal import TerminalSink

    return TerminalSink(show_prompt=settings.show_prompt)


def _widgets_available() -> bool:
    try:
        import anywidget  # noqa: F401
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


async def run_awaited(stream: Stream) -> Response:
    """Run inside the caller's event loop (a kernel cell that awaits): Stop works."""
    if stream.sink.pumps_widget_messages:
        async with widget_messages_pumped():
            return await stream.run()
    return await stream.run()


def run_blocking(stream: Stream) -> Response:
    """Run to the end from synchronous code. Ctrl-C / kernel interrupt stops the stream
    cleanly and the partial answer is returned (``stream.interrupted`` is then set)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        if threading.current_thread() is threading.main_thread() and not in_kernel():
            return _run_own_loop(stream)
    return _run_in_thread(stream)  # a loop is running here (kernel): don't nest it


def _run_own_loop(stream: Stream) -> Response:
    loop = asyncio.new_event_loop()
    previous = signal.signal(signal.SIGINT, lambda *_: stream.interrupt())
    try:
        return loop.run_until_complete(stream.run())
    finally:
        signal.signal(signal.SIGINT, previous)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def _run_in_thread(stream: Stream) -> Response:
    """Run the stream on a worker thread's own loop while this thread waits; a
    ``KeyboardInterrupt`` here (Ctrl-C, kernel interrupt) stops the stream, which then
    returns its partial answer. The worker runs in a copy of this context, so a kernel's
    per-cell state (the parent message that outputs belong to) follows it.

    The wait is on an Event, not ``Thread.join``: a KeyboardInterrupt inside ``join`` can
    leave ``is_alive()`` False while the thread still runs (CPython's bpo-45274 handling),
    which lost the answer."""
    outcome: list[Response | BaseException] = []
    done = threading.Event()

    def target() -> None:
        try:
            outcome.append(asyncio.run(stream.run()))
        except BaseException as exc:  # re-raised in the caller's thread
            outcome.append(exc)
        finally:
            done.set()

    context = contextvars.copy_context()
    worker = threading.Thread(
        target=context.run, args=(target,), name="nbstream-stream", daemon=True
    )
    worker.start()
    while not done.is_set():
        try:
            done.wait(0.05)
        except KeyboardInterrupt:
            stream.interrupt()
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result


def store(response: Response, out: str | None = None) -> None:
    """Bind ``_llm`` (and ``out``) in the user's namespace, if there is a shell."""
    shell = get_shell()
    if shell is not None:
        shell.user_ns["_llm"] = response
        if out:
            shell.user_ns[out] = response


__all__ = [
    "configured",
    "make_request",
    "make_sink",
    "make_stream",
    "resolve_model",
    "run_awaited",
    "run_blocking",
    "store",
]
