"""Images and PDFs in prompts: which values are media, their bytes, and fitting them to a
provider's limits.

A ``{field}`` whose value is one of these becomes an :class:`Attachment` in the place the
field stands (:func:`attachment_of`):

* a matplotlib ``Figure`` (or ``Axes``: its figure) — PNG of the figure's own size, as
  ``savefig`` writes it; the bytes are identical between runs of the same figure (no
  timestamp, no software version), so the replay cache hits;
* a PIL image — PNG (JPEG stays JPEG);
* an ``IPython.display.Image`` with data — its bytes;
* ``bytes`` that start like a PNG, JPEG, GIF, WebP or PDF file;
* a ``pathlib.Path`` to a ``.png``, ``.jpg``/``.jpeg``, ``.gif``, ``.webp`` or ``.pdf``
  file (a ``str`` is always text: a path is read only when you say it is one).

Everything else is text (:func:`nbstream.prompts.context.to_prompt`). Sizes are read from
the file headers (no decoding); :func:`fit` downscales an image that is larger than the
provider takes (Pillow: ``pip install pillow``, which matplotlib already needs).
"""

from __future__ import annotations

import hashlib
import io
import struct
import sys
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import replace
from pathlib import Path
from typing import Any

from nbstream.errors import NbstreamError
from nbstream.providers.base import Attachment

IMAGE_SUFFIXES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
                  ".gif": "image/gif", ".webp": "image/webp"}  # fmt: skip
PDF = "application/pdf"
MAX_FILE_BYTES = 32 * 1024 * 1024
"""A file larger than this is refused before it is read (no provider takes more inline)."""
THUMBNAIL_SIDE = 160
"""Pixels on the longer side of a ``--show-prompt`` thumbnail."""


RENDER_MAX_SIDE: ContextVar[int | None] = ContextVar("nbstream_render_max_side", default=None)
"""Set while a prompt is filled for a provider: a figure is drawn at most this many pixels
on its longer side (a lower dpi), instead of drawn full size and then downscaled."""


class MediaError(NbstreamError, ValueError):
    """An image or document that cannot be sent as it is (the message says what to do)."""


def sniff(data: bytes) -> str | None:
    """The MIME type of image or PDF bytes from their first bytes, else ``None``."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith(b"%PDF-"):
        return PDF
    return None


def attachment_of(value: Any, label: str) -> Attachment | None:
    """``value`` as an image or PDF attachment, or ``None`` when it is not one (see the
    module docstring). Raises :class:`MediaError` for a media value that cannot be read."""
    data: bytes | None = None
    if isinstance(value, (str, int, float)) or not _maybe_media(value):
        return None  # the common case, decided without looking any further
    if _is_instance(value, "matplotlib.axes", "Axes"):
        value = value.figure
    if _is_instance(value, "matplotlib.figure", "Figure"):
        data = figure_png(value)
    elif _is_instance(value, "PIL.Image", "Image"):
        data = _pil_bytes(value)
    elif _is_instance(value, "IPython.core.display", "Image"):
        data = value.data if isinstance(value.data, bytes) else None
        if data is None:
            raise MediaError(
                f"{{{label}}} is an IPython Image without data (a URL?): "
                "load it with Image(filename=...) or Image(data=...)"
            )
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        if sniff(data) is None:
            return None
    elif isinstance(value, Path):
        return _file(value, label)
    if data is None:
        return None
    return make(data, label)


def make(data: bytes, label: str) -> Attachment:
    """An attachment of image or PDF bytes (their type sniffed, their size read)."""
    mime = sniff(data)
    if mime is None:
        raise MediaError(f"{{{label}}}: not a PNG, JPEG, GIF, WebP or PDF file")
    digest = hashlib.sha256(data).hexdigest()
    if mime == PDF:
        return Attachment("document", mime, data, label, digest, pages=pdf_pages(data))
    width, height = image_size(data, mime)
    return Attachment("image", mime, data, label, digest, width, height)


def _file(path: Path, label: str) -> Attachment | None:
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES and suffix != ".pdf":
        return None
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise MediaError(
                f"{{{label}}}: {path.name} is {size / 2**20:.0f} MB; the limit is "
                f"{MAX_FILE_BYTES // 2**20} MB: send a smaller file or a page range"
            )
        data = path.read_bytes()
    except OSError as exc:
        raise MediaError(f"{{{label}}}: cannot read {path}: {exc.strerror or exc}") from None
    if sniff(data) is None:
        raise MediaError(f"{{{label}}}: {path.name} is not a {suffix[1:].upper()} file")
    return make(data, path.name)


_MEDIA_MODULES = ("matplotlib", "PIL", "IPython")


def _maybe_media(value: Any) -> bool:
    """Bytes, a path, or an object of a class from matplotlib, PIL or IPython (its MRO):
    only those can be media; anything else is decided in a few attribute reads (a ``map``
    fills thousands of prompts)."""
    if isinstance(value, (bytes, bytearray, memoryview, Path)):
        return True
    return any(
        (getattr(cls, "__module__", "") or "").startswith(_MEDIA_MODULES)
        for cls in type(value).__mro__
    )


def _is_instance(value: Any, module: str, name: str) -> bool:
    """``isinstance`` against a class of a library that may not be imported (then: no)."""
    for loaded, mod in list(sys.modules.items()):
        if loaded == module or loaded.startswith(module + "."):
            cls = getattr(mod, name, None)
            if isinstance(cls, type) and isinstance(value, cls):
                return True
    return False


def figure_png(figure: Any) -> bytes:
    """A matplotlib figure as a PNG of its own size (``figsize`` × ``dpi``), byte-identical
    between runs (no ``Software`` metadata). One draw and fast compression: a dense
    1600×1200 figure takes ~115 ms this way, ~195 ms with the inline backend's
    ``bbox_inches="tight"`` (a second draw) and default compression (bench/bench_media.py)."""
    options: dict[str, Any] = {}
    target = RENDER_MAX_SIDE.get()
    inches = max(figure.get_size_inches())
    if target is not None and inches * figure.dpi > target:
        options["dpi"] = target / inches  # drawn at the provider's size: no resize after
    buffer = io.BytesIO()
    figure.savefig(
        buffer,
        format="png",
        metadata={"Software": None},
        pil_kwargs={"compress_level": 1},
        **options,
    )
    return buffer.getvalue()


def _pil_bytes(image: Any) -> bytes:
    buffer = io.BytesIO()
    if getattr(image, "format", None) == "JPEG":
        image.save(buffer, format="JPEG", quality=90)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def image_size(data: bytes, mime: str) -> tuple[int | None, int | None]:
    """Width and height from an image's header (``None`` when it cannot be read)."""
    try:
        if mime == "image/png" and data[12:16] == b"IHDR":
            width, height = struct.unpack(">II", data[16:24])
            return int(width), int(height)
        if mime == "image/gif":
            width, height = struct.unpack("<HH", data[6:10])
            return int(width), int(height)
        if mime == "image/webp":
            return _webp_size(data)
        if mime == "image/jpeg":
            return _jpeg_size(data)
    except struct.error:
        pass
    return None, None


def _jpeg_size(data: bytes) -> tuple[int | None, int | None]:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return int(width), int(height)
        i += 2 + length
    return None, None


def _webp_size(data: bytes) -> tuple[int | None, int | None]:
    kind = data[12:16]
    if kind == b"VP8X":
        width = 1 + int.from_bytes(data[24:27], "little")
        height = 1 + int.from_bytes(data[27:30], "little")
        return width, height
    if kind == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if kind == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return int(width & 0x3FFF), int(height & 0x3FFF)
    return None, None


def pdf_pages(data: bytes) -> int | None:
    """A PDF's page count from its page objects (an estimate for unusual files)."""
    count = data.count(b"/Type /Page") + data.count(b"/Type/Page")
    count -= data.count(b"/Type /Pages") + data.count(b"/Type/Pages")
    return count if count > 0 else None


def fit(item: Attachment, max_side: int, max_bytes: int) -> tuple[Attachment, str | None]:
    """``item`` within a provider's limits, and a note when it was changed
    (``"fig downscaled 3200×2400 → 2048×1536"``). Only images change; Pillow does it."""
    if item.kind != "image":
        return item, None
    width, height = item.width or 0, item.height or 0
    too_big = max(width, height) > max_side
    if not too_big and len(item.data) <= max_bytes:
        return item, None
    image = _open(item)
    scale = min(1.0, max_side / max(image.width, image.height))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if size != (image.width, image.height):
        image = image.resize(size, _resample())
    data, mime = _encode(image, item.mime, max_bytes)
    digest = hashlib.sha256(data).hexdigest()
    shrunk = replace(
        item, data=data, mime=mime, sha256=digest, width=image.width, height=image.height
    )
    if too_big:
        note = f"{item.label} downscaled {width}×{height} → {image.width}×{image.height}"
    else:
        note = f"{item.label} re-encoded {len(item.data) // 1024:,} → {len(data) // 1024:,} KB"
    return shrunk, note


def thumbnail(item: Attachment) -> bytes | None:
    """A small PNG of an image for ``--show-prompt`` (``None``: not an image, or no Pillow)."""
    if item.kind != "image":
        return None
    try:
        image = _open(item)
    except MediaError:
        return None
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    buffer = io.BytesIO()
    image.convert("RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB").save(buffer, "PNG")
    return buffer.getvalue()


def thumbnails(parts: Sequence[object]) -> list[tuple[str, bytes]]:
    """``(description, small PNG)`` of each image among a request's parts (``--show-prompt``)."""
    found = []
    for part in parts:
        if isinstance(part, Attachment):
            small = thumbnail(part)
            if small is not None:
                found.append((part.describe(), small))
    return found


def _open(item: Attachment) -> Any:
    try:
        from PIL import Image  # lazy: optional (matplotlib depends on it)
    except ImportError:
        raise MediaError(
            f"{item.label} ({item.width}×{item.height}) is larger than the provider takes and "
            "resizing it needs Pillow: pip install pillow (or send a smaller image)"
        ) from None
    image = Image.open(io.BytesIO(item.data))
    image.load()
    return image


def _resample() -> Any:
    from PIL import Image

    return Image.Resampling.LANCZOS


def _encode(image: Any, mime: str, max_bytes: int) -> tuple[bytes, str]:
    """PNG when it fits and the source was lossless, else JPEG at falling quality."""
    if mime in ("image/png", "image/gif", "image/webp"):
        buffer = io.BytesIO()
        image.save(buffer, "PNG", optimize=False)
        if buffer.tell() <= max_bytes:
            return buffer.getvalue(), "image/png"
    rgb = image.convert("RGB")
    for quality in (90, 80, 70, 55, 40):
        buffer = io.BytesIO()
        rgb.save(buffer, "JPEG", quality=quality)
        if buffer.tell() <= max_bytes:
            return buffer.getvalue(), "image/jpeg"
    raise MediaError(
        f"the image does not fit in {max_bytes // 1024:,} KB even as a JPEG: crop it or "
        "send a smaller one"
    )


__all__ = [
    "RENDER_MAX_SIDE",
    "MediaError",
    "attachment_of",
    "figure_png",
    "fit",
    "image_size",
    "make",
    "sniff",
    "thumbnail",
    "thumbnails",
]
