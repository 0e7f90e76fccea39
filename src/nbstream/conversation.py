"""Conversation threads: earlier cells' questions and answers sent along with a new prompt.

A :class:`Thread` is an ordered list of :class:`Turn` s, one per cell run (the prompt after
``{var}`` interpolation, the system prompt, the answer as received, how it ended). Threads
live in a per-process registry (:data:`threads`, :func:`get_thread`, :func:`reset`) under
a name, ``"default"`` unless the cell says otherwise.

**Re-running a cell replaces its own turn, in place.** A notebook is edited and re-run, not
appended to like a chat log: running cell B again must not leave two B turns. The cell is
recognised by its id (JupyterLab / Notebook 7 send it with every ``execute_request``, see
``docs/design.md#newer-facts`` and :func:`current_cell_id`). A turn without a cell id
(terminal IPython, nbclient without ids, ``ask()`` outside a cell) is always appended.

**The turns after a re-run cell are kept, marked stale** — not deleted. With cells A → B →
C, re-running B replaces B's turn where it stands; C's answer was given against the *old*
B, so C is marked ``stale=True``: it stays in the thread (``%llm thread`` shows it, it keeps
its place) but is **not sent to the model** until C is re-run, which replaces it in place
and clears the mark. Why this rule rather than dropping C:

* the cell is still on the page with its old answer: deleting its turn would make the
  thread disagree with what the user sees, and re-running C would then append it at the
  end, after cells written later — positions would drift away from the notebook's order;
* "Run All" re-runs every cell top to bottom, and each re-run clears its own mark, so the
  thread ends up exactly as if the notebook had been run once, in order;
* sending C anyway would show the model an answer to a question about a B that no longer
  exists, a contradiction it tends to "resolve" by repeating the old answer.

The consequence: a new cell (no turn yet) is appended at the end and sees every non-stale
earlier turn; a re-run cell sees only the non-stale turns *before* its own.

A cell that asks several times in one run (``await nbstream.ask(..., chat=...)`` in a loop)
records one turn per answer: the first under the cell id, the next ones under
``<cell id>#2``, ``#3`` … (:func:`turn_key`), so a re-run replaces them one by one.

Other rules:

* A stopped or failed answer is recorded as received (partial text, its ``finish_reason``).
  A partial answer is sent as it is (as ChatGPT does with a stopped reply); a turn whose
  answer is **empty** (an error before the first token, Stop before any text) is not sent:
  its question was never answered, and merging it into the next prompt would change what
  is asked. Such turns are counted as skipped.
* The system prompt is sent once, at the front: the current call's, else the latest one
  set in the turns being considered (a persona set in the first cell carries on).
* The history is bounded by a token budget (estimated: ~4 characters per token, plus a
  little per message; pass ``count=`` for an exact tokenizer). The current prompt and the
  system prompt are always sent; earlier turns are dropped oldest first, whole turns only,
  and never a gap: the history is the *newest* turns that fit.

Each provider turns the messages into its own format, in its module under
:mod:`nbstream.providers` (chat messages; the system prompt apart with strictly alternating
roles; Gemini contents; the local *base* model's Markdown FAQ, earlier turns as earlier Q/A
pairs).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from nbstream.providers import capabilities
from nbstream.providers.messages import Message

__all__ = [
    "DEFAULT_THREAD",
    "History",
    "Thread",
    "Turn",
    "current_cell_id",
    "default_budget",
    "estimate_tokens",
    "format_thread",
    "get_thread",
    "leave_threads",
    "record",
    "reset",
    "thread",
    "threads",
    "turn_key",
]

DEFAULT_THREAD = "default"


MESSAGE_OVERHEAD = 4
"""Tokens a message costs beyond its text (role, separators), as the providers count it."""


def estimate_tokens(text: str) -> int:
    """A cheap token estimate: ~4 characters per token (English prose; code and non-Latin
    scripts take more tokens per character, which the budgets leave room for)."""
    return math.ceil(len(text) / 4)


# -- turns and threads ----------------------------------------------------------------------


@dataclass
class Turn:
    """One cell run: the question, the answer as received, and how it ended."""

    user: str
    """The prompt after ``{var}`` interpolation."""
    assistant: str
    """The answer as received (partial when stopped or failed)."""
    system: str | None = None
    """The system prompt this turn was asked with."""
    model: str = ""
    """``provider:name``."""
    finish_reason: str = "stop"
    """``stop`` / ``length`` / ``cancelled`` / ``error`` (see :class:`nbstream.Response`)."""
    usage: dict[str, int] | None = None
    cell_id: str | None = None
    created: datetime = field(default_factory=lambda: datetime.now().astimezone())
    stale: bool = False
    """An earlier cell of the thread was re-run after this turn was answered."""
    pending: bool = False
    """A place kept for an answer still streaming (a ``--bg`` cell): not sent; its answer
    fills it in place when it ends (:meth:`Thread.reserve`)."""
    rounds: list[dict[str, Any]] = field(default_factory=list)
    """The tool rounds of this answer, as messages (the assistant's calls, their results),
    sent between the question and the answer's last text so a follow-up sees them."""
    final: str | None = None
    """With tool rounds: the text of the answer's last round (``assistant`` holds all)."""

    @classmethod
    def from_response(
        cls, response: Any, *, system: str | None = None, cell_id: str | None = None
    ) -> Turn:
        """A turn from an :class:`nbstream.Response` (its ``prompt``, text, model, …)."""
        return cls(
            user=str(getattr(response, "prompt", "") or ""),
            assistant=str.__str__(response) if isinstance(response, str) else str(response),
            system=system,
            model=str(getattr(response, "model", "") or ""),
            finish_reason=str(getattr(response, "finish_reason", "stop") or "stop"),
            usage=getattr(response, "usage", None),
            cell_id=cell_id,
        )

    @property
    def answered(self) -> bool:
        """Whether any answer text was received (only such turns are sent)."""
        return bool(self.assistant.strip())

    def tokens(self, count: Callable[[str], int] = estimate_tokens) -> int:
        """What sending this turn costs: its question and answer, plus message overhead."""
        rounds = sum(
            count(str(m.get("content") or "")) + count(str(m.get("tool_calls") or ""))
            for m in self.rounds
        )
        overhead = (2 + len(self.rounds)) * MESSAGE_OVERHEAD
        return count(self.user) + count(self.assistant) + rounds + overhead


@dataclass(frozen=True)
class History:
    """The earlier turns to send with a prompt (the result of :meth:`Thread.messages`)."""

    messages: list[Message]
    """Provider-neutral messages: the system message first (if any), then user/assistant
    pairs, oldest first. The current prompt is *not* included."""
    turns_sent: int = 0
    turns_dropped: int = 0
    """Answered, non-stale turns left out because the budget was full (the oldest)."""
    turns_skipped: int = 0
    """Turns left out by rule: stale, or with an empty answer."""
    tokens: int = 0
    """Estimated tokens of :attr:`messages` (the current prompt not counted)."""

    @property
    def system(self) -> str | None:
        """The system prompt at the front of :attr:`messages`, if any."""
        if self.messages and self.messages[0]["role"] == "system":
            return str(self.messages[0]["content"])
        return None

    @property
    def turns(self) -> list[Message]:
        """:attr:`messages` without the system message."""
        return [m for m in self.messages if m["role"] != "system"]

    def summary(self) -> str:
        """``3 earlier turns sent (~1,234 tokens), 2 dropped by the budget, 1 stale``-style."""
        if not (self.turns_sent or self.turns_dropped or self.turns_skipped):
            return "no earlier turns"
        text = f"{self.turns_sent} earlier turn{'s' * (self.turns_sent != 1)} sent"
        text += f" (~{self.tokens:,} tokens)"
        if self.turns_dropped:
            text += f", {self.turns_dropped} dropped by the budget"
        if self.turns_skipped:
            text += f", {self.turns_skipped} skipped (stale or unanswered)"
        return text


class Thread:
    """An ordered list of turns, one per cell (see the module docstring for the rules)."""

    def __init__(self, name: str = DEFAULT_THREAD, turns: Iterable[Turn] = ()) -> None:
        self.name = name
        self._turns: list[Turn] = list(turns)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._turns)

    def __iter__(self) -> Iterator[Turn]:
        return iter(list(self._turns))

    def __repr__(self) -> str:
        stale = sum(t.stale for t in self._turns)
        return f"<Thread {self.name!r}: {len(self._turns)} turns, {stale} stale>"

    @property
    def turns(self) -> list[Turn]:
        """A copy of the turns, in order."""
        return list(self._turns)

    def index_of(self, cell_id: str | None) -> int | None:
        """The position of ``cell_id``'s turn, or ``None``."""
        return _index(self._turns, cell_id)

    def record(self, turn: Turn) -> int:
        """Add ``turn``; return its position.

        A turn whose ``cell_id`` already has one replaces it in place (its stale mark is
        cleared) and marks every later turn stale — unless the place was reserved for it
        (:meth:`reserve`): then it only fills it. A turn without a cell id, or from a new
        cell, is appended."""
        with self._lock:
            i = self.index_of(turn.cell_id)
            if turn.stale or turn.pending:
                turn = replace(turn, stale=False, pending=False)
            if i is None:
                self._turns.append(turn)
                return len(self._turns) - 1
            reserved = self._turns[i].pending
            self._turns[i] = turn
            if not reserved:
                for later in self._turns[i + 1 :]:
                    later.stale = True
            return i

    def reserve(self, cell_id: str | None, user: str) -> bool:
        """Keep the place of a new cell's turn at the end of the thread now, so that an
        answer that ends later (a ``--bg`` cell while other cells run) takes the position
        of its cell, not of its end. A cell that has a turn already keeps it. Returns
        whether a place was reserved."""
        if cell_id is None:
            return False
        with self._lock:
            if self.index_of(cell_id) is not None:
                return False
            self._turns.append(Turn(user=user, assistant="", cell_id=cell_id, pending=True))
            return True

    def forget(self, cell_id: str, *, with_more: bool = False) -> bool:
        """Remove ``cell_id``'s turn (the cell moved to another thread, or was re-run without
        a thread); later turns are marked stale. ``with_more``: also the turns of the same
        cell's further answers (``<cell id>#2``, …). Returns whether there was one."""
        with self._lock:
            doomed = [
                i
                for i, t in enumerate(self._turns)
                if t.cell_id == cell_id
                or (with_more and (t.cell_id or "").startswith(f"{cell_id}#"))
            ]
            if not doomed:
                return False
            for i in reversed(doomed):
                del self._turns[i]
            for later in self._turns[doomed[0] :]:
                later.stale = True
            return True

    def clear(self) -> None:
        with self._lock:
            self._turns.clear()

    def messages(
        self,
        upto_cell_id: str | None = None,
        budget_tokens: int | None = None,
        *,
        prompt: str = "",
        system: str | None = None,
        count: Callable[[str], int] = estimate_tokens,
        include_stale: bool = False,
    ) -> History:
        """The earlier turns to send with ``prompt``.

        ``upto_cell_id``: the cell being run; its own turn and every turn after it are
        left out (a cell that has no turn yet sees the whole thread). ``budget_tokens``:
        the most tokens the history, the system prompt and ``prompt`` together may take
        (``None``: no limit); the oldest turns are dropped first, the prompt never.
        ``system``: the current call's system prompt (else the latest one in the thread).
        """
        with self._lock:
            turns = list(self._turns)
        i = _index(turns, upto_cell_id)
        candidates = turns if i is None else turns[:i]

        if system is None:
            system = next((t.system for t in reversed(candidates) if t.system), None)

        sendable = [t for t in candidates if t.answered and (include_stale or not t.stale)]
        skipped = len(candidates) - len(sendable)

        fixed = count(prompt) + MESSAGE_OVERHEAD
        if system:
            fixed += count(system) + MESSAGE_OVERHEAD
        kept: list[Turn] = []
        used = fixed
        for turn in reversed(sendable):
            cost = turn.tokens(count)
            if budget_tokens is not None and used + cost > budget_tokens:
                break
            kept.append(turn)
            used += cost
        kept.reverse()

        messages: list[Message] = []
        if system:
            messages.append({"role": "system", "content": system})
        for turn in kept:
            messages.append({"role": "user", "content": turn.user})
            if turn.rounds:
                messages.extend(dict(m) for m in turn.rounds)
                if (turn.final or "").strip():
                    messages.append({"role": "assistant", "content": turn.final})
                continue
            messages.append({"role": "assistant", "content": turn.assistant})
        return History(
            messages=messages,
            turns_sent=len(kept),
            turns_dropped=len(sendable) - len(kept),
            turns_skipped=skipped,
            tokens=used - count(prompt) - MESSAGE_OVERHEAD,
        )


def _index(turns: Sequence[Turn], cell_id: str | None) -> int | None:
    if cell_id is None:
        return None
    for i, turn in enumerate(turns):
        if turn.cell_id == cell_id:
            return i
    return None


# -- the registry ----------------------------------------------------------------------------

threads: dict[str, Thread] = {}
"""Every thread of this process (the kernel), by name."""

_registry_lock = threading.Lock()


def get_thread(name: str | None = DEFAULT_THREAD) -> Thread:
    """The thread called ``name`` (``None``: the default one), created on first use."""
    name = _name(name)
    with _registry_lock:
        found = threads.get(name)
        if found is None:
            found = threads[name] = Thread(name)
        return found


def reset(name: str | None = None, *, all_threads: bool = False) -> list[str]:
    """Forget the thread ``name`` (``None``: the default thread), or every thread
    (``all_threads``). Returns the names of the threads that were forgotten."""
    with _registry_lock:
        if all_threads:
            names = list(threads)
            threads.clear()
            return names
        key = _name(name)
        return [key] if threads.pop(key, None) is not None else []


def leave_threads(cell_id: str | None) -> int:
    """A cell that runs without ``chat`` no longer belongs to any thread: its earlier turns
    are removed (later turns marked stale, as after a re-run), so a stale question is not
    sent with every later turn. Turns the cell recorded in *this* run are kept (a cell may
    ask with and without a thread). Returns how many threads it left."""
    if cell_id is None:
        return 0
    request = _current_request()
    with _calls_lock:
        this_run = request is not None and request == _calls_request[0]
        if this_run and any(cell == cell_id for _, cell in _calls):
            return 0
    with _registry_lock:
        every = list(threads.values())
    return sum(t.forget(cell_id, with_more=True) for t in every)


def record(turn: Turn, name: str | None = DEFAULT_THREAD) -> int:
    """Record ``turn`` in thread ``name``. A cell that last ran in *another* thread leaves
    it (a cell belongs to one thread: the one it last ran in). Returns the turn's position."""
    target = get_thread(name)
    if turn.cell_id is not None:
        with _registry_lock:
            others = [t for t in threads.values() if t is not target]
        for other in others:
            other.forget(turn.cell_id)
    return target.record(turn)


def thread(name: str | None = DEFAULT_THREAD) -> list[Message]:
    """The conversation so far as chat messages (system first, stale and unanswered turns
    left out), ready for an SDK: ``client.chat.completions.create(messages=thread() + […])``.
    (Some providers take the system prompt apart: see their modules.)"""
    return get_thread(name).messages().messages


def _name(name: str | None) -> str:
    name = DEFAULT_THREAD if name is None else str(name).strip()
    return name or DEFAULT_THREAD


def _parent() -> Mapping[str, Any]:
    """The kernel's current ``execute_request`` (empty outside a kernel)."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
        kernel = getattr(shell, "kernel", None)
        if kernel is None:
            return {}
        parent = kernel.get_parent()
    except Exception:
        return {}
    return parent if isinstance(parent, Mapping) else {}


def current_cell_id() -> str | None:
    """The id of the notebook cell being run, if the front end sent one (JupyterLab and
    Notebook 7 put it in the ``execute_request`` metadata as ``cellId``)."""
    metadata = _parent().get("metadata")
    cell_id = metadata.get("cellId") if isinstance(metadata, Mapping) else None
    return cell_id if isinstance(cell_id, str) and cell_id else None


def _current_request() -> str | None:
    """The id of the kernel's current ``execute_request`` (``None`` outside a kernel)."""
    header = _parent().get("header")
    request = header.get("msg_id") if isinstance(header, Mapping) else None
    return request if isinstance(request, str) else None


_calls_lock = threading.Lock()
_calls: dict[tuple[str, str], int] = {}
_calls_request: list[str | None] = [None]


def turn_key(name: str | None, cell_id: str | None) -> str | None:
    """The key of the next turn a cell records in thread ``name``: the cell id for its first
    answer in this run of the cell, ``<cell id>#2``, ``#3`` … for more answers in the same
    run (``await ask(...)`` in a loop), so that each has its own turn and a re-run replaces
    them one by one. ``None`` without a cell id (the turn is appended)."""
    if cell_id is None:
        return None
    request = _current_request()
    with _calls_lock:
        if request != _calls_request[0]:  # a new execute_request: forget the last one's
            _calls.clear()
            _calls_request[0] = request
        n = _calls[(_name(name), cell_id)] = _calls.get((_name(name), cell_id), 0) + 1
    return cell_id if n == 1 else f"{cell_id}#{n}"


# -- budgets ---------------------------------------------------------------------------------


def default_budget(
    provider: str, *, max_tokens: int | None = None, base_url: str | None = None
) -> int:
    """The default history budget (estimated tokens) for ``provider``: what it declared
    (:class:`nbstream.providers.base.Capabilities`, e.g. 100k for OpenAI and Anthropic, 3k
    for a self-hosted or Ollama server, the local model's context minus the answer), else
    :data:`~nbstream.providers.base.OTHER_BUDGET`."""
    return capabilities(provider).conversation_budget(max_tokens, base_url)


# -- %llm thread -----------------------------------------------------------------------------


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def format_thread(thread: Thread | str | None = None) -> str:
    """A text table of a thread for ``%llm thread``: one row per turn with its cell, model,
    tokens, how it ended and whether it is stale, then what the next prompt would send."""
    if not isinstance(thread, Thread):
        thread = get_thread(thread)
    turns = thread.turns
    if not turns:
        return f"Thread {thread.name!r}: empty."
    stale = sum(t.stale for t in turns)
    lines = [
        f"Thread {thread.name!r}: {len(turns)} turn{'s' * (len(turns) != 1)}"
        + (f", {stale} stale (re-run them to send them again)" if stale else "")
    ]
    header = ("#", "cell", "model", "tokens in/out", "ended", "", "prompt")
    rows: list[tuple[str, ...]] = []
    for i, turn in enumerate(turns, 1):
        if turn.usage:
            tokens = f"{turn.usage.get('input_tokens', '?')}/{turn.usage.get('output_tokens', '?')}"
        else:
            tokens = f"~{estimate_tokens(turn.user)}/~{estimate_tokens(turn.assistant)}"
        rows.append(
            (
                str(i),
                _short(turn.cell_id or "-", 10),
                _short(turn.model or "-", 28),
                tokens,
                "streaming" if turn.pending else turn.finish_reason,
                "stale" if turn.stale else "",
                _short(turn.user, 40),
            )
        )
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    for row in [header, *rows]:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    lines.append("Next prompt sends: " + thread.messages().summary() + ".")
    return "\n".join(lines)
