"""The Python API: ``await nbstream.ask(...)`` and ``nbstream.ask_sync(...)``.

The keyword arguments are the options of :class:`nbstream.settings.Settings`, written out
in :class:`Options` so that editors and type checkers see them (``tests/test_api.py``
checks that they match the declarations). A keyword not given falls back to
``%config LLMMagics.*``, then ``$NBSTREAM_<NAME>``, then the default — exactly as for
``%%llm``. ``background=True`` (how the call runs, not an option of the answer: like
``%%llm --bg``, not a setting) returns a :class:`~nbstream.background.Pending` at once;
it is declared in the overloads, so the functions' own signature stays
``(prompt, **options)``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypedDict, overload

from typing_extensions import Unpack

from nbstream import background as bg
from nbstream.background import Pending
from nbstream.conversation import thread as messages
from nbstream.engine import Stream
from nbstream.errors import SettingsError
from nbstream.kernel import in_kernel
from nbstream.prompts.interpolate import Composed
from nbstream.prompts.media import attachment_of
from nbstream.providers.base import Attachment
from nbstream.response import Response
from nbstream.run import caller_namespace, make_stream, run_awaited, run_blocking, store
from nbstream.settings import CacheMode, DisplayMode
from nbstream.store import history as read_history


def describe_option(name: str) -> str:
    """How the Python API names an option in messages: as a keyword argument."""
    return f"{name}=…"


def _stream(
    prompt: str | Sequence[Any],
    call: dict[str, Any],
    *,
    awaited: bool,
    namespace: Mapping[str, Any],
    background: bool = False,
) -> Stream:
    filled: str | Composed = prompt if isinstance(prompt, str) else parts_prompt(prompt)
    if not (filled if isinstance(filled, str) else filled.text).strip():
        raise ValueError("the prompt is empty: pass the question as the first argument")
    try:
        return make_stream(
            filled,
            call,
            describe_option=describe_option,
            awaited=awaited or background,  # a background view's Stop is heard between cells
            namespace=namespace,
            defaults=bg.defaults() if background else None,
        )
    except SettingsError as exc:
        raise SettingsError(exc.problems, call_name=str) from None


def parts_prompt(items: Sequence[Any]) -> Composed:
    """A prompt given as a list: text, and images or PDFs (a matplotlib figure, a PIL or
    IPython image, image or PDF bytes, a ``pathlib.Path``) in order:
    ``ask(["What does this show?", fig])``."""
    if isinstance(items, (bytes, bytearray)) or not isinstance(items, Sequence):
        raise TypeError("the prompt is a str, or a list of str and images / PDFs")
    parts: list[str | Attachment] = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            parts.append(item)
            continue
        found = attachment_of(item, f"attachment {i + 1}")
        if found is None:
            raise TypeError(
                f"prompt item {i + 1} is a {type(item).__name__}: a list prompt holds str and "
                "images or PDFs (figure, PIL / IPython image, bytes, pathlib.Path); put other "
                "values into the text"
            )
        parts.append(found)
    text = "".join(p if isinstance(p, str) else f"[{p.kind}: {p.describe()}]" for p in parts)
    has_media = any(isinstance(p, Attachment) for p in parts)
    return Composed(text, tuple(parts) if has_media else ())


def _background(options: dict[str, Any]) -> bool:
    """Take ``background`` out of the keywords (it is not an option of the answer)."""
    value = options.pop("background", False)
    if not isinstance(value, bool):
        raise TypeError(f"background must be True or False, got {value!r}")
    return value


class Options(TypedDict, total=False):
    """The keyword arguments of :func:`ask` and :func:`ask_sync`: one per option of
    :class:`nbstream.settings.Settings` (``tests/test_api.py`` keeps them in step).
    Leaving one out means "not given", like :data:`~nbstream.settings.UNSET`."""

    model: str | None
    system: str | None
    temperature: float | None
    top_p: float | None
    max_tokens: int | None
    stop: list[str] | str | None
    base_url: str | None
    connect_timeout: float
    thinking: int | None
    reasoning_effort: Literal["low", "medium", "high"] | None
    api: Literal["auto", "chat", "responses"]
    save_thinking: Literal["on", "off"]
    first_token_timeout: float
    idle_timeout: float
    http_retries: int
    retry_max_wait: float
    display: DisplayMode
    throttle: float
    show_prompt: bool
    max_cost: float | None
    kernel_budget: float | None
    context_budget: int
    cells: int | None
    chat: str | bool | None
    chat_budget: int | None
    schema: str | object | None
    retries: int
    tools: str | Sequence[Callable[..., Any]] | None
    max_tool_rounds: int
    mcp_config: str | os.PathLike[str] | None
    auto_approve: bool
    cache: CacheMode
    cache_dir: str | os.PathLike[str]
    history: str | os.PathLike[str] | None
    history_cap: str | None
    prices: str | os.PathLike[str] | None


@overload
async def ask(
    prompt: str | Sequence[Any], *, background: Literal[False] = False, **options: Unpack[Options]
) -> Response: ...


@overload
async def ask(
    prompt: str | Sequence[Any], *, background: Literal[True], **options: Unpack[Options]
) -> Pending: ...


@overload
async def ask(
    prompt: str | Sequence[Any], *, background: bool, **options: Unpack[Options]
) -> Response | Pending: ...


async def ask(prompt: str | Sequence[Any], **options: Any) -> Response | Pending:
    """Stream an answer with the same live display, Stop button and semantics as ``%%llm``.

    ``await nbstream.ask("Explain …", model="openai:gpt-4o-mini")`` returns a
    :class:`~nbstream.Response` (also stored in ``_llm``). Every keyword is an option of
    ``%%llm`` (see :class:`Options` and ``%llm help``); ``display`` is ``"auto"`` (widget
    in notebooks, text elsewhere), ``"widget"``, ``"text"`` or ``"none"``. Invalid values
    raise :class:`~nbstream.errors.SettingsError` before anything is sent. A kernel
    interrupt stores the partial answer in ``_llm`` and raises KeyboardInterrupt.

    ``chat="name"`` (or ``True``: the default thread) continues a conversation, as
    ``%%llm --chat``: in a notebook the cell's id makes a re-run replace its own turn.
    ``schema=`` takes the type itself (a pydantic model, dataclass, TypedDict,
    ``list[Model]``, a JSON-schema dict) or a string naming one; the answer's ``.data`` is
    the validated object. A schema that cannot be used raises
    :class:`~nbstream.errors.SchemaError` (a ``ValueError``) before anything is sent.

    ``background=True`` (like ``%%llm --bg``): returns a :class:`~nbstream.background.Pending`
    as soon as the live view is shown; the answer streams on while other cells run.
    ``x.text`` is the text so far, ``x.stop()`` stops it (as its view's Stop does), ``await
    x`` / ``x.wait()`` return the final Response (also ``x.response`` once it ended); when
    it ends, ``_llm`` is rebound to the Response if it still holds the handle (your own
    variable stays the handle). A kernel interrupt does not stop it. Outside a notebook it
    shows nothing while it streams (unless ``display`` is given).
    """
    options = dict(options)
    background = _background(options)
    stream = _stream(
        prompt, options, awaited=True, namespace=caller_namespace(), background=background
    )
    if background:
        pending = bg.start(stream)
        await pending.shown()
        return pending
    response = await run_awaited(stream)
    store(response)
    if stream.interrupted and in_kernel():
        raise KeyboardInterrupt
    return response


@overload
def ask_sync(
    prompt: str | Sequence[Any], *, background: Literal[False] = False, **options: Unpack[Options]
) -> Response: ...


@overload
def ask_sync(
    prompt: str | Sequence[Any], *, background: Literal[True], **options: Unpack[Options]
) -> Pending: ...


@overload
def ask_sync(
    prompt: str | Sequence[Any], *, background: bool, **options: Unpack[Options]
) -> Response | Pending: ...


def ask_sync(prompt: str | Sequence[Any], **options: Any) -> Response | Pending:
    """Blocking :func:`ask` for scripts and plain functions (same keywords).

    The display follows ``display`` / ``%config`` like ``ask`` (in a notebook: the live
    view, without a working Stop button, since the cell does not await). Ctrl-C stops the
    stream and returns the partial answer (``finish_reason == "cancelled"``); in a kernel,
    an interrupt stores it in ``_llm`` and raises KeyboardInterrupt, like ``%%llm``.

    ``background=True``: returns a :class:`~nbstream.background.Pending` at once (once the
    live view is shown, in a notebook), as :func:`ask` does; there its view's Stop works.
    In a script nothing is shown while it streams (unless ``display`` is given): ``x =
    ask_sync(..., background=True)``, other work, then ``x.wait()``.
    """
    options = dict(options)
    background = _background(options)
    stream = _stream(
        prompt, options, awaited=False, namespace=caller_namespace(), background=background
    )
    if background:
        pending = bg.start(stream)
        pending.wait_shown()
        return pending
    response = run_blocking(stream)
    store(response)
    if stream.interrupted and in_kernel():
        raise KeyboardInterrupt
    return response


def history(
    n: int | None = 20, search: str | None = None, *, path: str | os.PathLike[str] | None = None
) -> Any:
    """The ``n`` most recent recorded answers, oldest first (``n=None``: all), optionally only
    those whose prompt, system prompt, answer, error or model contain ``search``.

    A pandas DataFrame indexed by id when pandas is installed, else a list of dicts; the
    columns are described in :mod:`nbstream.store` (prompt, model, options, text,
    finish_reason, usage, cost, cached, timings, notebook, cell_id, …). Reads the file of the
    ``history`` option (``%config LLMMagics.history``, ``$NBSTREAM_HISTORY``), or ``path``.
    A damaged or locked file raises :class:`~nbstream.HistoryError` saying how to fix it."""

    return read_history(n, search, path=path)


def thread(name: str | None = None) -> list[dict[str, str]]:
    """The conversation ``name`` (``None``: the default thread) as chat messages, system
    first, stale and unanswered turns left out: what ``%%llm --chat`` sends before the next
    prompt (without a budget). ``%llm thread`` shows it as a table."""

    return messages(name)


__all__ = ["Options", "ask", "ask_sync", "describe_option", "history", "thread"]
