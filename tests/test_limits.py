"""Rate limits of a batch (:mod:`nbstream.limits`)."""

from __future__ import annotations

import time

import pytest

from nbstream.limits import Limiter


def test_rpm_window():
    limiter = Limiter(rpm=2, tpm=None)
    limiter.starts.extend([100.0, 110.0])
    assert limiter.wait_for(10, 120.0) == pytest.approx(40.0)  # the first start leaves at 160
    assert limiter.wait_for(10, 160.5) == 0.0


def test_tpm_window_and_settle():
    limiter = Limiter(rpm=None, tpm=1000)
    entry = [100.0, 900.0]
    limiter.tokens.append(entry)
    assert limiter.wait_for(200, 101.0) == pytest.approx(59.0)
    limiter.settle(entry, 300)  # it used fewer tokens than estimated
    assert limiter.wait_for(200, 101.0) == 0.0


def test_a_429_holds_back_new_requests():
    limiter = Limiter(rpm=None, tpm=None)
    limiter.hold(2.0)
    assert 1.5 < limiter.wait_for(1, time.monotonic()) <= 2.0


def test_only_mostly_429s_hold_the_batch_back():
    limiter = Limiter(rpm=None, tpm=None)
    for _ in range(9):
        limiter.answered(False)
    assert not limiter.answered(True, 5.0)  # one in ten: the engine retries that row
    assert limiter.wait_for(1, time.monotonic()) == 0.0
    held = [limiter.answered(True, 5.0) for _ in range(9)]
    assert held[-1] and not held[0]  # half of the last 20 were 429s: over the limit
    assert 4.5 < limiter.wait_for(1, time.monotonic()) <= 5.0


def test_the_first_requests_429s_alone_do_not_hold_the_batch_back():
    """32 requests go out at once; the 429s among them come back before any answer."""
    limiter = Limiter(rpm=None, tpm=None)
    assert not any(limiter.answered(True, 1.0) for _ in range(5))
    assert limiter.wait_for(1, time.monotonic()) == 0.0
    assert [limiter.answered(True, 1.0) for _ in range(5)][-1]  # ten 429s in a row: over
