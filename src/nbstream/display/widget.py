"""The live view in a notebook: one small anywidget; the static answer that replaces it is
:mod:`nbstream.render.answer_html`'s.

Traffic is bounded (``docs/design.md#the-iopub-rate-limit-and-throttling``): the kernel
renders Markdown incrementally (:mod:`nbstream.render.incremental`), sends each frozen block once,
and sends the open tail as a diff against what the browser already has. Pushes are
throttled by time (at most one per ``interval`` seconds, the first token at once) and the
final state is always sent.

The protocol is declared once, here, as the TypedDicts below; ``static/view.js`` consumes
them (its header repeats the shapes). Lengths are in UTF-16 code units, as JavaScript
counts. When the stream ends, the widget's display is replaced (``update_display``) by a
static HTML + text bundle, so a saved notebook shows the answer without widget state
(``docs/design.md#what-a-saved-notebook-keeps``), and the widget and its layout are closed.

A structured answer (``--schema``) is rendered by
:class:`~nbstream.structured.IncrementalStructured` instead of the Markdown renderer: the
JSON so far as a table that grows row by row, all of it in the tail (the diff against the
browser's tail sends only the changed end); the static answer shows the validated object
(:func:`structured_html`), and ``text/plain`` keeps the JSON text.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypedDict

import anywidget
import traitlets
from typing_extensions import NotRequired

from nbstream.display.live_html import HTML_INTERVAL, Throttle, live_bundle, status_words
from nbstream.kernel import update_display
from nbstream.prompts.media import thumbnails
from nbstream.render import incremental
from nbstream.render.answer_html import (
    compact_js,
    inline_css,
    renderer,
    static_bundle,
    structured_html,
)
from nbstream.store import provenance

if TYPE_CHECKING:
    from nbstream.engine import Stream
    from nbstream.response import Response
    from nbstream.structured.schema import Schema


# -- the protocol: kernel → browser (msg:custom) ------------------------------------------


class UpdateMsg(TypedDict):
    """``buf = tail[:keep] + add; frozen += buf[:freeze]; tail = buf[freeze:]``.

    A block that froze after it was shown in the tail is therefore not sent again.
    ``freeze`` is omitted when nothing froze; ``state``/``label`` when they did not change.
    """

    type: Literal["update"]
    keep: int
    add: str
    chunks: int
    freeze: NotRequired[int]
    state: NotRequired[str]
    label: NotRequired[str]


class ResetMsg(TypedDict):
    """Everything so far (the reply to ``sync``, or after the renderer reset). The clocks
    (seconds since the start / since the first token) let the browser run the status line."""

    type: Literal["reset"]
    frozen: str
    tail: str
    state: str
    label: str
    chunks: int
    elapsed: float
    streaming_for: float
    thinking: NotRequired[str]
    thinking_tokens: NotRequired[int]
    thinking_for: NotRequired[float]


class StatusMsg(TypedDict):
    """The state changed without new text (e.g. ``retrying`` with its countdown label)."""

    type: Literal["status"]
    state: str
    label: str


class ThinkingMsg(TypedDict):
    """More of the model's thinking (appended as text, never as HTML) and the count so far."""

    type: Literal["thinking"]
    add: str
    tokens: int


class ApprovalMsg(TypedDict):
    """A tool call waits for the user: a card with the function, its arguments (formatted
    JSON) and Run / Skip / Always buttons."""

    type: Literal["approval"]
    id: int
    name: str
    arguments: str


class ApprovedMsg(TypedDict):
    """The call was decided (``answer`` in words): the card keeps it, its buttons off."""

    type: Literal["approved"]
    id: int
    answer: str


ViewMsg = UpdateMsg | ResetMsg | StatusMsg | ThinkingMsg | ApprovalMsg | ApprovedMsg


class EventMsg(TypedDict):
    """Browser → kernel: ``stop`` (the Stop button), ``sync`` (a view that just rendered
    asks for everything so far), ``approve`` (a card's button: ``id`` and ``answer``, one of
    ``run``, ``skip``, ``always``)."""

    event: Literal["stop", "sync", "approve"]
    id: NotRequired[int]
    answer: NotRequired[str]


VIEW_WAIT = 2.0
"""Seconds a tool call waits for a view to render before it counts as headless (refused)."""
ANSWERS = {"run": "ran", "skip": "skipped", "always": "always runs in this kernel"}


class Rendered(Protocol):
    """What a renderer's ``update`` / ``finish`` returns (Markdown's or the structured one's)."""

    @property
    def frozen(self) -> str: ...

    @property
    def tail(self) -> str: ...

    @property
    def reset(self) -> bool: ...


class StreamView(anywidget.AnyWidget):
    """Status line, Stop button and the answer, live. Content travels in custom messages."""

    _esm = compact_js("view.js")
    _css = inline_css("view.css") + " " + inline_css("cards.css")
    llm_model = traitlets.Unicode("").tag(sync=True)  # not `model_id`: Widget owns that name
    note = traitlets.Unicode("").tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)
    stoppable = traitlets.Bool(True).tag(sync=True)
    prompt = traitlets.Unicode("").tag(sync=True)  # shown (collapsed) with --show-prompt

    def __repr__(self) -> str:
        # The text/plain fallback a front end without widgets (or a notebook saved
        # mid-stream) keeps; the finished answer replaces it.
        return (
            f"[nbstream: answer from {self.llm_model} streaming in a live view; the text "
            "replaces this line when it ends]"
        )


def timing(stream: Stream) -> dict[str, Any]:
    """State, count and clocks, for a view that (re)joins mid-stream."""
    streaming_for = 0.0
    if stream.first_token_at is not None:
        streaming_for = time.monotonic() - stream.first_token_at
    clocks: dict[str, Any] = {
        "state": stream.state,
        "label": stream.label,
        "chunks": stream.chunks,
        "elapsed": round(stream.elapsed, 2),
        "streaming_for": round(streaming_for, 2),
    }
    if stream.first_thinking_at is not None:
        clocks["thinking"] = stream.thinking
        clocks["thinking_tokens"] = stream.thinking_chunks
        clocks["thinking_for"] = round(time.monotonic() - stream.first_thinking_at, 2)
    return clocks


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def common_prefix_len(a: str, b: str) -> int:
    """Length of the common prefix of ``a`` and ``b`` (fast path: b extends a)."""
    if b.startswith(a):
        return len(a)
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class WidgetSink:
    """Streams into a :class:`StreamView`, then leaves a static answer in its place.

    ``send`` receives every protocol message (default: the view's ``send``); tests and the
    benchmark inject their own to observe pushes. ``stoppable=False`` hides the Stop button
    (the cell does not await the stream, so a click could not be heard; interrupt works).
    ``fallback_after``: if no view has rendered (asked to ``sync``) that many seconds into
    the stream, the front end does not show widgets: stream as live HTML instead
    (:mod:`nbstream.display.live_html`); ``None`` never falls back.
    """

    pumps_widget_messages = True

    def __init__(
        self,
        interval: float = 0.05,
        *,
        stoppable: bool = True,
        show_prompt: bool = False,
        fallback_after: float | None = None,
        send: Callable[[ViewMsg], None] | None = None,
        schema: Schema | None = None,
        save_thinking: bool = True,
    ) -> None:
        self.interval = interval
        self.save_thinking = save_thinking
        self._thinking_sent = 0
        """Characters of the stream's thinking already sent to the view."""
        self.schema = schema
        self.stoppable = stoppable
        self.show_prompt = show_prompt
        self.fallback_after = fallback_after
        self.view: StreamView | None = None
        self.display_id = f"nbstream-{uuid.uuid4().hex}"
        self.pushes = 0
        self.bytes_sent = 0
        self.synced = False
        self.html_fallback = False
        self._send_to = send
        self._md = renderer(schema)
        self._sent_tail = ""
        self._sent_state = "waiting"
        self._throttle = Throttle(interval, self._push_now)
        self._stream: Stream | None = None
        self._waiting: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future[str]]] = {}
        self._cards = itertools.count(1)

    @property
    def html(self) -> str:
        """Everything rendered so far (what the browser shows)."""
        return self._md.html

    # -- Sink protocol -------------------------------------------------------------------

    def on_start(self, stream: Stream) -> None:
        from IPython.display import display

        self._stream = stream
        self.view = StreamView(
            llm_model=stream.model_id,
            note=stream.note or "",
            stoppable=self.stoppable,
            prompt=stream.request.prompt if self.show_prompt else "",
        )
        self.view.on_msg(self._on_msg)
        display(self.view, display_id=self.display_id)
        # No push yet: the view asks for everything ("sync") when it renders, and the first
        # token must not wait for a throttle window opened by an empty push.

    def on_delta(self, stream: Stream, delta: str) -> None:
        if self._should_fall_back(stream):
            self.html_fallback = True
            self._throttle.interval = max(self.interval, HTML_INTERVAL)
        self._throttle.request(now=stream.chunks == 1)  # the first token is shown at once

    def on_thinking(self, stream: Stream, delta: str) -> None:
        """Thinking streams like the answer: throttled, sent as text appended to the view's
        thinking section (the first piece at once)."""
        self._throttle.request(now=stream.thinking_chunks == 1)

    def on_status(self, stream: Stream) -> None:
        if self.view is not None and self.view.note != (stream.note or ""):
            self.view.note = stream.note or ""  # e.g. a provider's fallback (synced trait)
        if stream.state in ("waiting", "retrying") and stream.state != self._sent_state:
            self._sent_state = stream.state
            self._emit({"type": "status", "state": stream.state, "label": stream.label})

    def on_end(self, stream: Stream, response: Response) -> None:

        if self.view is not None and response.error:
            self.view.error = response.error
        self._push_now(final=True)  # the final state always arrives
        html = self._md.html  # == a one-shot render
        if self.schema is not None:
            html = structured_html(response, html)
        bundle = static_bundle(
            response,
            html=html,
            prompt=stream.request.prompt if self.show_prompt else None,
            note=stream.note,
            thumbnails=thumbnails(stream.request.parts) if self.show_prompt else None,
            thinking=self.save_thinking,
        )
        self.bytes_sent += len(json.dumps(bundle).encode())
        metadata = {"nbstream": provenance(stream, response)}  # kept in the saved notebook
        update_display(bundle, metadata=metadata, raw=True, display_id=self.display_id)
        if self.view is not None:
            self.view.layout.close()  # a DOMWidget's layout is a widget (and comm) of its own
            self.view.close()

    def on_continue(self, stream: Stream) -> None:
        """A new stream continues this answer (a round after tool calls): its text starts
        with what the view shows, so the rendering goes on where it was."""
        self._stream = stream
        if self.view is not None:
            self.view.note = stream.note or ""
        self.on_status(stream)

    def on_restart(self, stream: Stream) -> None:
        """A new stream continues this display (a validation re-ask): the view starts over
        with its status (its note says why) and an empty answer."""
        self._throttle.cancel()
        self._stream = stream
        self._md = renderer(self.schema)
        if self.view is not None:
            self.view.error = ""
            self.view.note = stream.note or ""
        self._send_reset()

    # -- internals -----------------------------------------------------------------------

    def _on_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        # May run on a subshell thread (ipykernel 7.0–7.3): only thread-safe work here.
        stream = self._stream
        if not isinstance(content, dict) or stream is None:
            return
        event = content.get("event")
        if event == "stop":
            stream.stop()
            for waiting in list(self._waiting):
                self._answer(waiting, "stop")
        elif event == "approve":
            answer = content.get("answer")
            card = content.get("id")
            if isinstance(card, int) and answer in ANSWERS:
                self._answer(card, str(answer))
        elif event == "sync":
            self.synced = True
            stream.call_in_loop(self._send_reset)

    async def approve(self, name: str, arguments: str) -> str:
        """Ask in the view whether a tool call may run: ``run``, ``skip``, ``always``,
        ``stop`` (the Stop button while it waits) or ``refuse`` (no view rendered within
        :data:`VIEW_WAIT` seconds: a headless run, nobody to ask)."""
        waited = 0.0
        while not self.synced and waited < VIEW_WAIT:
            await asyncio.sleep(0.05)
            waited += 0.05
        if not self.synced or (self.view is None and self._send_to is None):
            return "refuse"
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()
        ident = next(self._cards)
        self._waiting[ident] = (loop, future)
        card: ApprovalMsg = {"type": "approval", "id": ident, "name": name, "arguments": arguments}
        self._emit(card)
        try:
            answer = await future
        finally:
            self._waiting.pop(ident, None)
        said = "stopped" if answer == "stop" else ANSWERS.get(answer, answer)
        decided: ApprovedMsg = {"type": "approved", "id": ident, "answer": said}
        self._emit(decided)
        return answer

    def _answer(self, ident: int, answer: str) -> None:
        """Resolve a waiting card (thread-safe: a click may arrive on another thread)."""
        waiting = self._waiting.get(ident)
        if waiting is None:
            return
        loop, future = waiting

        def resolve() -> None:
            if not future.done():
                future.set_result(answer)

        loop.call_soon_threadsafe(resolve)

    def _should_fall_back(self, stream: Stream) -> bool:
        return (
            self.fallback_after is not None
            and not self.synced
            and not self.html_fallback
            and stream.elapsed >= self.fallback_after
        )

    def _push_now(self, final: bool = False) -> None:
        self._throttle.cancel()
        assert self._stream is not None
        self._send_thinking(self._stream)
        update: Rendered = self._md.update(self._stream.text)
        if final:
            update = _merge(update, self._md.finish())
        if self.html_fallback and not final:
            bundle = live_bundle(self._md.html, status_words(self._stream))
            update_display(bundle, raw=True, display_id=self.display_id)
            return
        self._send(update)

    def _send_thinking(self, stream: Stream) -> None:
        """The thinking that arrived since the last push, if any (one message per push)."""
        if stream.thinking_chunks == 0 or self.html_fallback:
            return
        text = stream.thinking
        if len(text) > self._thinking_sent:
            msg: ThinkingMsg = {
                "type": "thinking",
                "add": text[self._thinking_sent :],
                "tokens": stream.thinking_chunks,
            }
            self._thinking_sent = len(text)
            self._emit(msg)

    def _send_reset(self) -> None:
        """Everything so far, for a view that just rendered (its "sync" request)."""
        if self.view is not None:
            self._send(incremental.Update(self._md.frozen_html, self._md.tail_html, reset=True))

    def _send(self, update: Rendered) -> None:
        stream = self._stream
        assert stream is not None
        if update.reset:
            self._sent_tail = update.tail
            self._sent_state = stream.state
            self._thinking_sent = len(stream.thinking)  # the reset carries it all
            reset: ResetMsg = {
                "type": "reset",
                "frozen": update.frozen,
                "tail": update.tail,
                **timing(stream),  # type: ignore[typeddict-item]
            }
            self._emit(reset)
            return
        # Newly frozen blocks were usually on screen already as (part of) the tail: diff
        # frozen+tail against the tail the browser has, then say how much of it froze.
        combined = update.frozen + update.tail
        keep = common_prefix_len(self._sent_tail, combined)
        unchanged = not update.frozen and keep == len(combined) == len(self._sent_tail)
        if unchanged and stream.state == self._sent_state and not self._ended(stream):
            return  # nothing new for the answer (e.g. a push for thinking only)
        msg: UpdateMsg = {
            "type": "update",
            "keep": utf16_len(combined[:keep]),
            "add": combined[keep:],
            "chunks": stream.chunks,
        }
        if update.frozen:
            msg["freeze"] = utf16_len(update.frozen)
        if stream.state != self._sent_state:
            msg["state"] = self._sent_state = stream.state
            msg["label"] = stream.label
        self._sent_tail = update.tail
        self._emit(msg)

    @staticmethod
    def _ended(stream: Stream) -> bool:
        return stream.state not in ("waiting", "retrying", "thinking", "streaming")

    def _emit(self, msg: ViewMsg) -> None:
        send = self._send_to or (self.view.send if self.view is not None else None)
        if send is None:
            return
        self.pushes += 1
        self.bytes_sent += len(json.dumps(msg).encode())
        send(msg)


def _merge(first: Rendered, second: Rendered) -> Rendered:
    """Two consecutive updates as one (for the final push)."""
    if second.reset:
        return second
    if first.reset:
        return incremental.Update(first.frozen + second.frozen, second.tail, reset=True)
    return incremental.Update(first.frozen + second.frozen, second.tail)
