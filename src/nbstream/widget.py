"""The live view in a notebook: one small anywidget plus the static answer that replaces it.

Traffic is bounded (see NOTES §4): the kernel renders Markdown incrementally
(:mod:`nbstream.markdown`), sends each frozen block once, and sends the open tail as a
diff against what the browser already has. Pushes are throttled by time (at most one per
``interval`` seconds, the first token at once) and the final state is always sent.

Messages, kernel → browser (``msg:custom``)::

    {"type": "update", "frozen": html, "keep": n, "tail": html, "status": {...}}
    {"type": "reset",  "frozen": html, "tail": html, "status": {...}}

``keep`` is the number of UTF-16 code units of the previous tail to keep before appending
``tail``. Browser → kernel: ``{"event": "stop"}`` (the Stop button) and ``{"event": "sync"}``
(a view that just rendered asks for everything so far).

When the stream ends, the widget's display is replaced (``update_display``) by a static
HTML + text bundle, so a saved notebook shows the answer without widget state.
"""

from __future__ import annotations

import asyncio
import html as htmlmod
import json
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets

from . import markdown

if TYPE_CHECKING:
    from .engine import Stream
    from .response import Response

_STATIC = Path(__file__).parent / "static"


class StreamView(anywidget.AnyWidget):
    """Status line, Stop button and the answer, live. Content travels in custom messages."""

    _esm = traitlets.Unicode((_STATIC / "view.js").read_text(encoding="utf-8")).tag(sync=True)
    _css = traitlets.Unicode((_STATIC / "view.css").read_text(encoding="utf-8")).tag(sync=True)
    llm_model = traitlets.Unicode("").tag(sync=True)  # not `model_id`: Widget owns that name
    note = traitlets.Unicode("").tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)


def status_dict(stream: Stream) -> dict[str, Any]:
    """The changing part of the status line (model and note travel once, as traits)."""
    streaming_for = 0.0
    if stream.first_token_at is not None:
        streaming_for = time.monotonic() - stream.first_token_at
    return {
        "state": stream.state,
        "chunks": stream.chunks,
        "elapsed": round(stream.elapsed, 2),
        "streaming_for": round(streaming_for, 2),
    }


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


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
    """Streams into a :class:`StreamView`, then leaves a static answer in its place."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.view: StreamView | None = None
        self.display_id = f"nbstream-{uuid.uuid4().hex}"
        self.pushes = 0
        self.bytes_sent = 0
        self._md = markdown.IncrementalMarkdown()
        self._sent_tail = ""
        self._last_push = -1.0e9
        self._timer: asyncio.TimerHandle | None = None
        self._stream: Stream | None = None

    # -- Sink protocol -------------------------------------------------------------------

    def on_start(self, stream: Stream) -> None:
        from IPython.display import display

        self._stream = stream
        self.view = StreamView(llm_model=stream.model_id, note=stream.note or "")
        self.view.on_msg(self._on_msg)
        display(self.view, display_id=self.display_id)
        self._push_now()

    def on_delta(self, stream: Stream, delta: str) -> None:
        wait = self.interval - (time.monotonic() - self._last_push)
        if wait <= 0:
            self._push_now()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(wait, self._push_now)

    def on_end(self, stream: Stream, response: Response) -> None:
        from IPython.display import update_display

        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.view is not None and response.error:
            self.view.error = response.error
        self._send(self._md.finish())
        bundle = static_bundle(response)
        self.bytes_sent += len(bundle["text/html"].encode()) + len(bundle["text/plain"].encode())
        update_display(bundle, raw=True, display_id=self.display_id)
        if self.view is not None:
            self.view.close()

    # -- internals -----------------------------------------------------------------------

    def _on_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        # May run on a subshell thread (ipykernel 7.0–7.3): only thread-safe work here.
        if not isinstance(content, dict) or self._stream is None:
            return
        event = content.get("event")
        if event == "stop":
            self._stream.stop()
        elif event == "sync":
            stream = self._stream
            loop = stream._loop
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(self._send_reset)

    def _push_now(self) -> None:
        self._timer = None
        assert self._stream is not None
        self._send(self._md.update(self._stream.text))

    def _send_reset(self) -> None:
        if self.view is None or self._stream is None:
            return
        self._sent_tail = self._md_tail()
        self._emit(
            {
                "type": "reset",
                "frozen": self._md.frozen_html,
                "tail": self._sent_tail,
                "status": status_dict(self._stream),
            }
        )

    def _md_tail(self) -> str:
        return self._md.html[len(self._md.frozen_html) :]

    def _send(self, update: markdown.Update) -> None:
        assert self._stream is not None
        status = status_dict(self._stream)
        if update.reset:
            self._sent_tail = update.tail
            self._emit(
                {"type": "reset", "frozen": update.frozen, "tail": update.tail, "status": status}
            )
            return
        keep = common_prefix_len(self._sent_tail, update.tail)
        msg = {
            "type": "update",
            "frozen": update.frozen,
            "keep": utf16_len(update.tail[:keep]),
            "tail": update.tail[keep:],
            "status": status,
        }
        self._sent_tail = update.tail
        self._emit(msg)

    def _emit(self, msg: dict[str, Any]) -> None:
        self._last_push = time.monotonic()
        if self.view is None:
            return
        self.pushes += 1
        self.bytes_sent += len(json.dumps(msg).encode())
        self.view.send(msg)


def plain_text(response: Response) -> str:
    """The ``text/plain`` a saved notebook keeps: the answer, plus how it ended if not fine."""
    text = response.text
    if response.finish_reason == "stop":
        return text
    ending = {
        "length": "cut by --max-tokens",
        "cancelled": "stopped — partial answer",
        "error": f"failed: {response.error}",
    }[response.finish_reason]
    return f"{text}\n\n[nbstream: {ending}]" if text else f"[nbstream: {ending}]"


def static_bundle(response: Response) -> dict[str, str]:
    """The HTML + text bundle that replaces the live view when the stream ends."""
    body = markdown.render(response.text)
    color = "#c00" if response.finish_reason == "error" else "#777"
    footer = (
        f'<div class="nbstream-footer" data-finish-reason="{response.finish_reason}" '
        f'style="color:{color};font-size:0.85em;margin-top:0.4em">'
        f"{htmlmod.escape(response.summary())}</div>"
    )
    return {
        "text/html": f'<div class="nbstream-answer">{body}</div>{footer}',
        "text/plain": plain_text(response),
    }
