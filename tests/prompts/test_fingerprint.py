"""Fingerprints of prompt inputs (``nbstream.prompts.fingerprint``)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from nbstream.prompts.fingerprint import FULL_ROWS, fingerprint


def test_equal_content_equal_fingerprint_and_any_change_shows():
    df = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    assert fingerprint(df) == fingerprint(df.copy())
    changed = df.copy()
    changed.loc[1, "a"] = 20
    assert fingerprint(changed) != fingerprint(df)
    assert fingerprint(df[df["a"] > 1]) != fingerprint(df)  # filtered
    assert fingerprint(df.rename(columns={"b": "c"})) != fingerprint(df)
    assert fingerprint(df.astype({"a": "float64"})) != fingerprint(df)
    assert fingerprint("text") == fingerprint("text") != fingerprint("text!")
    assert fingerprint([1, 2]) != fingerprint([1, 2, 3])
    assert fingerprint(np.arange(5)) != fingerprint(np.arange(5).astype(float))
    assert fingerprint(df["a"]) != fingerprint(df["b"])


def test_large_frames_are_sampled_and_say_so():
    big = pd.DataFrame({"v": np.arange(FULL_ROWS * 3, dtype="int64")})
    started = time.perf_counter()
    printed = fingerprint(big)
    took = time.perf_counter() - started
    print(f"\n[fingerprint] {len(big):,} rows, sampled: {took * 1000:.1f} ms")
    assert printed.endswith("~")
    small = pd.DataFrame({"v": np.arange(10)})
    assert not fingerprint(small).endswith("~")
    last = big.copy()
    last.iloc[-1, 0] = -1
    assert fingerprint(last) != printed  # the last row is always in the sample
    longer = pd.concat([big, big.iloc[:1]])
    assert fingerprint(longer) != printed  # the shape always counts


def test_objects_with_the_same_repr_are_the_same_input():
    class Thing:
        def __repr__(self) -> str:
            return "Thing(1)"

    assert fingerprint(Thing()) == fingerprint(Thing())
