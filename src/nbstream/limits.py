"""Rate limits of a batch: requests and tokens per minute, and holding back after 429s."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable


class Limiter:
    """Requests per minute and tokens per minute over sliding one-minute windows, and a
    pause of new requests after a 429 (:meth:`hold`)."""

    WINDOW = 60.0
    RECENT = 20

    def __init__(self, rpm: int | None, tpm: int | None) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self.starts: collections.deque[float] = collections.deque()
        self.tokens: collections.deque[list[float]] = collections.deque()  # [time, tokens]
        self.held_until = 0.0
        self.recent: collections.deque[bool] = collections.deque(maxlen=self.RECENT)

    def wait_for(self, estimate: int, now: float) -> float:
        """Seconds until a request of ``estimate`` tokens may start (0: now)."""
        while self.starts and self.starts[0] <= now - self.WINDOW:
            self.starts.popleft()
        while self.tokens and self.tokens[0][0] <= now - self.WINDOW:
            self.tokens.popleft()
        wait = self.held_until - now
        if self.rpm is not None and len(self.starts) >= self.rpm:
            wait = max(wait, self.starts[0] + self.WINDOW - now)
        if self.tpm is not None and self.tokens:
            used = sum(t[1] for t in self.tokens)
            if used + estimate > self.tpm:
                wait = max(wait, self.tokens[0][0] + self.WINDOW - now)
        return max(wait, 0.0)

    async def acquire(self, estimate: int, stopping: Callable[[], bool]) -> list[float] | None:
        """Wait for a slot; returns the token entry to :meth:`settle` (``None`` if stopped)."""
        while not stopping():
            now = time.monotonic()
            wait = self.wait_for(estimate, now)
            if wait <= 0:
                self.starts.append(now)
                entry = [now, float(estimate)]
                if self.tpm is not None:
                    self.tokens.append(entry)
                return entry
            await asyncio.sleep(min(wait, 0.1))  # short naps: Stop is seen at once
        return None

    def settle(self, entry: list[float], tokens: int) -> None:
        """Replace a request's estimate by the tokens it used."""
        entry[1] = float(tokens)

    def hold(self, seconds: float) -> None:
        """No new request for ``seconds`` (the server said 429: do not pile on)."""
        self.held_until = max(self.held_until, time.monotonic() + seconds)

    def answered(self, limited: bool, wait: float = 0.0) -> bool:
        """Count how a request was answered (``limited``: HTTP 429, asking to wait
        ``wait`` s). New requests are held back only when at least half of the last
        :data:`RECENT` answers were 429s — the batch is over the server's limit; an
        occasional 429 is the engine's to retry (Retry-After honoured) while the others
        go on. It takes :data:`RECENT` / 2 answers to judge: the first requests' 429s come
        back at once, before any answer, and would look like all of them (measured: a 1 s
        hold at the start of a batch with one 429 in six). True when this answer started a
        hold."""
        self.recent.append(limited)
        seen = len(self.recent)
        if limited and seen >= self.RECENT // 2 and sum(self.recent) * 2 >= seen:
            self.hold(wait)
            return True
        return False


__all__ = ["Limiter"]
