"""Fingerprints of what an answer read, to tell later whether it changed (``%llm stale``,
``Response.stale()``).

A fingerprint is a short sha256 of the value's content: text and bytes whole; a DataFrame or
Series by pandas' own row hashes (index, values) plus its columns and dtypes; a NumPy array
by its bytes, shape and dtype; an image or PDF by its bytes; anything else by its ``repr``.
Large values are **sampled** to stay cheap — a frame of more than :data:`FULL_ROWS` rows by
:data:`SAMPLE_ROWS` evenly spaced rows (the first and last included), an array of more than
:data:`FULL_BYTES` bytes by evenly spaced slices — and the fingerprint then ends in ``~``
(a change between the sampled rows can go unseen; the shape, columns and dtypes always
count).
"""

from __future__ import annotations

import hashlib
import sys
from typing import Any

from nbstream.prompts.media import attachment_of
from nbstream.providers.base import Attachment

FULL_ROWS = 100_000
SAMPLE_ROWS = 2_000
FULL_BYTES = 64 * 1024 * 1024
REPR_LIMIT = 1_000_000


def fingerprint(value: Any) -> str:
    """The fingerprint of ``value`` (16 hex digits; ``~`` appended when sampled)."""
    digest = hashlib.sha256()
    sampled = _feed(digest, value)
    return digest.hexdigest()[:16] + ("~" if sampled else "")


def _feed(digest: Any, value: Any) -> bool:
    """Add ``value`` to ``digest``; return whether it was sampled."""
    if isinstance(value, Attachment):
        digest.update(value.sha256.encode())
        return False
    if isinstance(value, str):
        digest.update(b"s" + value.encode("utf-8", "surrogatepass"))
        return False
    if isinstance(value, (bytes, bytearray, memoryview)):
        digest.update(b"b" + bytes(value))
        return False
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(value, (pd.DataFrame, pd.Series)):
        return _frame(digest, pd, value)
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.ndarray):
        return _array(digest, np, value)
    if type(value).__module__.startswith(("matplotlib", "PIL", "IPython.core.display")):
        found = attachment_of(value, "value")
        if found is not None:
            digest.update(found.sha256.encode())
            return False
    text = repr(value)
    sampled = len(text) > REPR_LIMIT
    if sampled:
        step = len(text) // 1000
        text = text[: REPR_LIMIT // 2] + text[::step] + text[-REPR_LIMIT // 2 :]
    digest.update(f"{type(value).__qualname__}:".encode() + text.encode("utf-8", "replace"))
    return sampled


def _frame(digest: Any, pd: Any, frame: Any) -> bool:
    shape = getattr(frame, "shape", ())
    columns = list(frame.columns) if hasattr(frame, "columns") else [frame.name]
    dtypes = list(frame.dtypes) if hasattr(frame, "columns") else [frame.dtype]
    digest.update(repr((shape, columns, [str(t) for t in dtypes])).encode())
    rows = len(frame)
    sampled = bool(rows > FULL_ROWS)
    if sampled:
        step = max(rows // SAMPLE_ROWS, 1)
        positions = list(range(0, rows, step))
        if positions[-1] != rows - 1:
            positions.append(rows - 1)
        frame = frame.iloc[positions]
    try:
        hashed = pd.util.hash_pandas_object(frame, index=True).to_numpy()
        digest.update(hashed.tobytes())
    except TypeError:  # unhashable cells (lists, dicts): their text
        digest.update(frame.to_json(default_handler=repr).encode())
    return sampled


def _array(digest: Any, np: Any, array: Any) -> bool:
    digest.update(repr((array.shape, str(array.dtype))).encode())
    if array.dtype == object:
        return bool(_feed(digest, array.tolist()))
    flat = np.ascontiguousarray(array).reshape(-1)
    sampled = bool(flat.nbytes > FULL_BYTES)
    if sampled:
        step = max(flat.size // (FULL_BYTES // max(flat.itemsize, 1) // 64), 1)
        flat = flat[::step]
    digest.update(flat.tobytes())
    return sampled


__all__ = ["FULL_ROWS", "fingerprint"]
