"""Live answers without widgets: throttled ``update_display`` of sanitized HTML.

For front ends that show outputs but not widgets (ipywidgets or anywidget missing in the
kernel, custom widgets disabled as in Colab, Quarto- or Positron-style renderers) and for
``display="html"``. The same incremental, sanitizing renderer as the widget feeds it; each
update re-sends the whole HTML, so it is throttled harder (a few updates per second). There
is no Stop button here; interrupt still stops. At the end the same static answer as the
widget's replaces the live output (``docs/design.md#what-a-saved-notebook-keeps``).

:class:`Throttle` (one push now, or one timer for later) is shared with the widget sink.
"""

from __future__ import annotations

import asyncio
import html as htmlmod
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from nbstream.kernel import update_display
from nbstream.prompts.media import thumbnails
from nbstream.render.answer_html import ANSWER_OPEN, renderer, static_bundle, structured_html
from nbstream.store import provenance

if TYPE_CHECKING:
    from nbstream.engine import Stream
    from nbstream.response import Response
    from nbstream.structured.schema import Schema

HTML_INTERVAL = 0.25
"""Seconds between live HTML updates (each carries the whole answer so far)."""


class Throttle:
    """Calls ``push`` at most once per ``interval`` seconds. A request in an open window
    pushes at once (``now=True``: always); one in a closed window schedules ONE trailing
    push on the running asyncio loop, and later requests ride on it (a request costs an
    attribute check: a batch calls it per token). With no running loop the request is
    dropped: the next one after the window, or the caller's final push, shows the state.
    Call it on the loop's thread."""

    def __init__(self, interval: float, push: Callable[[], None]) -> None:
        self.interval = interval
        self._push = push
        self._last = -1.0e9
        self._timer: asyncio.TimerHandle | None = None

    def request(self, now: bool = False) -> None:
        if now:
            self.fire()
            return
        if self._timer is not None:
            return
        wait = self.interval - (time.monotonic() - self._last)
        if wait <= 0:
            self.fire()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._timer = loop.call_later(wait, self.fire)

    def fire(self) -> None:
        self.cancel()
        self._last = time.monotonic()
        self._push()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None


def live_bundle(html: str, status: str) -> dict[str, str]:
    """What a live HTML update shows: the answer so far and a status line."""
    line = f'<div class="nbstream-footer">{htmlmod.escape(status)}</div>'
    return {
        "text/html": f"{ANSWER_OPEN}{html}</div>{line}",
        "text/plain": f"[nbstream: {status}]",
    }


def status_words(stream: Stream) -> str:
    """``openai:gpt-4o-mini · streaming · 42 tokens · 1.3 s`` (with the stream's note, if
    any, after the model; while it thinks, the thinking tokens so far)."""
    parts = [stream.model_id, stream.note or "", stream.label]
    if stream.state == "thinking":
        parts.append(f"{stream.thinking_chunks} thinking tokens")
    parts += [f"{stream.chunks} tokens", f"{stream.elapsed:.1f} s"]
    return " · ".join(p for p in parts if p)


class HtmlSink:
    """Streams an answer as throttled HTML display updates (see the module docstring)."""

    pumps_widget_messages = False

    def __init__(
        self,
        interval: float = HTML_INTERVAL,
        *,
        show_prompt: bool = False,
        schema: Schema | None = None,
        save_thinking: bool = True,
    ) -> None:
        self.show_prompt = show_prompt
        self.save_thinking = save_thinking
        self.schema = schema
        self.display_id = f"nbstream-{uuid.uuid4().hex}"
        self.updates = 0
        self._md = renderer(schema)
        self._stream: Stream | None = None
        self._throttle = Throttle(max(interval, 0.0), self._push)

    def on_start(self, stream: Stream) -> None:
        from IPython.display import display

        self._stream = stream
        display(live_bundle("", status_words(stream)), raw=True, display_id=self.display_id)

    def on_delta(self, stream: Stream, delta: str) -> None:
        self._throttle.request(now=stream.chunks == 1)

    def on_thinking(self, stream: Stream, delta: str) -> None:
        self._throttle.request()  # the status line counts the thinking tokens

    def on_status(self, stream: Stream) -> None:
        if stream.state in ("waiting", "retrying", "thinking"):  # "streaming": its first token
            self._throttle.request()

    def on_end(self, stream: Stream, response: Response) -> None:

        self._throttle.cancel()
        self._md.update(stream.text)
        self._md.finish()
        html = self._md.html
        if self.schema is not None:
            html = structured_html(response, html)
        prompt = stream.request.prompt if self.show_prompt else None
        shown = thumbnails(stream.request.parts) if prompt else None
        bundle = static_bundle(
            response,
            html=html,
            prompt=prompt,
            note=stream.note,
            thumbnails=shown,
            thinking=self.save_thinking,
        )
        metadata = {"nbstream": provenance(stream, response)}  # kept in the saved notebook
        update_display(bundle, metadata=metadata, raw=True, display_id=self.display_id)

    def on_continue(self, stream: Stream) -> None:
        """A new stream continues this answer (a round after tool calls): go on rendering."""
        self._stream = stream
        self._push()

    def on_restart(self, stream: Stream) -> None:
        """A new stream continues this display (a validation re-ask): start over."""
        self._throttle.cancel()
        self._stream = stream
        self._md = renderer(self.schema)
        self._push()

    def _push(self) -> None:

        stream = self._stream
        assert stream is not None
        self._md.update(stream.text)
        self.updates += 1
        bundle = live_bundle(self._md.html, status_words(stream))
        update_display(bundle, raw=True, display_id=self.display_id)
