"""Partial JSON: the best Python value for an incomplete JSON prefix, updated incrementally
as the answer streams."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

scanstring: Callable[[str, int, bool], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]
"""The standard library's JSON string scanner (not in the type stubs)."""

# -- partial JSON -------------------------------------------------------------------------------

_MISSING: Any = object()
_WS = re.compile(r"[ \t\n\r]*")
_STRING_STOP = re.compile(r'["\\]')
_NUMBER_CHARS = re.compile(r"[-+0-9.eE]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_WORD = re.compile(r"-?[A-Za-z]*")
_JSON_WORDS: dict[str, Any] = {
    "true": True,
    "false": False,
    "null": None,
    "NaN": math.nan,
    "Infinity": math.inf,
    "-Infinity": -math.inf,
}
_HIGH_SURROGATE_ESCAPE = re.compile(r"u[dD][89abAB][0-9a-fA-F]{2}")

# parser states
_VALUE, _FIRST_VALUE, _KEY, _FIRST_KEY, _COLON, _AFTER, _DONE, _FAILED = range(8)


def _match_end(pattern: re.Pattern[str], text: str, pos: int) -> int:
    """Where ``pattern`` (one that matches the empty string too) stops matching at ``pos``."""
    match = pattern.match(text, pos)
    return pos if match is None else match.end()


def _number(token: str) -> int | float:
    return float(token) if any(c in token for c in ".eE") else int(token)


def _partial_number(token: str) -> int | float | None:
    trimmed = token.rstrip(".eE+-")
    if not trimmed or trimmed == "-":
        return None
    try:
        return _number(trimmed)
    except ValueError:
        return None


def _complete_string_body(body: str) -> str:
    """``body`` (the text after an opening quote, no closing quote yet) without an
    escape that is not complete (``\\``, ``\\u12``, or a high surrogate ``\\ud83d`` that a
    low one may still follow)."""
    for _ in range(3):
        k = body.rfind("\\")
        if k < 0 or len(body) - k > 6:
            return body
        run_start = k
        while run_start > 0 and body[run_start - 1] == "\\":
            run_start -= 1
        if (k - run_start) % 2 == 1:  # this backslash is escaped: no open escape
            return body
        tail = body[k + 1 :]
        if tail == "" or (
            tail[0] == "u" and (len(tail) < 5 or _HIGH_SURROGATE_ESCAPE.fullmatch(tail))
        ):
            body = body[:k]
        else:
            return body
    return body


class PartialJSON:
    """An incremental parser of a JSON document that arrives in pieces.

    ``feed(text)`` consumes the new text and returns :attr:`value`: the best Python value
    for everything so far — open strings, arrays and objects closed; a key without its
    value left out; a number shown as far as it goes; ``true``/``false``/``null`` as soon
    as their first letter arrived. It never raises: on invalid JSON it keeps the value
    parsed before the error (:attr:`failed` is set) and ignores the rest.

    Leniency before the value starts: a Markdown fence line (```` ```json ````) and prose
    before the first ``{`` / ``[`` are skipped. Text after the complete value is ignored.

    The value is built **in place** and shared between calls (the cost per update is
    proportional to the new text, plus re-decoding the open string, if any): copy it if
    you need a snapshot. :attr:`work` counts the characters examined, for tests.
    """

    def __init__(self, *, lenient: bool = True) -> None:
        self.lenient = lenient
        self.work = 0
        self._buf = ""
        self._stack: list[Any] = []
        self._keys: list[str | None] = []
        self._state = _VALUE
        self._root: Any = _MISSING
        self._started = False
        self._resume = 0  # where to go on scanning an open string at the start of _buf
        self._placed: tuple[Any, ...] | None = None

    @property
    def value(self) -> Any:
        """The partial value (``None`` before any value started)."""
        return None if self._root is _MISSING else self._root

    @property
    def done(self) -> bool:
        """The top-level value is complete."""
        return self._state == _DONE

    @property
    def failed(self) -> bool:
        """The text stopped being valid JSON (the value is what came before)."""
        return self._state == _FAILED

    def feed(self, text: str) -> Any:
        """Consume ``text`` (the next piece of the document); return :attr:`value`."""
        if self._state in (_DONE, _FAILED) or not text:
            return self.value
        try:
            self._unplace()
            self._buf += text
            self._run()
        except Exception:  # never raise: keep what was parsed
            self._state = _FAILED
            self._buf = ""
        return self.value

    def finish(self) -> Any:
        """The input has ended: complete a number or ``true``/``false``/``null`` that was
        waiting for its next character. :attr:`done` tells whether the document was
        complete. Returns :attr:`value`."""
        if self._state in (_DONE, _FAILED) or not self._buf or self._buf[0] in '"`':
            return self.value  # nothing pending, or an open string (cut short) / fence
        return self.feed(" ")  # a delimiter: the pending number or word completes

    def is_open(self, container: Any) -> bool:
        """Whether ``container`` (a list or dict of :attr:`value`) is still being written."""
        return any(open_ is container for open_ in self._stack)

    # -- placing values

    def _put(self, value: Any) -> tuple[Any, ...]:
        if not self._stack:
            self._root = value
            return ("root",)
        top = self._stack[-1]
        if isinstance(top, list):
            top.append(value)
            return (top, None)
        key = self._keys[-1]
        top[key] = value
        return (top, key)

    def _unplace(self) -> None:
        placed, self._placed = self._placed, None
        if placed is None:
            return
        if placed[0] == "root":
            self._root = _MISSING
        elif placed[1] is None:
            placed[0].pop()
        else:
            placed[0].pop(placed[1], None)

    def _attach(self, value: Any) -> None:
        self._put(value)
        self._started = True
        self._state = _AFTER if self._stack else _DONE

    def _open(self, container: Any) -> None:
        self._put(container)
        self._started = True
        self._stack.append(container)
        self._keys.append(None)
        self._state = _FIRST_KEY if isinstance(container, dict) else _FIRST_VALUE

    def _close(self) -> None:
        self._stack.pop()
        self._keys.pop()
        self._state = _AFTER if self._stack else _DONE

    # -- the scanner

    def _scan_string(self, buf: str, start: int) -> int:
        """Index after the closing quote of the string at ``start``, or -1 (then
        ``self._resume`` says where to go on, relative to ``start``)."""
        i = start + self._resume if start == 0 and self._resume else start + 1
        n = len(buf)
        while True:
            match = _STRING_STOP.search(buf, i)
            if match is None:
                self._resume = n - start
                return -1
            j = match.start()
            if buf[j] == '"':
                self._resume = 0
                return j + 1
            if j + 1 >= n:
                self._resume = j - start
                return -1
            i = j + 2

    def _run(self) -> None:
        buf = self._buf
        n = len(buf)
        pos = 0
        pending: tuple[str, int] | None = None
        while True:
            pos = _match_end(_WS, buf, pos)
            if pos >= n:
                break
            state = self._state
            if state in (_DONE, _FAILED):
                pos = n
                break
            c = buf[pos]
            if state in (_VALUE, _FIRST_VALUE):
                if c == "]" and state == _FIRST_VALUE:
                    self._close()
                    pos += 1
                elif c == "{":
                    self._open({})
                    pos += 1
                elif c == "[":
                    self._open([])
                    pos += 1
                elif c == '"':
                    end = self._scan_string(buf, pos)
                    if end < 0:
                        pending = ("string", pos)
                        break
                    self._attach(scanstring(buf, pos + 1, False)[0])
                    pos = end
                elif c in "-0123456789" and not buf.startswith("-I", pos):
                    end = _match_end(_NUMBER_CHARS, buf, pos)
                    if end >= n:
                        pending = ("number", pos)
                        break
                    token = buf[pos:end]
                    if not _NUMBER.fullmatch(token):
                        self._state = _FAILED
                        break
                    self._attach(_number(token))
                    pos = end
                elif c.isalpha() or c == "-":
                    end = _match_end(_WORD, buf, pos)
                    word = buf[pos:end]
                    prefix_of = [
                        w for w in _JSON_WORDS if word not in ("", "-") and w.startswith(word)
                    ]
                    if not self._started and self.lenient and not prefix_of:
                        pos = self._skip_preamble(buf, pos)
                        if pos < 0:
                            pos = n
                            break
                        continue
                    if end >= n and prefix_of:
                        pending = ("word", pos)
                        break
                    if word not in _JSON_WORDS:
                        self._state = _FAILED
                        break
                    self._attach(_JSON_WORDS[word])
                    pos = end
                elif not self._started and self.lenient:
                    if buf.startswith("`", pos):
                        newline = buf.find("\n", pos)
                        if newline < 0:
                            pending = ("fence", pos)
                            break
                        pos = newline + 1
                        continue
                    pos = self._skip_preamble(buf, pos)
                    if pos < 0:
                        pos = n
                        break
                else:
                    self._state = _FAILED
                    break
            elif state in (_KEY, _FIRST_KEY):
                if c == "}" and state == _FIRST_KEY:
                    self._close()
                    pos += 1
                elif c == '"':
                    end = self._scan_string(buf, pos)
                    if end < 0:
                        pending = ("key", pos)
                        break
                    self._keys[-1] = scanstring(buf, pos + 1, False)[0]
                    self._state = _COLON
                    pos = end
                else:
                    self._state = _FAILED
                    break
            elif state == _COLON:
                if c != ":":
                    self._state = _FAILED
                    break
                self._state = _VALUE
                pos += 1
            else:  # _AFTER
                top = self._stack[-1]
                if c == ",":
                    self._state = _KEY if isinstance(top, dict) else _VALUE
                    pos += 1
                elif c == ("}" if isinstance(top, dict) else "]"):
                    self._close()
                    pos += 1
                else:
                    self._state = _FAILED
                    break
        self.work += n
        if pending is None:
            self._buf = ""
            self._resume = 0
            return
        kind, start = pending
        self._buf = buf[start:]
        if kind == "string":
            body = _complete_string_body(self._buf[1:])
            self.work += len(body)
            try:
                text = scanstring(f'"{body}"', 1, False)[0]
            except ValueError:
                return
            self._placed = self._put(text)
        elif kind == "number":
            number = _partial_number(self._buf)
            if number is not None:
                self._placed = self._put(number)
        elif kind == "word":
            word = next(w for w in _JSON_WORDS if w.startswith(self._buf))
            self._placed = self._put(_JSON_WORDS[word])

    def _skip_preamble(self, buf: str, pos: int) -> int:
        """Prose before the JSON: the index of the next ``{`` or ``[``, or -1."""
        found = [i for i in (buf.find("{", pos), buf.find("[", pos)) if i >= 0]
        return min(found) if found else -1


def parse_partial(text: str) -> Any:
    """The best Python value for a (possibly incomplete) JSON document; ``None`` when no
    value has started. Never raises. Equal to ``json.loads(text)`` for complete JSON."""
    try:
        return json.loads(text)
    except Exception:
        pass
    try:
        return PartialJSON().feed(str(text))
    except Exception:  # pragma: no cover - PartialJSON.feed does not raise
        return None
