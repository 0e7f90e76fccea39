"""The history: every answer, recorded in a SQLite file, and the provenance a saved output keeps.

Where: the ``history`` option — a file path, or ``off`` (``NBSTREAM_HISTORY=off``). Unset, it
is ``history.sqlite`` in the user data directory (``platformdirs.user_data_path("nbstream")``,
e.g. ``~/.local/share/nbstream`` on Linux).

What: one row per answer, whatever its ending (finished, cut, stopped, interrupted, failed,
replayed from the cache): the prompt as sent (after ``{variable}`` interpolation), system
prompt, model, the options that differ from their defaults (no secrets: no option holds a key,
and URL credentials are masked), text, finish reason, error, usage, cost, timings, the notebook
and cell when the front end says (JupyterLab sends the cell id), and the request key of the
replay cache (:mod:`nbstream.cache`: equal keys = the same question).

How: rows go through a queue to one writer thread per file, so a stream never waits for the
disk; the queue is drained at exit (``atexit``), and the engine hands the row over even when
the kernel is interrupted. Several kernels may write one file: WAL journal, a busy timeout,
one short transaction per batch.

Read it with ``%llm history [N] [--search TEXT]`` or :func:`history` (a pandas DataFrame when
pandas is installed, else a list of dicts).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib
import json
import os
import queue
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbstream.cache import request_key
from nbstream.errors import HistoryError, warn_once
from nbstream.kernel import get_shell
from nbstream.providers.base import Attachment
from nbstream.providers.common import mask_url
from nbstream.retention import prune_once
from nbstream.settings import HISTORY_OFF, Settings, configured, request_fields, resolve
from nbstream.version import __version__

if TYPE_CHECKING:
    import sqlite3

    from nbstream.engine import Stream
    from nbstream.response import Response


SCHEMA_VERSION = 2
"""2: the ``tool_calls``, ``media`` and ``thinking`` columns (a version-1 file gets them when
opened)."""
BUSY_TIMEOUT = 30.0
"""Seconds the writer thread waits for another process's lock (in the background)."""
KERNEL_WAIT = 1.0
"""Seconds anything on the kernel's own thread waits for the history file (a lock held by
another process, rows still queued): past that it says so instead of blocking the kernel."""
SQLITE_HEADER = b"SQLite format 3\x00"
BATCH_DELAY = 0.05
"""Seconds the writer waits after a row for more to come, so that a batch of rows
(:func:`nbstream.map`) is written in a few transactions instead of one per row."""
SESSION = uuid.uuid4().hex[:12]
"""This process's id in the ``session`` column."""

COLUMNS: dict[str, str] = {
    "id": "INTEGER PRIMARY KEY AUTOINCREMENT",
    "created": "TEXT NOT NULL",  # ISO 8601, UTC, when the stream started
    "model": "TEXT",
    "prompt": "TEXT",
    "system": "TEXT",
    "options": "TEXT",  # JSON: options that differ from their defaults
    "text": "TEXT",
    "finish_reason": "TEXT",
    "error": "TEXT",
    "input_tokens": "INTEGER",
    "output_tokens": "INTEGER",
    "cached_input_tokens": "INTEGER",
    "usage": "TEXT",  # JSON, as the provider reported it
    "cost": "REAL",  # USD; NULL = unknown
    "cached": "INTEGER NOT NULL DEFAULT 0",  # replayed from the replay cache
    "ttft": "REAL",
    "elapsed": "REAL",
    "chunks": "INTEGER",
    "notebook": "TEXT",
    "cell_id": "TEXT",
    "request_key": "TEXT",  # the replay cache's key: same key, same question
    "prompt_sha256": "TEXT",
    "nbstream_version": "TEXT",
    "session": "TEXT",
    "pid": "INTEGER",
    "tool_calls": "TEXT",  # JSON: the calls (name, arguments, decision, result, error, …)
    "media": "TEXT",  # JSON: the prompt's images / PDFs (label, type, sha256, bytes, size)
    "thinking": "TEXT",  # the model's thinking, apart from the answer (reasoning models)
}
JSON_COLUMNS = ("options", "usage", "tool_calls", "media")

BATCH_COLUMNS: dict[str, str] = {
    "id": "TEXT PRIMARY KEY",  # "provider:batch id", what nbstream.collect() takes
    "created": "TEXT NOT NULL",
    "model": "TEXT NOT NULL",  # "provider:name"
    "base_url": "TEXT",  # the server it went to; NULL: the default (or a URL with credentials)
    "rows": "INTEGER NOT NULL",
    "prompts": "TEXT",  # JSON list: the prompt of each row, as sent (row order)
    "options": "TEXT",  # JSON: options that differ from their defaults
    "notebook": "TEXT",
    "session": "TEXT",
    "key": "TEXT",  # the rows' requests (sha256): a re-run of the same map finds its job
}
"""The ``batches`` table: provider batch jobs submitted by :func:`nbstream.map` with
``mode="batch"``, so that another kernel can collect the results in row order."""


def default_path() -> Path:
    """``history.sqlite`` in the user data directory."""
    import platformdirs

    return platformdirs.user_data_path("nbstream", appauthor=False) / "history.sqlite"


def history_path(setting: str | None) -> Path | None:
    """The file for a ``history`` option value; ``None`` when it is off."""
    if setting == HISTORY_OFF:
        return None
    if setting is None:
        return default_path()
    return Path(setting).expanduser()


# -- the record --------------------------------------------------------------------------------


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def options_of(settings: Settings) -> dict[str, Any]:
    """The options that differ from their defaults, without secrets, for the record (the
    model and the system prompt have their own fields; the history file is where it is)."""

    changed: dict[str, Any] = {}
    for name, field in Settings.model_fields.items():
        if name in ("model", "system", "history"):
            continue
        value = getattr(settings, name)
        if value == field.default:
            continue
        if isinstance(value, str):
            value = mask_url(value)
        changed[name] = value
    return changed


def front_end_context() -> dict[str, str | None]:
    """The notebook and the cell this call comes from, when the front end says: the cell id
    JupyterLab sends in the execute request's metadata, and the notebook's path from
    ``$JPY_SESSION_NAME`` or the ``__session__`` variable. Call it from the cell's thread."""

    shell = get_shell()
    cell_id = None
    kernel = getattr(shell, "kernel", None)
    if kernel is not None:
        parent: Any = None
        try:
            parent = kernel.get_parent("shell")  # ipykernel 6.29 and 7 take the channel
        except TypeError:
            parent = kernel.get_parent()
        except Exception:
            parent = None
        metadata = (parent or {}).get("metadata") or {}
        value = metadata.get("cellId") if isinstance(metadata, dict) else None
        cell_id = value if isinstance(value, str) and value else None
    notebook = os.environ.get("JPY_SESSION_NAME") or None
    if notebook is None and shell is not None:
        value = getattr(shell, "user_ns", {}).get("__session__")
        notebook = value if isinstance(value, str) and value else None
    return {"notebook": notebook, "cell_id": cell_id}


def created_at(response: Response) -> str:
    """When the stream started, ISO 8601 UTC."""
    started = time.time() - (response.elapsed or 0.0)
    return datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="milliseconds")


def record_of(
    stream: Stream,
    response: Response,
    *,
    request_key: str | None = None,
    context: dict[str, str | None] | None = None,
) -> dict[str, Any]:
    """The history row for one answer."""

    usage = response.usage or {}
    context = context or {}
    return {
        "created": created_at(response),
        "model": response.model,
        "prompt": response.prompt,
        "system": stream.request.system,
        "options": options_of(stream.settings),
        "text": response.text,
        "finish_reason": response.finish_reason,
        "error": response.error,
        "input_tokens": usage.get("input_tokens"),
        "output_tokens": usage.get("output_tokens"),
        "cached_input_tokens": usage.get("cached_input_tokens"),
        "usage": response.usage,
        "cost": response.cost,
        "cached": bool(response.cached),
        "ttft": response.ttft,
        "elapsed": response.elapsed,
        "chunks": response.chunks,
        "notebook": context.get("notebook"),
        "cell_id": context.get("cell_id"),
        "request_key": request_key,
        "prompt_sha256": sha256(response.prompt),
        "nbstream_version": __version__,
        "session": SESSION,
        "pid": os.getpid(),
        "tool_calls": _calls_of(stream, response),
        "media": _media_of(stream),
        "thinking": response.thinking,
    }


def _media_of(stream: Stream) -> list[dict[str, Any]] | None:
    """The prompt's attachments as the history keeps them: what identifies them, not them."""
    found = [
        {"label": p.label, **p.key_material(), "width": p.width, "height": p.height}
        for p in stream.request.parts
        if isinstance(p, Attachment)
    ]
    return found or None


def _calls_of(stream: Stream, response: Response) -> list[dict[str, Any]] | None:
    """The answer's tool calls (every round's, with decisions and results) or, for a round
    that asked for calls, the calls it asked for (``decision``: ``"asked"``)."""
    if response.tool_calls:
        return list(response.tool_calls)
    asked = [
        {"name": c.name, "arguments": c.arguments, "decision": "asked"} for c in stream.tool_calls
    ]
    return asked or None


NOT_PROVENANCE = frozenset({"connect_timeout", "api"})


def provenance(stream: Stream, response: Response) -> dict[str, Any]:
    """What a saved output keeps about its answer (``metadata["nbstream"]`` of the final
    display): model, options (no secrets), finish reason, usage, cost, the prompt's sha256,
    the replay cache's request key, nbstream version, when, and whether it was replayed."""

    provider = response.model.partition(":")[0]
    options: dict[str, Any] = {}
    for name in request_fields():  # what shapes the answer; not local paths or timeouts
        value = getattr(stream.settings, name)
        if name in NOT_PROVENANCE or value is None:
            continue
        options[name] = mask_url(value) if isinstance(value, str) else value
    return {
        "model": response.model,
        "options": options,
        "finish_reason": response.finish_reason,
        "error": response.error,
        "usage": response.usage,
        "cost": response.cost,
        "cached": bool(response.cached),
        "prompt_sha256": sha256(response.prompt),
        "request_key": request_key(provider, stream.request),
        "nbstream_version": __version__,
        "timestamp": created_at(response),
    }


# -- writing -------------------------------------------------------------------------------------


def connect(path: Path, timeout: float = BUSY_TIMEOUT) -> sqlite3.Connection:
    """Open (and if needed create) a history file: WAL, busy timeout, the table."""
    import sqlite3

    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=timeout, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
    with contextlib.suppress(sqlite3.OperationalError):  # e.g. a read-only file
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")  # WAL: no fsync per commit, still atomic
    columns = ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())
    with conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS answers ({columns})")
        _add_missing_columns(conn, "answers", COLUMNS)
        conn.execute("CREATE INDEX IF NOT EXISTS answers_created ON answers (created)")
        batches = ", ".join(f"{name} {kind}" for name, kind in BATCH_COLUMNS.items())
        conn.execute(f"CREATE TABLE IF NOT EXISTS batches ({batches})")
        _add_missing_columns(conn, "batches", BATCH_COLUMNS)
        if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return conn


def _add_missing_columns(conn: sqlite3.Connection, table: str, columns: dict[str, str]) -> None:
    """Bring a file written by an older nbstream up to ``columns`` (new columns only ever
    get added, all nullable)."""
    have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    for name, kind in columns.items():
        if name not in have:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")


def _row_values(row: dict[str, Any]) -> tuple[Any, ...]:
    values = []
    for name in COLUMNS:
        if name == "id":
            continue
        value = row.get(name)
        if name in JSON_COLUMNS and value is not None:
            value = json.dumps(value, ensure_ascii=False, default=str)
        elif name == "cached":
            value = int(bool(value))
        if isinstance(value, str):
            value = value.encode("utf-8", "replace").decode("utf-8")  # lone surrogates
        values.append(value)
    return tuple(values)


_INSERT = (
    f"INSERT INTO answers ({', '.join(n for n in COLUMNS if n != 'id')}) "
    f"VALUES ({', '.join('?' for n in COLUMNS if n != 'id')})"
)


def save_batch(path: Path, row: dict[str, Any]) -> None:
    """Record a submitted provider batch (written at once: its id must outlive the kernel);
    ``created`` is now unless the row says."""
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    values = {"created": created, **row, "session": SESSION}
    for name in ("prompts", "options"):
        if values.get(name) is not None:
            values[name] = json.dumps(values[name], ensure_ascii=False, default=str)
    names = [n for n in BATCH_COLUMNS if n in values]
    conn = connect(path)
    try:
        with conn:
            conn.execute(
                f"INSERT OR REPLACE INTO batches ({', '.join(names)}) "
                f"VALUES ({', '.join('?' for _ in names)})",
                [values[n] for n in names],
            )
    finally:
        conn.close()


def find_batch(path: Path, batch_id: str, *, key: str | None = None) -> dict[str, Any] | None:
    """The recorded batch ``batch_id`` (JSON columns decoded), or ``None``; with ``key``:
    the newest batch recorded for those requests instead."""
    import sqlite3

    if not path.exists():
        return None
    try:
        conn = connect(path, timeout=KERNEL_WAIT)
        try:
            if key is not None:
                query = "SELECT * FROM batches WHERE key = ? ORDER BY created DESC LIMIT 1"
            else:
                query = "SELECT * FROM batches WHERE id = ?"
            cursor = conn.execute(query, (batch_id if key is None else key,))
            found = cursor.fetchone()
            names = [d[0] for d in cursor.description]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise HistoryError(diagnose(path, exc)) from None
    if found is None:
        return None
    row = dict(zip(names, found, strict=True))
    for name in ("prompts", "options"):
        if row.get(name) is not None:
            row[name] = json.loads(row[name])
    return row


def insert(conn: sqlite3.Connection, rows: Iterable[dict[str, Any]]) -> None:
    with conn:
        conn.executemany(_INSERT, [_row_values(r) for r in rows])


class Writer:
    """One thread that writes the rows queued for one file, in batches."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fault: str | None = None
        """Why the last batch could not be written (one line, with the fix), until said."""
        self.queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self.cap: str | None = None
        self.thread = threading.Thread(
            target=self._run, name=f"nbstream-history-{path.name}", daemon=True
        )
        self.thread.start()

    def put(self, row: dict[str, Any]) -> None:
        self.queue.put(row)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued row is written (or given up); False on timeout."""
        deadline = time.monotonic() + timeout
        with self.queue.all_tasks_done:
            while self.queue.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0 or not self.thread.is_alive():
                    return False
                self.queue.all_tasks_done.wait(min(left, 0.1))
        return True

    def _run(self) -> None:
        conn = None
        while True:
            batch = [self.queue.get()]
            if self.cap:
                with contextlib.suppress(Exception):  # a prune that fails waits for next time
                    prune_once(self.path, self.cap)
            time.sleep(BATCH_DELAY)  # let rows gather: one transaction for many (a map())
            with contextlib.suppress(queue.Empty):
                while len(batch) < 500:
                    batch.append(self.queue.get_nowait())
            try:
                for attempt in range(3):
                    try:
                        if conn is None:
                            conn = connect(self.path)
                        insert(conn, batch)
                        break
                    except Exception:
                        if conn is not None:
                            with contextlib.suppress(Exception):
                                conn.close()
                        conn = None
                        if attempt == 2:
                            raise
                        time.sleep(0.2 * (attempt + 1))
            except Exception as exc:
                # said in the cell of the next answer (record()), or by %llm history
                self.fault = f"{len(batch)} answer(s) not recorded: " + diagnose(self.path, exc)
            finally:
                for _ in batch:
                    self.queue.task_done()


_writers: dict[Path, Writer] = {}
_writers_lock = threading.Lock()
_atexit_registered = False


def writer(path: Path) -> Writer:
    global _atexit_registered
    with _writers_lock:
        found = _writers.get(path)
        if found is None or not found.thread.is_alive():
            found = _writers[path] = Writer(path)
        if not _atexit_registered:
            atexit.register(flush_all)
            _atexit_registered = True
        return found


def diagnose(path: Path, exc: BaseException) -> str:
    """One line: what is wrong with the history file ``path`` and how to fix it."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return (
            f"the history file {path} is locked by another process ({text}); the kernel "
            f"waits {KERNEL_WAIT:g} s at most. Try again in a moment, or give this kernel its "
            "own file: "
            "%config LLMMagics.history = '/path/to/other.sqlite'"
        )
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return (
            f"the history file {path} is damaged ({text}): move it aside (e.g. rename it to "
            f"{path.name}.bad) and a new one is started, or turn the history off with "
            "%config LLMMagics.history = 'off'"
        )
    return (
        f"the history file {path} cannot be used ({type(exc).__name__}: {text}); check the "
        "folder's permissions and free space, or set %config LLMMagics.history to another file "
        "(or 'off')"
    )


def check_file(path: Path) -> str | None:
    """What is wrong with an existing history file that is not SQLite at all (read from its
    first bytes, without waiting for any lock), or ``None``."""
    try:
        with path.open("rb") as f:
            head = f.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return None
    except OSError as exc:
        return diagnose(path, exc)
    if head and head != SQLITE_HEADER:
        return diagnose(path, ValueError("file is not a database"))
    return None


_checked: set[Path] = set()


def record(path: Path, row: dict[str, Any], cap: str | None = None) -> None:
    """Queue ``row`` for ``path`` (returns at once). A fault of the file — found at the
    first row for it, or by the writer since — is warned once, where the answer is shown;
    the answer itself is never lost to it. ``cap``: the ``history_cap`` to prune the file
    by, once per process (on the writer's thread)."""
    if path not in _checked:
        _checked.add(path)
        fault = check_file(path)
        if fault is not None:
            warn_once(fault, f"nbstream: the answer was not recorded: {fault}")
    found = writer(path)
    if found.fault is not None:
        warn_once(found.fault, f"nbstream: {found.fault}")
    if cap:
        found.cap = cap
    found.put(row)


def flush(path: Path | None = None, timeout: float = 10.0) -> bool:
    """Wait until what was queued (for ``path``, or for every file) is written."""
    with _writers_lock:
        writers = [w for p, w in _writers.items() if path is None or p == path]
    return all(w.flush(timeout) for w in writers)


def flush_all() -> None:
    flush(timeout=10.0)


# -- reading -------------------------------------------------------------------------------------


def read(path: Path, n: int | None = 20, search: str | None = None) -> list[dict[str, Any]]:
    """The ``n`` most recent rows (all when ``n`` is None), oldest first; ``search``: only rows
    whose prompt, system prompt, answer, error or model contain it (case-insensitive)."""
    import sqlite3

    flush(path, timeout=KERNEL_WAIT)
    if not path.exists():
        return []
    fault = check_file(path)
    if fault is not None:
        raise HistoryError(fault)
    try:
        return _read(path, n, search)
    except sqlite3.DatabaseError as exc:
        raise HistoryError(diagnose(path, exc)) from None


def _read(path: Path, n: int | None, search: str | None) -> list[dict[str, Any]]:
    import sqlite3

    uri = path.resolve().as_uri() + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=KERNEL_WAIT)
    conn.row_factory = sqlite3.Row
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(KERNEL_WAIT * 1000)}")
        where, params = "", []
        if search:
            pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            pattern += "%"
            fields = ("prompt", "system", "text", "error", "model")
            where = "WHERE " + " OR ".join(f"{f} LIKE ? ESCAPE '\\'" for f in fields)
            params = [pattern] * len(fields)
        limit = "" if n is None else f"LIMIT {int(n)}"
        try:
            rows = conn.execute(
                f"SELECT * FROM answers {where} ORDER BY id DESC {limit}", params
            ).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
    finally:
        conn.close()
    out = []
    for row in reversed(rows):
        item = dict(row)
        for name in JSON_COLUMNS:
            if item.get(name) is not None:
                with contextlib.suppress(ValueError):
                    item[name] = json.loads(item[name])
        item["cached"] = bool(item.get("cached"))
        out.append(item)
    return out


def history(
    n: int | None = 20, search: str | None = None, *, path: str | os.PathLike[str] | None = None
) -> Any:
    """The ``n`` most recent answers (oldest first; ``n=None``: all), optionally only those
    containing ``search``; a pandas DataFrame (indexed by id) when pandas is installed, else
    a list of dicts. ``path``: another history file than the ``history`` option's."""
    file = Path(path).expanduser() if path is not None else _configured_path()
    if file is None:
        raise ValueError(
            "the history is off (history option / $NBSTREAM_HISTORY is 'off'); pass path= to "
            "read a history file"
        )
    rows = read(file, n, search)
    try:
        pd: Any = importlib.import_module("pandas")  # optional
    except ImportError:
        return rows
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    try:
        frame["created"] = pd.to_datetime(frame["created"], utc=True, format="ISO8601")
    except (ValueError, TypeError):  # pandas < 2
        frame["created"] = pd.to_datetime(frame["created"], utc=True)
    return frame.set_index("id")


def _configured_path() -> Path | None:
    return history_path(resolve({}, configured()).history)


__all__ = [
    "COLUMNS",
    "HistoryError",
    "check_file",
    "connect",
    "default_path",
    "diagnose",
    "flush",
    "front_end_context",
    "history",
    "history_path",
    "insert",
    "options_of",
    "provenance",
    "read",
    "record",
    "record_of",
]
