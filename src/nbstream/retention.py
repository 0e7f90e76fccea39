"""Keeping the history file small: prune answers by age or by size (``history_cap``,
``%llm history --prune``).

A cap is ``"90d"`` (answers older than 90 days go) or ``"200MB"`` (the oldest answers go
until the file would hold about that much). The file grows by ~4 KB per answer, so a year of
heavy use is a few hundred MB; after a prune the file is compacted (``VACUUM``) so the space
is given back. Batches (``map(mode="batch")``'s ids, for ``collect``) are never pruned.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

_CAP = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(d|days?|mb)\s*$", re.IGNORECASE)
_pruned: set[tuple[Path, str]] = set()
_lock = threading.Lock()


@dataclass(frozen=True)
class Cap:
    days: float | None = None
    megabytes: float | None = None


def parse_cap(text: str) -> Cap:
    """``"90d"`` / ``"90 days"`` → an age cap; ``"200MB"`` → a size cap."""
    match = _CAP.match(text)
    if match is None:
        raise ValueError(f"history cap {text!r}: write an age as '90d' or a size as '200MB'")
    value, unit = float(match.group(1)), match.group(2).lower()
    return Cap(days=value) if unit.startswith("d") else Cap(megabytes=value)


@dataclass(frozen=True)
class Pruned:
    removed: int
    kept: int
    bytes_before: int
    bytes_after: int

    def __str__(self) -> str:
        return (
            f"pruned {self.removed} answer(s), kept {self.kept}; the file went from "
            f"{self.bytes_before / 1e6:.1f} MB to {self.bytes_after / 1e6:.1f} MB"
        )


def prune(path: Path, cap: Cap, *, now: datetime | None = None) -> Pruned:
    """Remove the answers beyond ``cap`` from the history file ``path`` and compact it."""
    before = path.stat().st_size if path.exists() else 0
    conn = sqlite3.connect(str(path), timeout=30)
    try:
        removed = 0
        if cap.days is not None:
            cutoff = (now or datetime.now(timezone.utc)) - timedelta(days=cap.days)
            with conn:
                cur = conn.execute("DELETE FROM answers WHERE created < ?", (cutoff.isoformat(),))
                removed += cur.rowcount
        if cap.megabytes is not None:
            total = conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
            page = conn.execute("PRAGMA page_size").fetchone()[0]
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            limit = cap.megabytes * 1e6
            if total and page * pages > limit:
                per_row = page * pages / total
                keep = max(int(limit / per_row), 0)
                with conn:
                    cur = conn.execute(
                        "DELETE FROM answers WHERE id NOT IN "
                        "(SELECT id FROM answers ORDER BY id DESC LIMIT ?)",
                        (keep,),
                    )
                    removed += cur.rowcount
        if removed:
            conn.execute("VACUUM")
        kept = conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
    finally:
        conn.close()
    after = path.stat().st_size if path.exists() else 0
    return Pruned(removed, kept, before, after)


def prune_once(path: Path, cap_text: str | None) -> None:
    """Prune ``path`` by ``cap_text`` the first time this process writes to it (the history
    writer's thread calls it; a failure is left to the next time)."""
    if not cap_text:
        return
    with _lock:
        if (path, cap_text) in _pruned:
            return
        _pruned.add((path, cap_text))
    if path.exists():
        prune(path, parse_cap(cap_text))


__all__ = ["Cap", "Pruned", "parse_cap", "prune", "prune_once"]
