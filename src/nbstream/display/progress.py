"""The progress display of one batch (``nbstream.map`` over many rows): ONE per batch.

A batch runs hundreds to thousands of rows, dozens at a time; a display per row would flood
the notebook and the iopub channel. :mod:`nbstream.batch` keeps a :class:`Tally` (plain
counters it mutates) and calls :meth:`ProgressDisplay.refresh` whenever it changed, as
often as it likes: each display throttles itself by time, so the front end sees at most a
few updates per second whatever the batch size, and :meth:`ProgressDisplay.close` always
shows the final state.

Flavours (:func:`make_progress`, from nbstream's ``display`` option):

``widget``
    :class:`ProgressView`, one small anywidget: counts, a bar, a pane with one answer, a
    Stop button. At most 10 updates/s, each ONE comm message (the numbers travel in one
    ``Dict`` trait, the pane text only when it changed). At the end its display is replaced
    by a static HTML + text bundle, so a saved notebook shows the result without widget
    state (as :class:`~nbstream.display.widget.WidgetSink` does for one answer).
``html``
    The same static bundle, re-sent by ``update_display`` at most every 0.5 s (front ends
    without widgets). No Stop button; interrupt works.
``text``
    One line on stderr, rewritten with ``\\r`` at most every 0.25 s; the summary at the end.
``none``
    Nothing.

LLM output is untrusted: the pane text reaches the page through ``textContent`` in the
widget and HTML-escaped everywhere else.
"""

from __future__ import annotations

import functools
import html as htmlmod
import json
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from nbstream import kernel
from nbstream.display.live_html import Throttle
from nbstream.pricing import format_cost
from nbstream.render.answer_html import compact_js, inline_css
from nbstream.response import EMPTY_INPUT

if TYPE_CHECKING:
    from nbstream.response import Response


WIDGET_INTERVAL = 0.1
"""Seconds between widget updates: at most 10 comm messages per second per batch."""
HTML_INTERVAL = 0.5
"""Seconds between live HTML updates (each re-sends the whole bundle)."""
TEXT_INTERVAL = 0.25
"""Seconds between rewrites of the terminal line."""
PANE_CHARS = 2000
"""The pane shows the last this many characters of its answer (the rest never travels)."""


# -- the state ----------------------------------------------------------------------------


@dataclass
class Tally:
    """The state of one batch; batch.py mutates it, displays read it.

    ``done`` counts rows that finished (finish_reason ``stop`` or ``length``), cached ones
    included; ``cached`` is the part of ``done`` replayed from the cache (nothing paid).
    ``cost`` is USD so far, ``None`` once any row's cost is unknown (:meth:`record` keeps
    that rule). ``pane_title`` / ``pane_text``: the answer the small pane shows (the row
    streaming, or the last finished). ``started`` / ``ended`` are ``time.monotonic()``.
    """

    total: int
    mode: str = "stream"  # "stream" (rows streamed here) or "batch" (provider's batch service)
    model: str = ""
    done: int = 0
    failed: int = 0
    cancelled: int = 0
    skipped: int = 0
    """Rows not sent: what their prompt uses is missing (None/NaN; ``map(missing="skip")``)."""
    running: int = 0
    cached: int = 0
    output_tokens: int = 0
    cost: float | None = 0.0
    note: str = ""
    pane_title: str = ""
    pane_text: str = ""
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None

    @property
    def finished(self) -> int:
        """Rows that ended, however: done + failed + cancelled + skipped."""
        return self.done + self.failed + self.cancelled + self.skipped

    @property
    def answered(self) -> int:
        """Rows that got their answer (or their error): what the bar fills with. Cancelled
        rows are not answered: after a Stop the bar shows how far the batch got."""
        return self.done + self.failed + self.skipped

    @property
    def elapsed(self) -> float:
        """Seconds since the start, up to ``ended`` once the batch ended."""
        end = self.ended if self.ended is not None else time.monotonic()
        return max(0.0, end - self.started)

    @property
    def tokens_per_second(self) -> float:
        """Output tokens of the finished rows over the elapsed time (the batch's throughput,
        not one stream's speed)."""
        elapsed = self.elapsed
        return self.output_tokens / elapsed if elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the rate rows have finished so far; ``None`` until a row finished
        (rows replayed from the cache do not count: they finish at once and would promise
        far too early an end), and once the batch ended before all rows did."""
        remaining = self.total - self.finished
        if remaining <= 0:
            return 0.0
        paced = self.finished - self.cached
        elapsed = self.elapsed
        if self.ended is not None or paced < 1 or elapsed <= 0:
            return None
        return remaining * elapsed / paced

    @property
    def state(self) -> str:
        """``running``; at the end ``finished``, ``failed`` (some row failed) or ``stopped``
        (rows were cancelled or never ran). Styles the display (``data-state``)."""
        if self.ended is None:
            return "running"
        if self.cancelled or self.finished < self.total:
            return "stopped"
        return "failed" if self.failed else "finished"

    def record(self, response: Response) -> None:
        """Count one finished row (by its ``finish_reason``), its output tokens and its
        cost; an unknown cost makes the total unknown. ``running`` and the pane are left to
        the caller. Optional: batch.py may update the fields itself."""
        if response.error == EMPTY_INPUT:  # not sent: what its prompt uses is missing
            self.skipped += 1
        elif response.finish_reason == "error":
            self.failed += 1
        elif response.finish_reason == "cancelled":
            self.cancelled += 1
        else:
            self.done += 1
            self.cached += bool(response.cached)
        self.output_tokens += response.output_tokens
        self.add_cost(response.cost)

    def add_cost(self, cost: float | None) -> None:
        """Add one row's cost; ``None`` (unknown) makes the total unknown for good."""
        if self.cost is not None:
            self.cost = None if cost is None else self.cost + cost

    def summary(self) -> str:
        """One line on how it went: ``openai:gpt-4o-mini · 1,000 rows · 990 done (12 cached)
        · 10 failed · 0 cancelled · 31,204 tokens · 9.8 s · 3,184 tok/s · $0.0123``."""
        rows = f"{self.total:,} rows" + (" (provider batch)" if self.mode == "batch" else "")
        done = f"{self.done:,} done" + (f" ({self.cached:,} cached)" if self.cached else "")
        parts = [self.model, rows, done, f"{self.failed:,} failed"]
        parts.append(f"{self.cancelled:,} cancelled")
        if self.skipped:
            parts.append(f"{self.skipped:,} empty (skipped)")
        if self.running:
            parts.append(f"{self.running:,} running")
        parts += [f"{self.output_tokens:,} tokens", format_seconds(self.elapsed)]
        parts.append(format_rate(self.tokens_per_second))
        parts.append("cost unknown" if self.cost is None else format_cost(self.cost))
        return " · ".join(p for p in parts if p)


def format_seconds(seconds: float) -> str:
    """``9.8 s``, ``4 min 05 s``, ``1 h 02 min`` (static/progress.js formats alike)."""
    if round(seconds, 1) < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def format_rate(tokens_per_second: float) -> str:
    """``3,184 tok/s``; one decimal below 100 (``9.8 tok/s``)."""
    if tokens_per_second < 100:
        return f"{tokens_per_second:.1f} tok/s"
    return f"{tokens_per_second:,.0f} tok/s"


def count_words(tally: Tally) -> str:
    """The live counts, without clocks or note: ``412/1,000 · 12 cached · 3 failed · 32
    running · 2,931 tok/s · $0.0123`` (zero counts and a zero cost are left out). The one
    wording of the widget, the live HTML and the terminal line."""
    t = tally
    parts = [f"{t.finished:,}/{t.total:,}"]
    counted = ((t.cached, "cached"), (t.failed, "failed"), (t.cancelled, "cancelled"))
    for count, word in (*counted, (t.skipped, "empty")):
        if count:
            parts.append(f"{count:,} {word}")
    if t.running:
        parts.append(f"{t.running:,} running")
    if t.output_tokens:
        parts.append(format_rate(t.tokens_per_second))
    if t.cost is None:
        parts.append("cost unknown")
    elif t.cost > 0:
        parts.append(format_cost(t.cost))
    return " · ".join(parts)


def clock_words(tally: Tally) -> str:
    """``4.2 s · ETA 5.9 s`` (no ETA before a row finished, nor at the end)."""
    eta = tally.eta
    if eta is None or tally.ended is not None:
        return format_seconds(tally.elapsed)
    return f"{format_seconds(tally.elapsed)} · ETA {format_seconds(eta)}"


def pane_excerpt(text: str) -> str:
    """The end of the pane's answer, at most :data:`PANE_CHARS` characters (the newest
    text is what a reader watches; the full answers are in the batch's results)."""
    if len(text) <= PANE_CHARS:
        return text
    return "…" + text[-(PANE_CHARS - 1) :]


# -- the static bundle (live HTML, and what replaces the widget) ---------------------------


def progress_bundle(tally: Tally, *, final: bool) -> dict[str, str]:
    """HTML + text of the batch's state. ``final``: the bundle a saved notebook keeps
    (``text/plain`` is :meth:`Tally.summary`, the pane folded); else the live HTML update.
    Every piece of text is escaped; the HTML carries its own small stylesheet (the widget's
    progress.css), so it looks alike in JupyterLab, Notebook 7 and nbconvert's HTML."""
    t = tally
    esc = htmlmod.escape
    line = t.summary() if final else f"{count_words(t)} · {clock_words(t)}"
    value = f'max="{max(t.total, 1)}" value="{t.answered}"'
    bar = f"<progress {value}>{t.answered:,}/{t.total:,}</progress>"
    note = f'<div class="nbstream-progress-note">{esc(t.note)}</div>' if t.note else ""
    pane = ""
    if t.pane_text or t.pane_title:
        opened = "" if final else " open"
        title = esc(t.pane_title or "answer")
        pane = (
            f'<details class="nbstream-progress-pane"{opened}><summary>{title}</summary>'
            f"<pre>{esc(pane_excerpt(t.pane_text))}</pre></details>"
        )
    html = (
        f'<style>{_STYLE}</style><div class="nbstream-progress" data-state="{t.state}">'
        f'{bar}<div class="nbstream-progress-status">{esc(line)}</div>{note}{pane}</div>'
    )
    text = t.summary() if final else f"[nbstream: {count_words(t)} · {clock_words(t)}]"
    return {"text/html": html, "text/plain": text}


_STYLE = inline_css("progress.css")
"""The static bundle's own stylesheet."""


# -- pacing ---------------------------------------------------------------------------------


# -- the displays ---------------------------------------------------------------------------


class ProgressDisplay(Protocol):
    """What batch.py drives: ``refresh`` when the tally changed (cheap, call it freely),
    ``close`` once the batch ended (the final state is shown)."""

    def refresh(self) -> None: ...

    def close(self) -> None: ...


class NullProgress:
    """``display="none"`` (and headless runs): shows nothing."""

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass


def _end(tally: Tally) -> None:
    if tally.ended is None:  # close() means the batch ended, even if nobody said when
        tally.ended = time.monotonic()


class _Paced:
    """What the paced displays share: ``refresh`` asks the throttle for a push, ``close``
    (once) ends the tally and shows the final state (:meth:`_final`)."""

    def __init__(self, tally: Tally, interval: float) -> None:
        self.tally = tally
        self.closed = False
        self._pacer = Throttle(interval, self._push)

    def refresh(self) -> None:
        if not self.closed:
            self._pacer.request()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._pacer.cancel()
        _end(self.tally)
        self._final()

    def _push(self) -> None:
        raise NotImplementedError

    def _final(self) -> None:
        raise NotImplementedError


class TextProgress(_Paced):
    """One line on stderr (``out``), rewritten in place with ``\\r``:
    ``nbstream: 412/1,000 · 3 failed · 32 running · 2,931 tok/s · 4.2 s · ETA 5.9 s``; the
    summary and a newline at the end. Cut to the terminal's width: a wrapped line could
    not be rewritten."""

    def __init__(self, tally: Tally, out: TextIO | None = None, interval: float = TEXT_INTERVAL):
        super().__init__(tally, interval)
        self.out = out
        self.updates = 0
        self._width = 0

    def _final(self) -> None:
        self._write(f"nbstream: {self.tally.summary()}", end="\n")

    def _push(self) -> None:
        t = self.tally
        parts = [count_words(t), clock_words(t), t.note]
        self._write("nbstream: " + " · ".join(p for p in parts if p))

    def _write(self, line: str, end: str = "") -> None:
        out = self.out or sys.stderr
        columns = shutil.get_terminal_size((100, 24)).columns - 1
        if not end and len(line) > columns:
            line = line[: max(columns - 1, 0)] + "…"
        # pad over what the previous line left on screen
        out.write("\r" + line.ljust(self._width) + end)
        out.flush()
        self.updates += 1
        self._width = 0 if end else len(line)


class HtmlProgress(_Paced):
    """The static bundle, re-sent with ``update_display`` at most every ``interval``
    seconds, for front ends without widgets; the final bundle at the end."""

    def __init__(self, tally: Tally, interval: float = HTML_INTERVAL) -> None:
        from IPython.display import display

        super().__init__(tally, interval)
        self.display_id = f"nbstream-progress-{uuid.uuid4().hex}"
        self.updates = 0
        self.bytes_sent = 0
        display(progress_bundle(tally, final=False), raw=True, display_id=self.display_id)

    def _final(self) -> None:
        self._update(progress_bundle(self.tally, final=True))

    def _push(self) -> None:
        self._update(progress_bundle(self.tally, final=False))

    def _update(self, bundle: dict[str, str]) -> None:

        self.updates += 1
        self.bytes_sent += len(json.dumps(bundle).encode())
        kernel.update_display(bundle, raw=True, display_id=self.display_id)


def widget_counts(tally: Tally) -> dict[str, Any]:
    """The ``counts`` trait: everything the widget's status line and bar need, as one value
    (one comm message per update). Clocks are seconds at the time of sending; the browser
    keeps them ticking."""
    eta = tally.eta
    return {
        "line": count_words(tally),
        "finished": tally.finished,
        "answered": tally.answered,
        "total": tally.total,
        "elapsed": round(tally.elapsed, 2),
        "eta": None if eta is None else round(eta, 1),
        "ended": tally.ended is not None,
        "state": tally.state,
        "note": tally.note,
    }


@functools.cache
def view_class() -> type[Any]:
    """:class:`ProgressView`, defined on first use: importing anywidget takes ~0.3 s, and
    the html/text/none flavours must work where it is not installed."""
    import anywidget
    import traitlets

    class ProgressView(anywidget.AnyWidget):
        """Counts, bar, pane and Stop button of one batch. State travels as synced traits:
        ``counts`` (:func:`widget_counts`) on every update, ``pane_title``/``pane_text``
        only when they changed; browser → kernel: ``{"event": "stop"}``. ``updates`` and
        ``bytes_sent`` count the messages (and their JSON payload) sent after the open."""

        _esm = compact_js("progress.js")
        _css = inline_css("progress.css")
        llm_model = traitlets.Unicode("").tag(sync=True)  # not `model_id`: Widget owns it
        stoppable = traitlets.Bool(False).tag(sync=True)
        counts = traitlets.Dict().tag(sync=True)
        pane_title = traitlets.Unicode("").tag(sync=True)
        pane_text = traitlets.Unicode("").tag(sync=True)

        def __init__(self, **kwargs: Any) -> None:
            self.updates = 0
            self.bytes_sent = 0
            super().__init__(**kwargs)

        def _send(self, msg: Any, buffers: Any = None) -> None:
            # Every kernel → browser message of a widget (state updates, custom) goes
            # through here: the one place to count them (those before the comm opened, or
            # without a kernel behind it, are dropped, as ipywidgets does).
            if self.comm is not None and getattr(self.comm, "kernel", True) is not None:
                self.updates += 1
                self.bytes_sent += len(json.dumps(msg, default=str).encode())
            super()._send(msg, buffers=buffers)

        def __repr__(self) -> str:
            # text/plain for a front end without widgets (ipywidgets cuts it at 110 chars)
            total = self.counts.get("total", 0)
            return f"[nbstream: a batch of {total:,} rows; its summary replaces this line]"

    ProgressView.__qualname__ = "ProgressView"
    ProgressView.__module__ = __name__
    return ProgressView


def __getattr__(name: str) -> Any:  # `from nbstream.display.progress import ProgressView`, lazily
    if name == "ProgressView":
        return view_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class WidgetProgress(_Paced):
    """The batch in a :class:`ProgressView`, then the static bundle in its place.

    ``on_stop`` is called (once) when the Stop button is clicked. It may run on another
    thread than the batch's loop (a comm message can be handled on a subshell thread), so
    it must be thread-safe: e.g. ``loop.call_soon_threadsafe(...)`` or setting an
    ``asyncio``-free flag. Without it the button is hidden (interrupt still works).
    """

    def __init__(
        self,
        tally: Tally,
        *,
        on_stop: Callable[[], None] | None = None,
        interval: float = WIDGET_INTERVAL,
    ) -> None:
        from IPython.display import display

        super().__init__(tally, interval)
        self.on_stop = on_stop
        self.display_id = f"nbstream-progress-{uuid.uuid4().hex}"
        self.stop_requested = False
        self._bundle_bytes = 0
        self._lock = threading.Lock()
        self.view: Any = view_class()(
            llm_model=tally.model,
            stoppable=on_stop is not None,
            counts=widget_counts(tally),
            pane_title=tally.pane_title,
            pane_text=pane_excerpt(tally.pane_text),
        )
        self.view.on_msg(self._on_msg)
        display(self.view, display_id=self.display_id)

    @property
    def updates(self) -> int:
        """Messages sent to the front end after the widget opened (the last one is the
        static bundle)."""
        return int(self.view.updates) + (1 if self._bundle_bytes else 0)

    @property
    def bytes_sent(self) -> int:
        """Their JSON payload in bytes (without the protocol's envelope)."""
        return int(self.view.bytes_sent) + self._bundle_bytes

    def _final(self) -> None:
        """The final state (to any view still showing), the static bundle in the widget's
        place, then the widget and its layout closed (each is a comm of its own)."""

        self._push()
        bundle = progress_bundle(self.tally, final=True)
        self._bundle_bytes = len(json.dumps(bundle).encode())
        kernel.update_display(bundle, raw=True, display_id=self.display_id)
        self.view.layout.close()
        self.view.close()

    def _push(self) -> None:
        t = self.tally
        with self.view.hold_sync():  # one message; unchanged traits are not sent at all
            self.view.counts = widget_counts(t)
            self.view.pane_title = t.pane_title
            self.view.pane_text = pane_excerpt(t.pane_text)

    def _on_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        # May run on a subshell thread: only thread-safe work here.
        if not isinstance(content, dict) or content.get("event") != "stop":
            return
        with self._lock:
            if self.stop_requested or self.on_stop is None:
                return
            self.stop_requested = True
        self.on_stop()


def make_progress(
    display: str, tally: Tally, *, on_stop: Callable[[], None] | None = None
) -> ProgressDisplay:
    """The batch's one display, for nbstream's ``display`` option. ``auto``: in a kernel
    the widget when ipywidgets and anywidget import, else live HTML; outside a kernel a
    text line when stderr is a terminal, else nothing. A widget or HTML display shows at
    once. ``on_stop``: see :class:`WidgetProgress` (thread-safe)."""
    mode = display
    if mode == "auto":
        if kernel.in_kernel():
            mode = "widget" if kernel.widgets_available() else "html"
        else:
            mode = "text" if _isatty(sys.stderr) else "none"
    if mode == "widget":
        return WidgetProgress(tally, on_stop=on_stop)
    if mode == "html":
        return HtmlProgress(tally)
    if mode == "text":
        return TextProgress(tally)
    if mode == "none":
        return NullProgress()
    raise ValueError(f"unknown display {display!r}: expected auto, widget, html, text or none")


def _isatty(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # a closed or exotic stream
        return False
