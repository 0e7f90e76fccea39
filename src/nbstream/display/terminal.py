"""Plain-text output for terminal IPython, scripts, and front ends without widgets."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from nbstream.engine import Stream
    from nbstream.response import Response


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

    def on_delta(self, stream: Stream, delta: str) -> None:
        self._out.write(delta)
        self._out.flush()

    def on_status(self, stream: Stream) -> None:
        if stream.state == "retrying" and stream.status_note:
            self._out.write(f"[{stream.status_note}]\n")
            self._out.flush()

    def on_end(self, stream: Stream, response: Response) -> None:
        out = self._out
        if response.text and not response.text.endswith("\n"):
            out.write("\n")
        if response.finish_reason != "stop":
            out.write(f"[{response.summary()}]\n")
        out.flush()
