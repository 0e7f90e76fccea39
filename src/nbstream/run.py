"""The front-door logic shared by ``%%llm`` and :func:`nbstream.ask`.

Merges the options (:func:`nbstream.settings.resolve`), resolves the model, builds the
:class:`Request`, picks the sink, and runs the :class:`~nbstream.engine.Stream` either
awaited (in a kernel, so Stop works) or blocking (terminal IPython, scripts, and cells
wrapped by ``%%time`` / ``%%capture``: Ctrl-C or interrupt stops, the partial answer is
kept).

Two options of issue 11 live here, above the engine, which knows neither:

* ``chat``: the thread's earlier turns (:mod:`nbstream.conversation`, within the budget,
  up to the running cell's own turn) go into ``Request.messages`` / ``system``; the status
  note says what was sent; when the call ends its turn is recorded (re-running a cell
  replaces it), also when it was stopped or failed.
* ``schema``: resolved before anything is sent (:func:`nbstream.structured.resolve_schema`);
  the wire form goes into ``Request.schema``, the sinks render the JSON as a table. An
  answer that finished is validated (``Response.data``); one that does not match becomes
  ``finish_reason == "error"`` with the validator's message, and up to ``retries`` times a
  new provider call asks again with the bad answer and the error (:class:`Call`): a new
  :class:`Stream` whose sink (:class:`Relay`) continues the same display.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from . import cache
from . import store as records
from .engine import NullSink, Sink, Stream, neutral
from .kernel import get_shell, in_kernel, widget_messages_pumped
from .providers import get_provider, is_builtin, parse_model_id
from .providers.base import Request
from .response import Response
from .settings import UNSET, Settings, Unset, request_fields, resolve

if TYPE_CHECKING:
    from .conversation import History
    from .structured import Schema


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


def make_request(
    settings: Settings,
    prompt: str,
    model: str,
    *,
    messages: Sequence[Mapping[str, str]] = (),
    system: str | Unset | None = UNSET,
    schema: Schema | None = None,
) -> Request:
    """The provider request: the prompt, the model name and every ``request=True`` option;
    ``messages``: earlier turns, ``system``: the effective system prompt (default: the
    option), ``schema``: the structured answer's schema."""
    values: dict[str, Any] = {name: getattr(settings, name) for name in request_fields()}
    if values.get("stop") is not None:
        values["stop"] = tuple(values["stop"])
    if not isinstance(system, Unset):
        values["system"] = system
    return Request(
        prompt=prompt,
        model=model,
        **values,
        messages=tuple({"role": m["role"], "content": m["content"]} for m in messages),
        schema=None if schema is None else schema.wire,
    )


def make_stream(
    prompt: str | Callable[[Settings], str],
    call: Mapping[str, Any],
    *,
    describe_option: Callable[[str], str] = neutral,
    awaited: bool = True,
    namespace: Mapping[str, Any] | None = None,
    sink: Sink | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> Stream:
    """Build a ready-to-run stream from the call's options (:data:`~nbstream.settings.UNSET`
    = not given). ``prompt`` may be a function of the merged settings (e.g. interpolation
    within ``context_budget``). ``namespace``: where a schema named by a string is looked
    up (default: the user's namespace). ``sink``: where the stream's progress goes instead
    of the display of ``settings.display`` (e.g. a batch's progress); ``defaults``: the
    front door's own defaults, below the environment (:func:`~nbstream.settings.resolve`).
    Raises ``SettingsError``, ``ModelIdError`` or
    ``SchemaError``; nothing is sent then.

    With ``chat``, the earlier turns of the thread go into the request and the answer is
    recorded in it when the stream ends; with ``schema``, the answer is validated when it
    ends and, if it does not match, asked again (``retries``): :func:`run_awaited` /
    :func:`run_blocking` run those further streams."""
    from .conversation import current_cell_id, default_budget, get_thread, turn_key
    from .structured import resolve_schema

    call = dict(call)
    schema: Schema | None = None
    given = call.get("schema", UNSET)
    if not isinstance(given, (str, Unset)) and given is not None:  # ask(schema=Model)
        schema = resolve_schema(given)
        call["schema"] = schema.label  # what the settings (and the history) show
    settings = resolve(call, configured(), defaults=defaults)
    if schema is None and settings.schema:
        schema = resolve_schema(settings.schema, user_namespace(namespace))
    model_id, note = resolve_model(settings)
    provider_name, name = parse_model_id(model_id)
    text = prompt(settings) if callable(prompt) else prompt
    full_id = f"{provider_name}:{name}" if name else provider_name

    system = settings.system
    if schema is not None and not is_builtin(provider_name):
        from .structured import instructions  # a provider that may not know the schema field

        system = f"{system}\n\n{instructions(schema)}" if system else instructions(schema)
    chat: Chat | None = None
    messages: list[dict[str, str]] = []
    if settings.chat:
        base_url = settings.base_url
        if provider_name == "openai" and base_url is None:
            base_url = os.environ.get("OPENAI_BASE_URL") or None
        budget = settings.chat_budget
        if budget is None:
            budget = default_budget(
                provider_name, max_tokens=settings.max_tokens, base_url=base_url
            )
        key = turn_key(settings.chat, current_cell_id())
        history = get_thread(settings.chat).messages(key, budget, prompt=text, system=system)
        messages = history.turns
        system = history.system
        chat = Chat(settings.chat, key, history)
    request = make_request(settings, text, name, messages=messages, system=system, schema=schema)
    if sink is None:
        sink = make_sink(settings, stoppable=awaited, schema=schema)
    if schema is not None and settings.retries > 0:
        sink = Relay(sink)
    plan = Call(
        settings=settings,
        provider_name=provider_name,
        model_id=full_id,
        prompt=text,
        schema=schema,
        chat=chat,
        sink=sink,
        describe_option=describe_option,
        notes=[n for n in (note, chat.note() if chat else None) if n],
    )
    return plan.stream(request)


def user_namespace(namespace: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    """``namespace``, else the IPython user namespace, else nothing."""
    if namespace is not None:
        return namespace
    shell = get_shell()
    user_ns = getattr(shell, "user_ns", None)
    return user_ns if isinstance(user_ns, Mapping) else {}


def _join(*notes: str | None) -> str | None:
    return " · ".join(n for n in notes if n) or None


class Chat:
    """The conversation side of one call: its thread, the key of its turn, what was sent."""

    def __init__(self, name: str, key: str | None, history: History) -> None:
        self.name = name
        self.key = key
        self.history = history

    def note(self) -> str:
        """``chat: 2 earlier turns sent (~40 tokens)`` (+ ``appending: no cell id``)."""
        label = "chat" if self.name == "default" else f"chat {self.name!r}"
        text = f"{label}: {self.history.summary()}"
        if self.key is None:
            text += "; appending: no cell id"
        return text


REASK = (
    "That answer cannot be used: {error}. Answer the same question again, with JSON only "
    "that matches the schema."
)
"""The prompt of a validation re-ask (the bad answer is sent before it)."""


class Call:
    """One front-door call: the stream of its first request and, with a schema, the re-asks
    that follow an answer that does not validate (each a new provider call, in a new
    :class:`Stream` sharing the sink). Every stream's ``on_response`` is a
    :class:`Bookkeeping` of this call: it validates, decides on a re-ask, does the cost
    and history bookkeeping of that provider call, and for the last one records the turn
    of the conversation and sums what the calls cost."""

    def __init__(
        self,
        *,
        settings: Settings,
        provider_name: str,
        model_id: str,
        prompt: str,
        schema: Schema | None,
        chat: Chat | None,
        sink: Sink,
        describe_option: Callable[[str], str],
        notes: list[str],
    ) -> None:
        self.settings = settings
        self.provider_name = provider_name
        self.model_id = model_id
        self.prompt = prompt
        self.schema = schema
        self.chat = chat
        self.sink = sink
        self.describe_option = describe_option
        self.notes = notes
        self.context = records.front_end_context()
        self.responses: list[Response] = []
        self.pending: tuple[Request, str] | None = None
        """The next request and its status note, once an answer did not validate."""
        self.halted = False
        """Interrupted: no further stream."""

    def stream(self, request: Request, note: str | None = None) -> Stream:
        provider, lookup = cache.wrap(
            get_provider(self.provider_name),
            self.provider_name,
            self.model_id,
            request,
            self.settings,
        )
        notes = [note, "cached" if lookup.hit else None, *self.notes]
        return Stream(
            provider,
            request,
            model_id=self.model_id,
            settings=self.settings,
            sink=self.sink,
            note=_join(*notes),
            describe_option=self.describe_option,
            on_response=Bookkeeping(lookup, self.context, self),
        )

    def follow_up(self, stream: Stream) -> Stream | None:
        """The next stream after ``stream`` ended (a validation re-ask), or ``None``."""
        pending, self.pending = self.pending, None
        if pending is None:
            return None
        if stream.interrupted or self.halted:  # the re-ask is not sent: this is the answer
            self._settle(stream)
            return None
        request, note = pending
        try:
            return self.stream(request, note)
        except BaseException:  # the re-ask cannot even start: show the answer as it is
            self._settle(stream)
            raise

    def _settle(self, stream: Stream) -> None:
        """The last answer stays the answer: finish it and show its held end."""
        self.finish(stream, self.responses[-1])
        if isinstance(self.sink, Relay):
            self.sink.flush()

    # -- the hooks, in the order Bookkeeping calls them -------------------------------------

    def check(self, stream: Stream, response: Response) -> None:
        """Validate a finished answer against the schema; a failure makes the response an
        error (text kept) and, if re-asks are left, queues one."""
        if self.schema is None or response.finish_reason != "stop":
            return
        from .errors import SchemaValidationError

        try:
            response.data = self.schema.validate(response.text)
            return
        except SchemaValidationError as exc:
            error = exc
        reasks = len(self.responses)
        message = str(error)
        if reasks:
            message += f" (after asking again {reasks} {'time' if reasks == 1 else 'times'})"
        response.finish_reason = stream.state = "error"
        response.error = message
        if reasks < self.settings.retries and not stream.interrupted and not self.halted:
            what = "invalid JSON" if error.field is None else "the JSON does not match"
            note = f"{what} — asking again ({reasks + 1}/{self.settings.retries})"
            request = stream.request
            retry = replace(
                request,
                prompt=REASK.format(error=str(error)),
                messages=(
                    *request.messages,
                    {"role": "user", "content": request.prompt},
                    {"role": "assistant", "content": response.text},
                ),
            )
            self.pending = (retry, note)
            if isinstance(self.sink, Relay):
                self.sink.hold = True

    def finish(self, stream: Stream, response: Response) -> None:
        """The last answer of the call: the prompt the user asked, the cost and usage of
        every provider call of it, and its turn in the conversation."""
        earlier = self.responses
        if earlier:
            response.prompt = self.prompt
            response.usage = _add_usage([*[r.usage for r in earlier], response.usage])
            costs = [r.cost for r in [*earlier, response]]
            response.cost = None if None in costs else sum(c for c in costs if c is not None)
        if self.chat is not None:
            from .conversation import Turn, record

            turn = Turn.from_response(response, system=self.settings.system, cell_id=self.chat.key)
            record(turn, self.chat.name)


def _add_usage(usages: list[dict[str, int] | None]) -> dict[str, int] | None:
    total: dict[str, int] = {}
    for usage in usages:
        for key, value in (usage or {}).items():
            total[key] = total.get(key, 0) + int(value)
    return total or None


class Relay:
    """The sink of a call with validation re-asks: passes everything on to ``sink``, except
    the end of an answer that is asked again (:attr:`hold`). The next stream's start then
    continues the same display in place (``sink.on_restart``) or, for sinks that cannot,
    ends the held answer there and starts the next one after it."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.pumps_widget_messages = sink.pumps_widget_messages
        self.hold = False
        self._held: tuple[Stream, Response] | None = None

    def on_start(self, stream: Stream) -> None:
        held, self._held = self._held, None
        if held is None:
            self.sink.on_start(stream)
            return
        restart = getattr(self.sink, "on_restart", None)
        if restart is not None:
            restart(stream)
        else:
            self.sink.on_end(*held)
            self.sink.on_start(stream)

    def on_delta(self, stream: Stream, delta: str) -> None:
        self.sink.on_delta(stream, delta)

    def on_status(self, stream: Stream) -> None:
        self.sink.on_status(stream)

    def on_end(self, stream: Stream, response: Response) -> None:
        if self.hold:
            self.hold = False
            self._held = (stream, response)
            return
        self.sink.on_end(stream, response)

    def flush(self) -> None:
        """Show the end of a held answer whose re-ask will not run (interrupted)."""
        held, self._held = self._held, None
        if held is not None:
            self.sink.on_end(*held)


class Bookkeeping:
    """What happens to every answer before it is shown as ended (the engine's
    ``on_response``, which also runs after an interrupt): validation against the schema,
    its cost, the session's total, a row in the history (queued: the stream never waits
    for the disk), and for the last answer of a call its turn in the conversation."""

    def __init__(
        self, lookup: cache.Lookup, context: dict[str, str | None], call: Call | None = None
    ) -> None:
        self.lookup = lookup
        self.context = context
        self.call = call

    def __call__(self, stream: Stream, response: Response) -> None:
        from . import pricing

        call = self.call
        settings = stream.settings
        response.cached = self.lookup.hit
        try:
            if call is not None:
                call.check(stream, response)
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
            if call is not None:
                if call.pending is None:
                    call.finish(stream, response)
                call.responses.append(response)


WIDGET_FALLBACK_AFTER = 3.0
"""``display="auto"``: seconds into a stream without any view rendering the widget before
the answer streams as live HTML instead (the front end does not show widgets)."""


def make_sink(settings: Settings, *, stoppable: bool = True, schema: Schema | None = None) -> Sink:
    """The display for ``settings.display``. ``auto``: in a kernel, the widget when
    ipywidgets + anywidget are installed (falling back to live HTML if no view renders),
    else live HTML; text outside a kernel. ``stoppable``: the Stop button can work (the
    cell awaits the stream). ``schema``: the answer is JSON, shown as a table."""
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
            schema=schema,
        )
    if mode == "html":
        from .live_html import HtmlSink

        return HtmlSink(show_prompt=settings.show_prompt, schema=schema)
    from .terminal import TerminalSink

    return TerminalSink(show_prompt=settings.show_prompt)


def _widgets_available() -> bool:
    try:
        import anywidget  # noqa: F401
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


async def run_awaited(stream: Stream, *, pump: bool = True) -> Response:
    """Run inside the caller's event loop (a kernel cell that awaits): Stop works. Runs the
    call's re-asks too (:class:`Call`); the first stream's ``interrupted`` tells whether the
    user interrupted any of them. ``pump=False``: never pump widget messages (a stream
    running in the background, or one of many that share one pump)."""
    if pump and stream.sink.pumps_widget_messages:
        async with widget_messages_pumped():
            return await _run_call(stream, [stream])
    return await _run_call(stream, [stream])


async def _run_call(first: Stream, current: list[Stream]) -> Response:
    """Run ``first`` and the streams that follow it; ``current[0]`` is the one running."""
    stream = first
    while True:
        current[0] = stream
        response = await stream.run()
        call = _call_of(stream)
        following = None if call is None else call.follow_up(stream)
        if following is None:
            break
        stream = following
    if stream.interrupted:
        first.interrupted = True
    return response


def _call_of(stream: Stream) -> Call | None:
    hook = stream.on_response
    return hook.call if isinstance(hook, Bookkeeping) else None


def _interrupt(current: list[Stream]) -> None:
    """Ctrl-C / kernel interrupt in the blocking paths: stop the running stream, and run
    no re-ask after it."""
    stream = current[0]
    call = _call_of(stream)
    if call is not None:
        call.halted = True
    stream.interrupt()


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
    current = [stream]
    previous = signal.signal(signal.SIGINT, lambda *_: _interrupt(current))
    try:
        return loop.run_until_complete(_run_call(stream, current))
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
    current = [stream]

    def target() -> None:
        try:
            outcome.append(asyncio.run(_run_call(stream, current)))
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
            _interrupt(current)
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
    "Bookkeeping",
    "Call",
    "configured",
    "make_request",
    "make_sink",
    "make_stream",
    "resolve_model",
    "run_awaited",
    "run_blocking",
    "store",
]
