"""Plain-text output for terminal IPython, scripts, and front ends without widgets."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from nbstream.engine import Stream
    from nbstream.response import Response


DIM = "\x1b[2m"
RESET = "\x1b[0m"


class TerminalSink:
    """Prints each delta as it arrives; a last line says how it ended if not finished.
    Retries are announced on their own line (before any text: nothing is retried after)."""

    pumps_widget_messages = False

    def __init__(self, out: TextIO | None = None, *, show_prompt: bool = False) -> None:
        self.out = out
        self.show_prompt = show_prompt

    @property
    def _out(self) -> TextIO:
        return self.out or sys.stdout

    def on_start(self, stream: Stream) -> None:
        if self.show_prompt:
            self._out.write(f"[prompt]\n{stream.request.prompt}\n[answer]\n")

    def on_continue(self, stream: Stream) -> None:
        """A round after tool calls: its note (which calls ran) on a line of its own."""
        if stream.note:
            self._out.write(f"\n[{stream.note}]\n")
            self._out.flush()

    def on_thinking(self, stream: Stream, delta: str) -> None:
        """A dim one-line indicator while the model thinks (the text: ``x.thinking``)."""
        if stream.thinking_chunks == 1:
            self._thinking_line = True
            self._out.write(f"{DIM}[thinking…]{RESET}")
            self._out.flush()

    def _end_thinking(self, stream: Stream) -> None:
        if getattr(self, "_thinking_line", False):
            self._thinking_line = False
            took = ""
            if stream.first_thinking_at is not None:
                took = f" for {time.monotonic() - stream.first_thinking_at:.0f} s"
            words = f"thought{took}, {stream.thinking_chunks} tokens: x.thinking"
            self._out.write(f"\r{DIM}[{words}]{RESET}\n")

    def on_delta(self, stream: Stream, delta: str) -> None:
        self._end_thinking(stream)
        self._out.write(delta)
        self._out.flush()

    def on_status(self, stream: Stream) -> None:
        if stream.state == "retrying" and stream.status_note:
            self._out.write(f"[{stream.status_note}]\n")
            self._out.flush()

    def on_end(self, stream: Stream, response: Response) -> None:
        self._end_thinking(stream)
        out = self._out
        if response.text and not response.text.endswith("\n"):
            out.write("\n")
        if response.finish_reason != "stop":
            out.write(f"[{response.summary()}]\n")
        out.flush()
