"""`Response`: the answer as a plain ``str`` that also says how it ended."""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from typing import Any

from nbstream.errors import ResponseError
from nbstream.kernel import get_shell
from nbstream.pricing import format_cost
from nbstream.prompts.cells import last_image
from nbstream.prompts.cells import latest as latest_cell
from nbstream.prompts.fingerprint import fingerprint
from nbstream.prompts.interpolate import lookup
from nbstream.providers.base import FinishReason

EMPTY_INPUT = "empty input"
"""The ``error`` of a batch row skipped because what its prompt uses is missing (counted as
skipped, not failed)."""

_REPR_TEXT_LIMIT = 200

LABELS: dict[str, str] = {
    "waiting": "waiting for the first token",
    "thinking": "thinking",
    "retrying": "retrying",
    "streaming": "streaming",
    "stop": "finished",
    "length": "cut by length",
    "cancelled": "stopped",
    "error": "failed",
}
"""The words for every state of a stream, live (the first four) and at the end (the finish
reasons). The live view, the saved output's footer, the terminal and ``Response.ending``
all read them from here."""


class Response(str):
    """The text of an answer, plus how the stream ended and what it cost.

    It *is* a ``str`` (``len``, slicing, f-strings, ``json.dumps`` all work on the text);
    the extra attributes are:

    ``finish_reason``
        ``"stop"`` (the model finished), ``"length"`` (cut by the max_tokens option),
        ``"cancelled"`` (Stop button, interrupt or Ctrl-C) or ``"error"``.
    ``error``
        A one-line message when ``finish_reason == "error"``, else ``None``.
    ``model``
        ``"provider:name"`` that produced it.
    ``usage``
        ``{"input_tokens": int, "output_tokens": int}`` when the provider reported it.
    ``ttft`` / ``elapsed``
        Seconds to the first token (``None`` if none came) and in total.
    ``prompt``
        The prompt that was sent (after ``{var}`` interpolation).
    ``chunks``
        How many text deltas arrived (a rough token count when ``usage`` is missing).
    ``cost``
        USD, from :mod:`nbstream.pricing`: ``None`` when unknown (no price for the model,
        or stopped before the provider reported usage), 0.0 for a local model or a replay.
    ``cached``
        True when the answer was replayed from the replay cache (nothing was sent).
    ``data``
        With a schema (``--schema``): the validated object (a model instance, a list of
        them, a dict …) when the answer finished and matched; else ``None`` (stopped, cut,
        failed, or not valid: then ``finish_reason == "error"`` and ``error`` says which
        field). The text stays the raw JSON. :meth:`to_pandas` makes a DataFrame of it.
    ``tool_calls``
        With tools (``--tools``): every call the model asked for, in order, as dicts:
        ``name``, ``arguments``, ``decision`` (``ran`` / ``skipped`` / ``refused`` /
        ``replayed`` / ``invalid``), ``result`` (what the model was sent), ``error``,
        ``elapsed`` (seconds), ``round``.
    ``thinking``
        The model's thinking (reasoning) text, streamed apart from the answer (``--thinking``,
        reasoning models, ``<think>`` tags); ``None`` when it showed none. The answer's text
        never contains it.
    ``time_to_thinking``
        Seconds to the first thinking token (``ttft`` is the first *answer* token).
    ``inputs``
        Fingerprints of what the prompt read (see :mod:`nbstream.prompts.fingerprint`):
        each ``{field}`` by its path (``df``, ``df.columns``), ``last_figure``, the cells of
        ``--cells`` (``cell:ID``: stale once the cell is re-run with another source or
        output) and the conversation's earlier turns (``thread:NAME#N``). :meth:`stale` tells
        which of them have changed since.

    Operations that produce a new string (``upper()``, ``+``, slicing) return plain ``str``.
    """

    finish_reason: FinishReason
    error: str | None
    model: str
    usage: dict[str, int] | None
    ttft: float | None
    elapsed: float
    prompt: str
    chunks: int
    cost: float | None
    cached: bool
    data: Any
    tool_calls: list[dict[str, Any]]
    thinking: str | None
    time_to_thinking: float | None
    thinking_seconds: float | None
    """How long it thought: from its first thinking token to its first answer token."""
    thinking_chunks: int
    inputs: dict[str, str]
    names: list[str]
    """The variables ``-o NAME`` bound it to (for ``%llm stale``)."""

    def __new__(
        cls,
        text: str = "",
        *,
        finish_reason: FinishReason = "stop",
        error: str | None = None,
        model: str = "",
        usage: dict[str, int] | None = None,
        ttft: float | None = None,
        elapsed: float = 0.0,
        prompt: str = "",
        chunks: int = 0,
        cost: float | None = None,
        cached: bool = False,
        data: Any = None,
        tool_calls: list[dict[str, Any]] | None = None,
        thinking: str | None = None,
        time_to_thinking: float | None = None,
        thinking_seconds: float | None = None,
        thinking_chunks: int = 0,
    ) -> Response:
        self = super().__new__(cls, text)
        self.finish_reason = finish_reason
        self.error = error
        self.model = model
        self.usage = usage
        self.ttft = ttft
        self.elapsed = elapsed
        self.prompt = prompt
        self.chunks = chunks
        self.cost = cost
        self.cached = cached
        self.data = data
        self.tool_calls = list(tool_calls or [])
        self.thinking = thinking
        self.time_to_thinking = time_to_thinking
        self.thinking_seconds = thinking_seconds
        self.thinking_chunks = thinking_chunks
        self.inputs = {}
        self.names = []
        return self

    @property
    def text(self) -> str:
        """The answer as a plain ``str``."""
        return str.__str__(self)

    @property
    def ok(self) -> bool:
        """True when the model finished on its own (``finish_reason == "stop"``)."""
        return self.finish_reason == "stop"

    @property
    def output_tokens(self) -> int:
        """Output tokens as reported by the provider, else the number of deltas received."""
        if self.usage and "output_tokens" in self.usage:
            return int(self.usage["output_tokens"])
        return self.chunks

    @property
    def ending(self) -> str:
        """How it ended, in words: finished, cut by length, stopped, failed."""
        return LABELS.get(self.finish_reason, self.finish_reason)

    @property
    def code_blocks(self) -> list[tuple[str, str]]:
        """The fenced code blocks of the answer, as ``(language, code)`` pairs (language
        ``""`` when the fence has none)."""
        from nbstream.render.markdown import code_blocks  # lazy: markdown-it, pygments

        return code_blocks(self.text)

    def python_code(self) -> str:
        """The answer's Python code blocks, joined: what ``--to-cell`` puts in a cell."""
        from nbstream.render.markdown import python_code  # lazy: markdown-it, pygments

        return python_code(self.text)

    def to_pandas(self) -> Any:
        """The structured answer (:attr:`data`) as a ``pandas.DataFrame``: one row per
        record of a list, one row for a single object. Needs pandas and a validated answer."""
        if self.data is None:
            why = f"the answer {self.ending}" + (f": {self.error}" if self.error else "")
            if self.finish_reason == "stop":
                why = "it was not asked with a schema (--schema / schema=...)"
            raise ValueError(f"no structured data to convert: {why}")
        import importlib

        try:
            pandas: Any = importlib.import_module("pandas")
        except ImportError:
            raise ImportError(
                "Response.to_pandas() needs pandas: pip install pandas "
                "(the validated object is in .data)"
            ) from None
        from nbstream.structured.view import to_records  # lazy: pydantic

        return pandas.DataFrame(to_records(self.data))

    # A background answer (``%%llm --bg -o x``) is a :class:`~nbstream.Pending` while it
    # streams and becomes its Response when it ends: these let ``await x``, ``x.wait()``
    # and ``x.stop()`` work in both cases, whenever the cell that uses them runs.

    @property
    def done(self) -> bool:
        """Always True: a Response is a finished answer (see :class:`~nbstream.Pending`)."""
        return True

    def wait(self, timeout: float | None = None) -> Response:
        """The answer itself (it has ended)."""
        return self

    def stop(self) -> None:
        """Nothing to stop: the answer has ended."""

    def __await__(self) -> Generator[Any, None, Response]:
        return self
        yield  # an empty generator: ``await response`` is the response

    def raise_for_error(self) -> Response:
        """Raise :class:`~nbstream.errors.ResponseError` if the answer failed
        (``finish_reason == "error"``); else return the response itself, for chaining."""
        if self.finish_reason == "error":
            raise ResponseError(f"{self.model or 'the model'} failed: {self.error}", self)
        return self

    def summary(self) -> str:
        """One line on how it went:
        ``openai:gpt-4o-mini · finished · 42 tokens · 1.3 s · 35.2 tok/s · $0.0012``."""
        parts = [self.model, self.ending]
        if self.cached:
            parts.append("cached")
        parts += [f"{self.output_tokens} tokens", f"{self.elapsed:.1f} s"]
        streaming = self.elapsed - (self.ttft or 0.0)
        if self.ttft is not None and streaming > 0 and self.chunks > 1 and not self.cached:
            parts.append(f"{self.chunks / streaming:.1f} tok/s")
        if self.cost is not None:
            parts.append(format_cost(self.cost))
        text = " · ".join(p for p in parts if p)
        if self.error:
            text += f" — {self.error}"
        return text

    def stale(self, namespace: Mapping[str, Any] | None = None) -> list[str]:
        """The inputs of this answer that have changed since it was asked (``[]``: none),
        e.g. ``["df"]`` after ``df`` was filtered; a variable that is gone counts as
        changed. ``namespace``: where fields are looked up (default: the notebook's)."""
        return changed_inputs(self.inputs, namespace)

    def metadata(self) -> dict[str, Any]:
        """Everything but the text, as a JSON-friendly dict."""
        return {
            "finish_reason": self.finish_reason,
            "error": self.error,
            "model": self.model,
            "usage": self.usage,
            "ttft": self.ttft,
            "elapsed": self.elapsed,
            "prompt": self.prompt,
            "chunks": self.chunks,
            "cost": self.cost,
            "cached": self.cached,
            **({"tool_calls": self.tool_calls} if self.tool_calls else {}),
            **({"thinking": self.thinking} if self.thinking else {}),
        }

    def __repr__(self) -> str:
        text = self.text
        shown = text if len(text) <= _REPR_TEXT_LIMIT else text[:_REPR_TEXT_LIMIT] + "…"
        parts = [repr(shown), f"finish_reason={self.finish_reason!r}"]
        if self.error:
            parts.append(f"error={self.error!r}")
        if self.model:
            parts.append(f"model={self.model!r}")
        parts.append(f"chars={len(text)}")
        if self.usage:
            parts.append(f"usage={self.usage!r}")
        if self.cost is not None:
            parts.append(f"cost={self.cost:.6g}")
        if self.cached:
            parts.append("cached=True")
        parts.append(f"elapsed={self.elapsed:.2f}s")
        return f"Response({', '.join(parts)})"

    def with_text(self, text: str) -> Response:
        """The same answer (metadata and ``data``) with another text."""
        return Response(text, **self.metadata(), data=self.data)

    def __reduce__(self) -> tuple[Any, ...]:  # pickle, copy and deepcopy keep the metadata
        if self.data is None:
            return (_rebuild, (self.text, self.metadata()))
        return (_rebuild, (self.text, self.metadata(), _portable(self.data)))


def _portable(data: Any) -> Any:
    """``data`` itself when it can be pickled (models and dataclasses defined in a module,
    dicts, lists); else its plain JSON form (a class made on the fly, e.g. by
    ``pydantic.create_model``, cannot be pickled: the copy then holds dicts and lists)."""
    import pickle

    try:
        pickle.dumps(data)
    except Exception:
        from nbstream.structured.expressions import to_plain  # lazy: pydantic

        return to_plain(data)
    return data


def _rebuild(text: str, metadata: dict[str, Any], data: Any = None) -> Response:
    return Response(text, **metadata, data=data)


INPUT_CHECKS: dict[str, Callable[[str], str | None]] = {}
"""Fingerprints of inputs that are not variables, by key prefix (``thread:``, registered by
the layer that knows threads): ``check(key) -> fingerprint now`` (``None``: gone)."""

ANSWERS: list[Response] = []
"""This kernel's answers that read inputs, oldest first (the last :data:`KEEP_ANSWERS`), for
``%llm stale``."""
KEEP_ANSWERS = 200


def remember(response: Response) -> None:
    """Keep ``response`` for ``%llm stale`` (when it read anything)."""
    if response.inputs:
        ANSWERS.append(response)
        del ANSWERS[:-KEEP_ANSWERS]


def current_fingerprint(key: str, namespace: Mapping[str, Any]) -> str | None:
    """What input ``key`` fingerprints as now (``None``: it is gone)."""
    for prefix, check in INPUT_CHECKS.items():
        if key.startswith(prefix):
            return check(key)
    if key.startswith("cell:"):  # a cell of --cells: its latest run (re-run differently?)
        record = latest_cell(key)
        return None if record is None else fingerprint(record.state())
    try:
        value = lookup(key, namespace)
    except Exception:
        if key == "last_figure":
            image = last_image()
            return None if image is None else fingerprint(image)
        return None
    try:
        return fingerprint(value)
    except Exception:
        return None


def changed_inputs(
    inputs: Mapping[str, str], namespace: Mapping[str, Any] | None = None
) -> list[str]:
    """The keys of ``inputs`` whose fingerprint is different now (or that are gone)."""
    if namespace is None:
        shell = get_shell()
        namespace = getattr(shell, "user_ns", None) or {}
    return [k for k, was in inputs.items() if current_fingerprint(k, namespace) != was]
