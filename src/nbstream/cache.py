"""The replay cache: answers recorded as files, replayed without asking the model again.

A data scientist's notebook re-runs from the top many times; with ``cache="auto"`` the same
question is asked (and paid for) once, and committing the cache folder makes the notebook's
answers reproducible for everyone (``cache="replay"`` in CI: nothing is sent, a missing answer
is an error).

**The key** is the sha256 of a canonical JSON (sorted keys, ASCII) of the provider and every
field of the :class:`~nbstream.providers.base.Request` — prompt, model, system, temperature,
top_p, max_tokens, stop, and whatever fields ``Request`` gains later (conversation
``messages``, a ``schema``) — except :data:`NOT_IN_KEY` (how and where the request is sent:
timeouts, the server URL, which may carry credentials). Fields that are ``None`` or empty are
left out, so adding an optional field to ``Request`` keeps existing keys valid.

**The modes** (the ``cache`` option):

``off`` (default)
    Neither read nor write. Re-running a cell usually means "answer again", and writing
    files next to a notebook should be asked for.
``auto``
    Reuse a recorded answer; on a miss ask the model and record the answer.
``read``
    Reuse a recorded answer; on a miss ask the model, record nothing.
``write``
    Always ask the model; record (overwrite) the answer.
``replay``
    Recorded answers only: a miss is an error and nothing is sent. Record with
    ``cache="write"`` (or ``"auto"``) first.

Only answers that completed (``stop`` or ``length``) are recorded, and only after the verdict
(:meth:`Lookup.commit`, called by the front door's bookkeeping once a schema answer is
validated): stopped, failed and invalid answers never are, so a re-run asks again.
A cache folder that cannot be written warns once (per folder) and loses no answer; a damaged
file (hand-edited, truncated) is a miss, said once per file.

**The files**: one pretty-printed JSON file per request, ``<cache_dir>/<first 16 hex digits of
the key>.json``, holding the key and the key material (for reviewers, and to detect a
collision of the short name), the deltas as they arrived, the finish reason, usage, model,
creation time and nbstream version. No credentials: the key material leaves out the URL and
no API key is ever part of a request.

**Replaying** streams the recorded deltas at a brisk fixed pace (2 ms apart, 1 s at most in
all), so the live view and the sinks behave as for a real answer; the response is marked
``cached`` and costs nothing.

The cache is a provider wrapper (:func:`wrap`): the engine and the sinks need no special case.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import hashlib
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nbstream.errors import ProviderError, warn_once
from nbstream.providers.base import (
    Final,
    Provider,
    Request,
    ThinkingDelta,
    ToolCall,
    ToolCallDelta,
)
from nbstream.settings import Settings
from nbstream.version import __version__

NOT_IN_KEY = frozenset({"base_url", "connect_timeout", "api", "whole"})
"""Request fields that say how the request travels, not what is asked: never in the key."""

FORMAT = 1
"""Version of the key material and file layout."""

NAME_LENGTH = 16
"""Hex digits of the key in a cache file's name."""

PACE = 0.002
"""Seconds between replayed deltas..."""
MAX_REPLAY = 1.0
"""...and at most this long for the whole answer."""

READS = frozenset({"auto", "read", "replay"})
"""The modes that reuse a recorded answer."""
WRITES = frozenset({"auto", "write"})
"""The modes that record an answer."""

REPLAY_PACE: contextvars.ContextVar[float] = contextvars.ContextVar(
    "nbstream_replay_pace", default=PACE
)
"""The pace of replays started in this context: :func:`nbstream.map` sets 0 (a resumed row
is there at once; its answer is not watched token by token)."""


def _plain(value: Any) -> Any:
    """A JSON-friendly form of a request field (tuples → lists, dataclasses → dicts,
    pydantic models or classes → their JSON schema, anything else → repr)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    key = getattr(value, "key_material", None)
    if callable(key):  # an Attachment: its hash, not its bytes
        return _plain(key())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    schema = getattr(value, "model_json_schema", None)
    if callable(schema):
        with contextlib.suppress(Exception):
            return _plain(schema())
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    return repr(value)


def key_material(provider: str, request: Request) -> dict[str, Any]:
    """What identifies a request: the provider and every request field but :data:`NOT_IN_KEY`
    (``None`` and empty values left out)."""
    material: dict[str, Any] = {"format": FORMAT, "provider": provider}
    for field in dataclasses.fields(request):
        if field.name in NOT_IN_KEY:
            continue
        value = _plain(getattr(request, field.name))
        if value is None or value == [] or value == {}:
            continue
        material[field.name] = value
    return material


def request_key(provider: str, request: Request) -> str:
    """The sha256 (hex) of the canonical JSON of :func:`key_material`."""
    canonical = json.dumps(
        key_material(provider, request), sort_keys=True, separators=(",", ":"), ensure_ascii=True
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def cache_path(cache_dir: str | os.PathLike[str], key: str) -> Path:
    return Path(cache_dir).expanduser() / f"{key[:NAME_LENGTH]}.json"


@dataclasses.dataclass(frozen=True)
class Entry:
    """One recorded answer."""

    key: str
    deltas: list[str]
    finish_reason: str
    usage: dict[str, int] | None
    model: str
    tool_calls: tuple[ToolCall, ...] = ()
    """The calls the model asked for in this answer."""
    tool_results: list[dict[str, Any]] | None = None
    """What those calls returned when they ran (recorded after them: a replay uses these and
    runs nothing); ``None``: not recorded."""
    thinking: list[str] = dataclasses.field(default_factory=list)
    """The thinking deltas (replayed before the answer's)."""
    thinking_blocks: tuple[dict[str, Any], ...] = ()


def read(cache_dir: str | os.PathLike[str], key: str) -> Entry | None:
    """The recorded answer for ``key``, or ``None`` (no file, another key with the same short
    name, or a file that is not a recorded answer)."""
    path = cache_path(cache_dir, key)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None  # not recorded (or unreadable: the same as not recorded)
    try:
        data = json.loads(text)
    except ValueError as exc:
        return _damaged(path, f"not valid JSON ({exc})")
    return entry_of(data, key, path)


def entry_of(data: Any, key: str, path: Path) -> Entry | None:
    """The :class:`Entry` recorded in ``data`` (a file's or a pack line's JSON) for ``key``;
    ``None`` for another key; a damaged one is said once and is a miss."""
    if not isinstance(data, dict):
        return _damaged(path, "not a JSON object")
    if data.get("key") != key:
        return None  # another request with the same short name
    deltas = data.get("deltas")
    finish = data.get("finish_reason")
    model = data.get("model")
    usage = data.get("usage")
    if not isinstance(deltas, list) or not all(isinstance(d, str) for d in deltas):
        return _damaged(path, "'deltas' is not a list of strings")
    if finish not in ("stop", "length"):
        return _damaged(path, f"'finish_reason' is {finish!r}, not 'stop' or 'length'")
    if not isinstance(model, str):
        return _damaged(path, "'model' is missing")
    if usage is not None and not (
        isinstance(usage, dict) and all(type(v) is int for v in usage.values())
    ):
        return _damaged(path, "'usage' holds something that is not a token count")
    calls = data.get("tool_calls") or []
    results = data.get("tool_results")
    try:
        tool_calls = tuple(
            ToolCall(str(c["id"]), str(c["name"]), str(c["arguments"])) for c in calls
        )
    except (TypeError, KeyError):
        return _damaged(path, "'tool_calls' is not a list of calls")
    if results is not None and not (
        isinstance(results, list) and all(isinstance(r, dict) for r in results)
    ):
        return _damaged(path, "'tool_results' is not a list of results")
    thinking = data.get("thinking") or []
    blocks = data.get("thinking_blocks") or []
    if not (isinstance(thinking, list) and all(isinstance(t, str) for t in thinking)):
        return _damaged(path, "'thinking' is not a list of strings")
    if not (isinstance(blocks, list) and all(isinstance(b, dict) for b in blocks)):
        return _damaged(path, "'thinking_blocks' is not a list of blocks")
    return Entry(key, deltas, finish, usage, model, tool_calls, results, thinking, tuple(blocks))


def _damaged(path: Path, why: str) -> Entry | None:
    """Say once that the entry at ``path`` is damaged; it is a miss (``None``)."""
    warn_once(
        str(path),
        f"nbstream: the cache entry {path} is damaged ({why}); it is treated as not recorded "
        "and the request is sent. Delete the file (or record it again with cache='write').",
    )
    return None


def write(
    cache_dir: str | os.PathLike[str],
    key: str,
    material: dict[str, Any],
    model: str,
    deltas: list[str],
    final: Final,
    thinking: list[str] | None = None,
) -> Path:
    """Record an answer (atomically: a reader never sees half a file)."""

    path = cache_path(cache_dir, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_json(path, entry_data(key, material, model, deltas, final, thinking))
    return path


def entry_data(
    key: str,
    material: dict[str, Any],
    model: str,
    deltas: list[str],
    final: Final,
    thinking: list[str] | None = None,
) -> dict[str, Any]:
    """What is recorded for an answer (a file, or a line of a :class:`Pack`)."""
    return {
        "key": key,
        "request": material,
        "model": model,
        "deltas": deltas,
        "finish_reason": final.finish_reason,
        "usage": final.usage,
        "tool_calls": [dataclasses.asdict(c) for c in final.tool_calls],
        **({"thinking": thinking} if thinking else {}),
        **(
            {"thinking_blocks": [dict(b) for b in final.thinking_blocks]}
            if final.thinking_blocks
            else {}
        ),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "nbstream": __version__,
    }


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write an entry atomically (a reader never sees half a file)."""
    try:
        text = json.dumps(data, indent=1, ensure_ascii=False)
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: escape everything instead
        text = json.dumps(data, indent=1, ensure_ascii=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, path)


def record_tool_results(lookup: Lookup, results: list[dict[str, Any]]) -> None:
    """Add what the answer's tool calls returned to its recorded entry (written when it
    ended): a replay of this answer hands these back instead of running the tools."""
    if lookup.pack is not None:
        lookup.pack.update(lookup.key, {"tool_results": results})
        return
    if lookup.path is None or not lookup.path.exists():
        return
    try:
        data = json.loads(lookup.path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if not isinstance(data, dict) or data.get("key") != lookup.key:
        return
    data["tool_results"] = results
    try:
        _write_json(lookup.path, data)
    except OSError as exc:
        warn_once(str(lookup.path), f"nbstream: could not record tool results in the cache: {exc}")


def recorded(provider_name: str, request: Request, settings: Settings) -> Entry | None:
    """The recorded answer for ``request`` when ``settings.cache`` reuses answers, else
    ``None`` (for answers that are not streamed: a provider batch's rows)."""
    if settings.cache not in READS:
        return None
    key = request_key(provider_name, request)
    pack = PACK.get()
    return pack.get(key) if pack is not None else read(settings.cache_dir, key)


def keep(
    provider_name: str, model_id: str, request: Request, settings: Settings, final: Final, text: str
) -> None:
    """Record a completed answer when ``settings.cache`` records (as one delta; a disk
    error loses the record, never the answer)."""
    if settings.cache not in WRITES:
        return
    key = request_key(provider_name, request)
    material = key_material(provider_name, request)
    _write_or_warn(settings.cache_dir, key, material, model_id, [text], final)


def _write_or_warn(
    cache_dir: str | os.PathLike[str],
    key: str,
    material: dict[str, Any],
    model: str,
    deltas: list[str],
    final: Final,
    thinking: list[str] | None = None,
) -> None:
    """:func:`write` (or a line of the map's :class:`Pack`); a folder that cannot be written
    warns once and loses nothing else."""
    try:
        pack = PACK.get()
        if pack is not None:
            pack.add(entry_data(key, material, model, deltas, final, thinking))
            return
        write(cache_dir, key, material, model, deltas, final, thinking)
    except OSError as exc:
        warn_once(
            f"write:{os.fspath(cache_dir)}",
            f"nbstream: cannot record answers in the cache folder {os.fspath(cache_dir)} "
            f"({type(exc).__name__}: {exc.strerror or exc}); answers are returned but not "
            "recorded. Choose a writable folder with cache_dir= / --cache-dir, or cache='read'.",
        )


# -- a map's rows in one file -----------------------------------------------------------------


class Pack:
    """The finished rows of one ``map`` call in one file (JSON lines, one recorded answer
    each), so that resuming a batch does not leave a file per row in the notebook's folder:
    ``map`` records into a pack unless the replay cache was chosen explicitly (``cache=``,
    ``%config``, ``$NBSTREAM_CACHE``), which keeps one committable file per answer. Lines are
    appended as rows finish (a crash loses at most the line being written: an unreadable
    line is skipped); a later line for a key wins."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, Any]] = {}
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError:
            lines = []
        for line in lines:
            try:
                data = json.loads(line)
            except ValueError:
                continue  # a line cut by a crash
            if isinstance(data, dict) and isinstance(data.get("key"), str):
                self._data[data["key"]] = _slim({**self._data.get(data["key"], {}), **data})

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str) -> Entry | None:
        data = self._data.get(key)
        return None if data is None else entry_of(data, key, self.path)

    def add(self, data: dict[str, Any]) -> None:
        self._append(data)
        self._data[data["key"]] = _slim(data)

    def update(self, key: str, fields: dict[str, Any]) -> None:
        """Add ``fields`` to ``key``'s entry (e.g. its tool results)."""
        if key in self._data:
            self._append({"key": key, **fields})
            self._data[key] = {**self._data[key], **fields}

    def _append(self, data: dict[str, Any]) -> None:
        try:
            line = json.dumps(data, ensure_ascii=False)
            line.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate
            line = json.dumps(data, ensure_ascii=True)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write(line + "\n")


def _slim(data: dict[str, Any]) -> dict[str, Any]:
    """What a pack keeps in memory of a line: what a replay reads (:func:`entry_of`), not
    the request it answered (the file has it): ~1 KB less a row on a 100,000-row map."""
    return {k: v for k, v in data.items() if k not in ("request", "created", "nbstream")}


PACK: ContextVar[Pack | None] = ContextVar("nbstream_pack", default=None)
"""The pack the rows of the running ``map`` read and record (set by its runner)."""


def pack_path(cache_dir: str | os.PathLike[str], model: str, prompts: list[str]) -> Path:
    """The pack of a ``map`` call: one per model and list of prompts (a re-run of the same
    call finds it)."""
    digest = hashlib.sha256(model.encode())
    for prompt in prompts:
        digest.update(b"\x00" + prompt.encode("utf-8", "surrogatepass"))
    return Path(cache_dir).expanduser() / f"map-{digest.hexdigest()[:16]}.jsonl"


# -- the provider wrapper ---------------------------------------------------------------------


@dataclasses.dataclass
class Lookup:
    """What the cache decided for one request."""

    key: str
    hit: bool = False
    replay_miss: bool = False
    """``cache="replay"`` and nothing recorded: the request is not sent."""
    path: Path | None = None
    entry: Entry | None = None
    """The recorded answer replayed (a hit)."""
    pending: Callable[[], None] | None = None
    """The recorder's write of a completed answer, waiting for the verdict (:meth:`commit`)."""
    pack: Pack | None = None
    """The map's pack the answer is read from and recorded into (instead of its own file)."""

    def commit(self, finish_reason: str) -> None:
        """Record the answer that came through this lookup's recorder, if its verdict is a
        usable answer (``stop`` / ``length``): not an answer that failed validation."""
        pending, self.pending = self.pending, None
        if pending is not None and finish_reason in ("stop", "length"):
            pending()


def replayer(entry: Entry) -> Provider:
    """A provider that streams ``entry`` again at a brisk fixed pace."""

    async def replay(request: Request) -> AsyncIterator[str | ThinkingDelta | Final]:
        items: list[str | ThinkingDelta] = [ThinkingDelta(t) for t in entry.thinking]
        items += entry.deltas
        n = len(items)
        step = min(REPLAY_PACE.get(), MAX_REPLAY / n) if n else 0.0
        start = time.monotonic()
        for i, delta in enumerate(items):
            ahead = start + i * step - time.monotonic()
            await asyncio.sleep(ahead if ahead > 0.001 else 0)
            yield delta
        yield Final(
            entry.finish_reason,  # type: ignore[arg-type]
            entry.usage,
            tool_calls=entry.tool_calls,
            thinking_blocks=entry.thinking_blocks,
        )

    return replay


Item = str | ToolCallDelta | ThinkingDelta | Final


def recorder(
    provider: Provider, lookup: Lookup, cache_dir: str, material: dict[str, Any], model: str
) -> Provider:
    """``provider``, keeping what came through when it completed with a :class:`Final` as
    ``lookup.pending``: written by :meth:`Lookup.commit` once the answer is judged."""

    async def record(
        request: Request,
    ) -> AsyncIterator[str | ToolCallDelta | ThinkingDelta | Final]:
        deltas: list[str] = []
        thinking: list[str] = []
        stream = provider(request)
        try:
            async for item in stream:
                if isinstance(item, Final):
                    # before yielding: the engine stops iterating at the Final
                    lookup.pending = functools.partial(
                        _write_or_warn,
                        cache_dir,
                        lookup.key,
                        material,
                        model,
                        deltas,
                        item,
                        thinking,
                    )
                    yield item
                    return
                if isinstance(item, str):
                    deltas.append(item)
                elif isinstance(item, ThinkingDelta):
                    thinking.append(item.text)
                yield item
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

    return record


def refuser(lookup: Lookup, cache_dir: str) -> Provider:
    """``cache="replay"`` without a recorded answer: fail, sending nothing."""

    async def refuse(request: Request) -> AsyncIterator[str | Final]:
        raise ProviderError(
            f"no recorded answer for this request in {cache_dir} (key {lookup.key[:NAME_LENGTH]})"
            " and the cache is in replay mode, so nothing was sent; record it by running once "
            'with cache="write" (or "auto")',
            option="cache",
        )
        yield ""  # pragma: no cover - makes this an async generator

    return refuse


def wrap(
    provider: Provider, provider_name: str, model_id: str, request: Request, settings: Settings
) -> tuple[Provider, Lookup]:
    """Apply ``settings.cache`` to ``provider`` for ``request``."""
    key = request_key(provider_name, request)
    lookup = Lookup(key)
    mode = settings.cache
    if mode == "off":
        return provider, lookup
    cache_dir = settings.cache_dir
    pack = PACK.get() if mode == "auto" else None
    lookup.pack = pack
    lookup.path = None if pack is not None else cache_path(cache_dir, key)
    if mode in READS:
        entry = pack.get(key) if pack is not None else read(cache_dir, key)
        if entry is not None:
            lookup.hit = True
            lookup.entry = entry
            return replayer(entry), lookup
    if mode == "replay":
        lookup.replay_miss = True
        return refuser(lookup, cache_dir), lookup
    if mode in WRITES:
        material = key_material(provider_name, request)
        return recorder(provider, lookup, cache_dir, material, model_id), lookup
    return provider, lookup  # read, miss


__all__ = [
    "NOT_IN_KEY",
    "PACK",
    "READS",
    "REPLAY_PACE",
    "WRITES",
    "Entry",
    "Lookup",
    "Pack",
    "cache_path",
    "keep",
    "key_material",
    "pack_path",
    "read",
    "recorded",
    "request_key",
    "wrap",
    "write",
]
