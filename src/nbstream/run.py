"""The one way in, shared by ``%%llm``, :func:`nbstream.ask` and :func:`nbstream.map`.

:func:`plan` makes a call's decisions once — the options merged (call → ``%config`` →
environment → defaults, :func:`nbstream.settings.resolve`), the model id, the schema —
and :func:`make_stream` turns a plan into a ready stream (the thread's turns, the
:class:`Request`, the sink); a batch plans once and makes one stream per row from the same
plan. The stream runs either
awaited (in a kernel, so Stop works) or blocking (terminal IPython, scripts, and cells
wrapped by ``%%time`` / ``%%capture``: Ctrl-C or interrupt stops, the partial answer is
kept).

A call's re-asks and bookkeeping (schema validation, cost, history, the conversation's
turn) are :mod:`nbstream.call`'s.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import signal
import sys
import threading
from collections import ChainMap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from nbstream.call import Call, Chat, Relay, call_of
from nbstream.conversation import current_cell_id, get_thread, leave_threads, turn_key
from nbstream.display.live_html import HtmlSink
from nbstream.display.terminal import TerminalSink
from nbstream.engine import NullSink, Sink, Stream, neutral
from nbstream.errors import Problem, SettingsError, warn_once
from nbstream.kernel import get_shell, in_kernel, widget_messages_pumped, widgets_available
from nbstream.pricing import price_of
from nbstream.pricing import session as pricing_session
from nbstream.prompts.cells import cells_block
from nbstream.prompts.fingerprint import fingerprint
from nbstream.prompts.interpolate import Composed
from nbstream.prompts.media import RENDER_MAX_SIDE, MediaError, fit
from nbstream.providers import capabilities, parse_model_id, registered
from nbstream.providers.base import Attachment, Capabilities, Request
from nbstream.providers.common import CLIENTS, shared_clients
from nbstream.response import INPUT_CHECKS, Response
from nbstream.settings import UNSET, Settings, Unset, configured, request_fields, resolve
from nbstream.tools import Tool, ToolError, resolve_tools

if TYPE_CHECKING:
    from nbstream.structured.schema import Schema


def resolve_model(settings: Settings) -> tuple[str, str | None]:
    """Pick the model id, and say why when it was not asked for.

    An explicit model (call → ``%config`` → ``$NBSTREAM_MODEL``, merged by
    :func:`~nbstream.settings.resolve`) wins; else the first registered provider one of whose
    ``default_if_set`` variables is set (``openai`` for ``OPENAI_API_KEY``, then
    ``anthropic`` for ``ANTHROPIC_API_KEY``), else the embedded ``local`` model.
    """
    if settings.model:
        return settings.model, None
    for name, caps in registered():
        for variable in caps.default_if_set:
            if os.environ.get(variable):
                return name, f"default: {variable} is set"
    return "local", "default: no model configured and no API key found"


def make_request(
    settings: Settings,
    prompt: str,
    model: str,
    *,
    messages: Sequence[Mapping[str, Any]] = (),
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
        messages=tuple(dict(m) for m in messages),
        schema=None if schema is None else schema.wire,
    )


@dataclass(frozen=True)
class Plan:
    """A call's decisions, made once by :func:`plan`."""

    settings: Settings
    """The merged options (the schema's label in ``settings.schema``)."""
    schema: Schema | None
    provider_name: str
    name: str
    """The model name without the provider (``""``: the provider has no default)."""
    note: str | None = None
    """Why this model, when it was not asked for (for the status line)."""
    tools: tuple[Tool, ...] = ()
    """The functions the model may call (``--tools``)."""

    @property
    def model_id(self) -> str:
        return f"{self.provider_name}:{self.name}" if self.name else self.provider_name

    @property
    def capabilities(self) -> Capabilities:
        return capabilities(self.provider_name)


def plan(
    call: Mapping[str, Any],
    *,
    namespace: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> Plan:
    """Decide a call: merge its options (:data:`~nbstream.settings.UNSET` = not given) over
    ``%config``, the environment and ``defaults`` (the front door's own), resolve the schema
    (an object, or a type expression looked up in ``namespace``, default the user's) and the
    model. Raises ``SettingsError``, ``ModelIdError`` or ``SchemaError``; nothing is sent."""
    from nbstream.structured.schema import Schema, resolve_schema  # lazy: pydantic

    call = dict(call)
    schema: Schema | None = None
    given = call.get("schema", UNSET)
    if not isinstance(given, (str, Unset)) and given is not None:  # ask(schema=Model)
        schema = given if isinstance(given, Schema) else resolve_schema(given)
        call["schema"] = schema.label  # what the settings (and the history) show
    tools: list[Tool] = []
    given_list: list[Any] | None = None
    given_tools = call.get("tools", UNSET)
    if not isinstance(given_tools, (str, Unset)) and given_tools is not None:  # ask(tools=[f])
        given_list = list(given_tools)
        call["tools"] = UNSET
    settings = resolve(call, configured(), defaults=defaults)
    if given_list is not None:
        tools = resolve_tools(given_list, {}, mcp_config=settings.mcp_config)
    if schema is None and settings.schema:
        schema = resolve_schema(settings.schema, user_namespace(namespace))
    if not tools and settings.tools:
        tools = resolve_tools(
            settings.tools, user_namespace(namespace), mcp_config=settings.mcp_config
        )
    model_id, note = resolve_model(settings)
    provider_name, name = parse_model_id(model_id)
    check_thinking(settings, provider_name)
    check_spending(settings, f"{provider_name}:{name}" if name else provider_name)
    if tools:
        with_tools = [n for n, caps in registered() if caps.tools]
        if not capabilities(provider_name).tools:
            raise ToolError(
                f"{provider_name!r} cannot call tools (yet): use a model of "
                f"{', '.join(with_tools)}, or leave tools out"
            )
        if schema is not None:
            raise ToolError("tools and a schema in one answer are not supported yet: use one")
    return Plan(settings, schema, provider_name, name, note, tuple(tools))


def check_spending(settings: Settings, model_id: str) -> None:
    """``max_cost`` needs a price; ``kernel_budget``: a warning at 80 % of it spent, new
    requests refused at 100 %."""
    free = capabilities(model_id.partition(":")[0]).free
    if settings.max_cost is not None and not free and price_of(model_id, settings.prices) is None:
        message = (
            f"no price is known for {model_id}, so the cost cap cannot be kept: set one "
            "with nbstream.pricing.set_price(...) or a prices file (--prices)"
        )
        raise SettingsError([Problem("max_cost", settings.max_cost, message, "call")])
    budget = settings.kernel_budget
    if budget is None:
        return
    spent = sum(t.cost for t in pricing_session().values())
    if spent >= budget:
        message = (
            f"this kernel has spent ${spent:.4f} of its ${budget:g} budget: new requests are "
            "refused; raise it (%config LLMMagics.kernel_budget) or restart the kernel"
        )
        raise SettingsError([Problem("kernel_budget", budget, message, "config")])
    if spent >= 0.8 * budget:
        warn_once(
            f"budget-80:{budget}",
            f"nbstream: this kernel has spent ${spent:.4f}, over 80 % of its ${budget:g} budget",
        )


def check_thinking(settings: Settings, provider_name: str) -> None:
    """``--thinking`` / ``--reasoning-effort`` for a provider that cannot honour them: a clear
    error before anything is sent, naming the providers that can."""
    caps = capabilities(provider_name)
    for option in ("thinking", "reasoning_effort"):
        value = getattr(settings, option)
        if value is not None and not getattr(caps, option):
            takes = [n for n, c in registered() if getattr(c, option)]
            message = (
                f"{provider_name!r} cannot honour it: use a model of "
                f"{', '.join(takes) or 'another provider'}, or leave it out"
            )
            raise SettingsError([Problem(option, value, message, "call")])


def make_stream(
    prompt: str | Composed | Callable[[Settings], str | Composed],
    call: Mapping[str, Any] | Plan,
    *,
    describe_option: Callable[[str], str] = neutral,
    awaited: bool = True,
    namespace: Mapping[str, Any] | None = None,
    sink: Sink | None = None,
    defaults: Mapping[str, Any] | None = None,
    whole: bool = False,
) -> Stream:
    """Build a ready-to-run stream from the call's options (:data:`~nbstream.settings.UNSET`
    = not given). ``prompt`` may be a function of the merged settings (e.g. interpolation
    within ``context_budget``). ``namespace``: where a schema named by a string is looked
    up (default: the user's namespace). ``whole``: ask for the answer in one piece where
    the provider can (a batch row nobody watches). ``sink``: where the stream's progress
    goes instead of the display of ``settings.display`` (e.g. a batch's progress); ``defaults``: the
    front door's own defaults, below the environment (:func:`~nbstream.settings.resolve`).
    Raises ``SettingsError``, ``ModelIdError`` or
    ``SchemaError``; nothing is sent then. ``call`` may be a :class:`Plan` already made
    (a batch's rows: one plan, one stream per row).

    With ``chat``, the earlier turns of the thread go into the request and the answer is
    recorded in it when the stream ends; with ``schema``, the answer is validated when it
    ends and, if it does not match, asked again (``retries``): :func:`run_awaited` /
    :func:`run_blocking` run those further streams."""
    decided = call if isinstance(call, Plan) else plan(call, namespace=namespace, defaults=defaults)
    settings, schema, provider_name = decided.settings, decided.schema, decided.provider_name
    name, full_id, note = decided.name, decided.model_id, decided.note
    side = RENDER_MAX_SIDE.set(decided.capabilities.image_max_side)
    try:
        filled = prompt(settings) if callable(prompt) else prompt
    finally:
        RENDER_MAX_SIDE.reset(side)
    composed = filled if isinstance(filled, Composed) else None
    text = composed.text if composed is not None else str(filled)
    if settings.cells:
        block, included = cells_block(settings.cells, 2 * settings.context_budget)
        text = f"{block}\n\n{text}"
        composed = Composed(
            text,
            (block + "\n\n", *composed.parts) if composed is not None and composed.parts else (),
            {
                **(composed.values if composed is not None else {}),
                **{c.key: c.state() for c in included},
            },
        )

    system = settings.system
    caps = decided.capabilities
    if schema is not None and not caps.schema:
        from nbstream.structured import instructions  # lazy: pydantic

        system = f"{system}\n\n{instructions(schema)}" if system else instructions(schema)
    chat: Chat | None = None
    thread_key: str | None = None
    messages: list[dict[str, str]] = []
    if settings.chat:
        base_url = settings.base_url or next(
            (os.environ[v] for v in caps.url_variables if os.environ.get(v)), None
        )
        budget = settings.chat_budget
        if budget is None:
            budget = caps.conversation_budget(settings.max_tokens, base_url)
        key = turn_key(settings.chat, current_cell_id())
        thread = get_thread(settings.chat)
        before = thread.index_of(key)
        thread_key = f"thread:{settings.chat}#{len(thread) if before is None else before}"
        history = thread.messages(key, budget, prompt=text, system=system)
        thread.reserve(key, text)  # a --bg answer ends later: its place is its cell's
        messages = history.turns
        system = history.system
        chat = Chat(settings.chat, key, history)
    else:
        leave_threads(current_cell_id())
    request = make_request(settings, text, name, messages=messages, system=system, schema=schema)
    media_notes: list[str] = []
    if composed is not None and composed.parts:
        parts, media_notes = fit_parts(composed.parts, provider_name, decided.capabilities)
        request = replace(request, parts=parts)
    if decided.tools:
        request = replace(
            request,
            tools=tuple(
                {"name": t.name, "description": t.description, "parameters": t.parameters}
                for t in decided.tools
            ),
        )
    if whole and caps.whole and not decided.tools:  # tool rounds stream (calls, partial text)
        request = replace(request, whole=True)
    if sink is None:
        sink = make_sink(settings, stoppable=awaited, schema=schema)
    if (schema is not None and settings.retries > 0) or decided.tools:
        sink = Relay(sink)
    inputs = fingerprints(composed.values if composed is not None else {})
    if thread_key is not None:
        inputs[thread_key] = thread_fingerprint(thread_key) or ""
    one_call = Call(
        settings=settings,
        provider_name=provider_name,
        model_id=full_id,
        prompt=text,
        schema=schema,
        chat=chat,
        sink=sink,
        describe_option=describe_option,
        notes=[n for n in (note, chat.note() if chat else None, *media_notes) if n],
        tools=list(decided.tools),
        inputs=inputs,
    )
    return one_call.stream(request)


def fingerprints(values: Mapping[str, Any]) -> dict[str, str]:
    """Each looked-up value's fingerprint (a value that cannot be fingerprinted is left out)."""
    found: dict[str, str] = {}
    for path, value in values.items():
        try:
            found[path] = fingerprint(value)
        except Exception:  # an object whose repr fails: not an input we can follow
            continue
    return found


def thread_fingerprint(key: str) -> str | None:
    """``thread:NAME#N``: the first N turns of the thread (the ones before the answer's
    own), as they are now — all of them, whatever the budget sent; ``None`` when the thread
    has fewer now (reset, or turns forgotten)."""
    name, _, count = key[len("thread:") :].rpartition("#")
    turns = get_thread(name).turns[: int(count)]
    if len(turns) < int(count):
        return None
    return fingerprint(repr([(t.user, t.assistant, t.final) for t in turns]))


INPUT_CHECKS["thread:"] = thread_fingerprint


def fit_parts(
    parts: Sequence[str | Attachment], provider_name: str, caps: Capabilities
) -> tuple[tuple[str | Attachment, ...], list[str]]:
    """The prompt's parts as ``provider_name`` can take them: images downscaled to its
    limits (with a note for the status line each); raises :class:`MediaError` when it takes
    no images (or no PDFs), naming providers that do."""
    fitted: list[str | Attachment] = []
    notes: list[str] = []
    for part in parts:
        if isinstance(part, Attachment):
            able = caps.images if part.kind == "image" else caps.documents
            if not able:
                what = "images" if part.kind == "image" else "PDFs"
                others = [
                    n
                    for n, c in registered()
                    if (c.images if part.kind == "image" else c.documents)
                ]
                raise MediaError(
                    f"{{{part.label}}} is {'an image' if part.kind == 'image' else 'a PDF'}, "
                    f"and {provider_name!r} takes no {what}: use a model of "
                    f"{', '.join(others) or 'another provider'}, or leave it out"
                )
            part, changed = fit(part, caps.image_max_side, caps.image_max_bytes)
            if changed:
                notes.append(changed)
        fitted.append(part)
    return tuple(fitted), notes


def caller_namespace(depth: int = 2) -> Mapping[str, Any]:
    """The variables of the code that called the front door which calls this (``depth``
    frames up): a schema or a prompt field may name them."""
    try:
        frame = sys._getframe(depth)
    except ValueError:
        return {}
    return ChainMap(frame.f_locals, frame.f_globals)


def user_namespace(namespace: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    """``namespace``, else the IPython user namespace, else nothing."""
    if namespace is not None:
        return namespace
    shell = get_shell()
    user_ns = getattr(shell, "user_ns", None)
    return user_ns if isinstance(user_ns, Mapping) else {}


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
        mode = ("widget" if widgets_available() else "html") if in_kernel() else "text"
    if mode == "widget":
        from nbstream.display.widget import WidgetSink  # lazy: anywidget

        return WidgetSink(
            interval=settings.throttle,
            stoppable=stoppable,
            show_prompt=settings.show_prompt,
            fallback_after=WIDGET_FALLBACK_AFTER if settings.display == "auto" else None,
            schema=schema,
            save_thinking=settings.save_thinking == "on",
        )
    if mode == "html":
        return HtmlSink(
            show_prompt=settings.show_prompt,
            schema=schema,
            save_thinking=settings.save_thinking == "on",
        )

    return TerminalSink(show_prompt=settings.show_prompt)


async def run_awaited(
    stream: Stream, *, pump: bool = True, current: list[Stream] | None = None
) -> Response:
    """Run inside the caller's event loop (a kernel cell that awaits): Stop works. Runs the
    call's re-asks and tool rounds too (:class:`Call`); the first stream's ``interrupted``
    tells whether the user interrupted any of them. ``pump=False``: never pump widget
    messages (a stream running in the background, or one of many that share one pump).
    ``current``: a one-item list that holds the stream running now (for :func:`stop_call`)."""
    current = [stream] if current is None else current
    current[:] = [stream]
    if pump and stream.sink.pumps_widget_messages:
        async with widget_messages_pumped():
            return await _run_call(stream, current)
    return await _run_call(stream, current)


def stop_call(current: list[Stream]) -> None:
    """Stop a call run with ``current`` (:func:`run_awaited`): the stream running now, and
    any round or re-ask that would follow it (call it on the call's event loop)."""
    stream = current[0]
    call = call_of(stream)
    if call is not None:
        call.halted = True
    stream.stop()


async def _run_call(first: Stream, current: list[Stream]) -> Response:
    """Run ``first`` and the streams that follow it; ``current[0]`` is the one running.
    The rounds of an answer with tools share one SDK client (unless a batch already shares
    them): a new client per round cost ~25 ms with Gemini's SDK (bench/bench_tools.py)."""
    call = call_of(first)
    if call is not None and call.tools and CLIENTS.get() is None:
        async with shared_clients():
            return await _run_streams(first, current)
    return await _run_streams(first, current)


async def _run_streams(first: Stream, current: list[Stream]) -> Response:
    stream = first
    while True:
        current[0] = stream
        response = await stream.run()
        call = call_of(stream)
        if call is not None and call.tool_round is not None:
            await call.run_tools()  # on this thread: a tool's output belongs to the cell
        following = None if call is None else call.follow_up(stream)
        if following is None:
            break
        stream = following
    if stream.interrupted:
        first.interrupted = True
    return response


def _interrupt(current: list[Stream]) -> None:
    """Ctrl-C / kernel interrupt in the blocking paths: stop the running stream, and run
    no re-ask after it."""
    stream = current[0]
    call = call_of(stream)
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
            response.names.append(out)


__all__ = [
    "caller_namespace",
    "configured",
    "make_request",
    "make_sink",
    "make_stream",
    "resolve_model",
    "run_awaited",
    "run_blocking",
    "stop_call",
    "store",
]
