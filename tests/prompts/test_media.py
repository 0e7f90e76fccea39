"""Images and PDFs as prompt values (``nbstream.prompts.media``) and in ``compose``."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from nbstream.prompts.interpolate import compose, interpolate
from nbstream.prompts.media import (
    MediaError,
    attachment_of,
    figure_png,
    fit,
    image_size,
    make,
    sniff,
    thumbnail,
)
from nbstream.providers.base import Attachment

PIL = pytest.importorskip("PIL.Image")
matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("agg")
import matplotlib.pyplot as plt  # noqa: E402

PDF_BYTES = (
    b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
    b"2 0 obj << /Type /Pages /Kids [3 0 R 4 0 R] /Count 2 >> endobj\n"
    b"3 0 obj << /Type /Page /Parent 2 0 R >> endobj\n"
    b"4 0 obj << /Type /Page /Parent 2 0 R >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
)


def image_bytes(fmt: str, size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    PIL.new("RGB", size, (200, 30, 30)).save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("fmt", "mime"),
    [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("GIF", "image/gif"), ("WEBP", "image/webp")],
)
def test_each_image_format_is_sniffed_and_measured_from_its_header(fmt, mime):
    data = image_bytes(fmt, (123, 45))
    assert sniff(data) == mime
    assert image_size(data, mime) == (123, 45)
    item = make(data, "img")
    assert (item.kind, item.mime, item.width, item.height) == ("image", mime, 123, 45)


def test_text_bytes_are_not_media():
    assert sniff(b"hello") is None
    assert attachment_of(b"plain bytes", "b") is None
    assert attachment_of("a.png", "s") is None  # a str is text, never a path


def test_a_pdf_is_a_document_with_its_page_count(tmp_path):
    path = tmp_path / "report.pdf"
    path.write_bytes(PDF_BYTES)
    item = attachment_of(path, "report")
    assert item is not None and item.kind == "document" and item.mime == "application/pdf"
    assert item.label == "report.pdf" and item.pages == 2
    assert "report.pdf: PDF, 2 pages," in item.describe()


def test_paths_to_images_are_read_and_bad_files_say_so(tmp_path):
    good = tmp_path / "chart.png"
    good.write_bytes(image_bytes("PNG"))
    assert attachment_of(good, "p").mime == "image/png"
    assert attachment_of(tmp_path / "notes.txt", "p") is None  # not a media suffix: text
    with pytest.raises(MediaError, match="cannot read"):
        attachment_of(tmp_path / "missing.png", "p")
    fake = tmp_path / "fake.png"
    fake.write_text("not an image")
    with pytest.raises(MediaError, match="not a PNG file"):
        attachment_of(fake, "p")


def test_a_figure_is_the_same_png_every_time():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([1, 3, 2])
    first, again = figure_png(fig), figure_png(fig)
    assert first == again and sniff(first) == "image/png"
    assert attachment_of(fig, "fig").sha256 == attachment_of(ax, "ax").sha256  # an Axes: its figure
    plt.close(fig)


def test_pil_and_ipython_images():
    from IPython.display import Image

    pil = PIL.new("RGB", (10, 20))
    assert attachment_of(pil, "im").height == 20
    shown = Image(data=image_bytes("JPEG"))
    assert attachment_of(shown, "shown").mime == "image/jpeg"
    with pytest.raises(MediaError, match="without data"):
        attachment_of(Image(url="https://example.org/x.png"), "remote")


def test_fit_downscales_to_the_longer_side_and_says_so():
    item = make(image_bytes("PNG", (3200, 2400)), "fig")
    small, note = fit(item, 1568, 10**9)
    assert (small.width, small.height) == (1568, 1176)
    assert image_size(small.data, small.mime) == (1568, 1176)
    assert note == "fig downscaled 3200×2400 → 1568×1176"
    assert small.sha256 != item.sha256
    same, none = fit(small, 2048, 10**9)
    assert same is small and none is None


def test_fit_re_encodes_an_image_over_the_byte_limit():
    noise = PIL.effect_noise((800, 800), 100).convert("RGB")
    buffer = io.BytesIO()
    noise.save(buffer, "PNG")
    item = make(buffer.getvalue(), "noise")
    small, note = fit(item, 4096, len(item.data) // 3)
    assert small.mime == "image/jpeg" and len(small.data) <= len(item.data) // 3
    assert note.startswith("noise re-encoded")


def test_thumbnail_is_small():
    thumb = thumbnail(make(image_bytes("PNG", (1600, 1200)), "big"))
    assert thumb is not None and image_size(thumb, "image/png") == (160, 120)


def test_compose_puts_attachments_where_their_fields_stand():
    fig = plt.figure(figsize=(2, 2))
    composed = compose("Before {fig} between {n} after", {"fig": fig, "n": 3})
    plt.close(fig)
    before, image, after = composed.parts
    assert before == "Before " and after == " between 3 after"
    assert isinstance(image, Attachment) and image.label == "fig"
    assert composed.text.startswith("Before [image: fig: PNG ") and composed.text.endswith(
        "] between 3 after"
    )
    assert composed.values == {"fig": fig, "n": 3}
    assert interpolate("{fig}", {"fig": fig}).startswith("[image: fig: PNG")
    plain = compose("no media {n}", {"n": 1})
    assert plain.parts == () and plain.text == "no media 1"


def test_encoding_a_1600_by_1200_figure_is_fast():
    """Printed, not asserted (timing goals are benchmarks): bench/bench_media.py has the
    number; this checks only that the path runs and the size is right."""
    fig = plt.figure(figsize=(16, 12), dpi=100)
    plt.plot(range(1000))
    started = time.perf_counter()
    item = attachment_of(fig, "fig")
    print(f"\n[media] 1600×1200 figure → PNG in {(time.perf_counter() - started) * 1000:.0f} ms")
    plt.close(fig)
    assert item is not None and item.width and item.width > 1000


def test_paths_work_in_compose(tmp_path):
    path = tmp_path / "doc.pdf"
    path.write_bytes(PDF_BYTES)
    composed = compose("Summarise {path}", {"path": Path(path)})
    assert composed.attachments[0].kind == "document"
    assert composed.text == f"Summarise [document: {composed.attachments[0].describe()}]"
