"""Images and PDFs on the wire: each provider's native content parts, through the real SDKs
to the test server; downscaling to the provider's limit; a provider without images; the
replay cache keyed by the image's hash."""

from __future__ import annotations

import base64
import io

import pytest

import nbstream
from fake_llm_fixture import point_sdks_at
from nbstream.prompts.media import image_size, make

PIL = pytest.importorskip("PIL.Image")

PDF = b"%PDF-1.4\n3 0 obj << /Type /Page >> endobj\ntrailer << >>\n%%EOF\n"


def png(size=(64, 48), color=(10, 120, 200)) -> bytes:
    buffer = io.BytesIO()
    PIL.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(autouse=True)
def _keys(monkeypatch, fake_llm, tmp_path):
    point_sdks_at(monkeypatch, fake_llm, "sk-media-openai", "sk-ant-media")
    monkeypatch.setenv("NBSTREAM_HISTORY", str(tmp_path / "history.sqlite"))


def ask(fake_llm, provider, prompt, **options):
    model = fake_llm.script(tokens=["A ", "chart."])
    r = nbstream.ask_sync(prompt, model=f"{provider}:{model}", display="none", **options)
    assert r.finish_reason == "stop", r.error
    [record] = fake_llm.log(model)
    return r, record["body"]


def test_openai_gets_image_url_and_file_parts_in_place(fake_llm):
    image = png()
    r, body = ask(fake_llm, "openai", ["Compare ", image, " with ", PDF, " please"])
    content = body["messages"][-1]["content"]
    assert [c["type"] for c in content] == ["text", "image_url", "text", "file", "text"]
    assert content[0]["text"] == "Compare " and content[4]["text"] == " please"
    url = content[1]["image_url"]["url"]
    assert url == "data:image/png;base64," + base64.b64encode(image).decode()
    assert content[3]["file"]["file_data"].startswith("data:application/pdf;base64,")
    assert content[3]["file"]["filename"] == "attachment 4.pdf"
    assert r.prompt.startswith("Compare [image: attachment 2: PNG 64×48,")
    assert r == "A chart."


def test_anthropic_gets_image_and_document_blocks(fake_llm):
    image = png()
    _, body = ask(fake_llm, "anthropic", ["What is this?", image, PDF])
    content = body["messages"][-1]["content"]
    assert [c["type"] for c in content] == ["text", "image", "document"]
    assert content[1]["source"] == {
        "type": "base64",
        "media_type": "image/png",
        "data": base64.b64encode(image).decode(),
    }
    assert content[2]["source"]["media_type"] == "application/pdf"


def test_gemini_gets_inline_data_parts(fake_llm):
    image = png()
    _, body = ask(fake_llm, "gemini", ["Describe", image])
    parts = body["contents"][-1]["parts"]
    assert parts[0] == {"text": "Describe"}
    inline = parts[1].get("inlineData") or parts[1].get("inline_data")
    assert inline["mimeType" if "mimeType" in inline else "mime_type"] == "image/png"
    data = inline["data"]  # google-genai sends bytes as URL-safe base64
    assert base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)) == image


def test_a_large_image_is_downscaled_to_the_providers_limit(fake_llm):
    big = png((4000, 1000))
    _, body = ask(fake_llm, "anthropic", ["Look:", big])
    sent = base64.b64decode(body["messages"][-1]["content"][1]["source"]["data"])
    assert image_size(sent, "image/png") == (1568, 392)  # Anthropic's 1568 px
    _, body = ask(fake_llm, "openai", ["Look:", big])
    url = body["messages"][-1]["content"][1]["image_url"]["url"]
    assert image_size(base64.b64decode(url.split(",", 1)[1]), "image/png") == (2048, 512)


def test_the_status_names_the_downscale(fake_llm, ip):
    from nbstream.prompts.interpolate import compose
    from nbstream.run import make_stream, run_blocking
    from nbstream.settings import UNSET

    model = fake_llm.script(tokens=["ok"])
    composed = compose("See {big}", {"big": make(png((3000, 3000)), "big")})
    call = {"model": f"anthropic:{model}", "display": "none", "history": UNSET}
    stream = make_stream(composed, call)
    assert "big downscaled 3000×3000 → 1568×1568" in (stream.note or "")
    assert run_blocking(stream).finish_reason == "stop"
    content = fake_llm.log(model)[0]["body"]["messages"][-1]["content"]
    assert [c["type"] for c in content] == ["text", "image"]


def test_a_provider_without_images_says_which_have_them(fake_llm):
    with pytest.raises(nbstream.prompts.media.MediaError) as info:
        nbstream.ask_sync(["What is this?", png()], model="local", display="none")
    message = str(info.value)
    assert "'local' takes no images" in message
    assert "openai" in message and "anthropic" in message and "gemini" in message


def test_a_list_prompt_with_something_else_is_refused():
    with pytest.raises(TypeError, match="prompt item 2 is a dict"):
        nbstream.ask_sync(["hi", {"a": 1}], model="local", display="none")


def test_the_cache_key_follows_the_image_bytes(fake_llm, tmp_path):
    cache = {"cache": "auto", "cache_dir": str(tmp_path / "cache")}
    model = fake_llm.script(tokens=["one"])
    first = nbstream.ask_sync(["Q", png()], model=f"openai:{model}", display="none", **cache)
    again = nbstream.ask_sync(["Q", png()], model=f"openai:{model}", display="none", **cache)
    assert again.cached and not first.cached
    other = nbstream.ask_sync(
        ["Q", png(color=(0, 0, 0))], model=f"openai:{model}", display="none", **cache
    )
    assert not other.cached  # another image: another question
    assert len(fake_llm.log(model)) == 2
    entries = list((tmp_path / "cache").glob("*.json"))
    assert entries and all(len(e.read_bytes()) < 4000 for e in entries)  # no image inside


def test_history_keeps_the_hash_and_size_not_the_image(fake_llm, tmp_path):
    from nbstream import store

    image = png()
    ask(fake_llm, "openai", ["Q", image])
    path = tmp_path / "history.sqlite"
    store.flush(path)
    [row] = store.read(path, 1)
    [media] = row["media"]
    assert media["sha256"] == make(image, "x").sha256 and media["bytes"] == len(image)
    assert "base64" not in (row["prompt"] or "") and len(row["prompt"]) < 200
