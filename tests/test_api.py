"""The Python API (:mod:`nbstream.api`) and the public surface of the package."""

from __future__ import annotations

import inspect
import typing

import pytest

import nbstream
from nbstream import api
from nbstream.settings import Settings


def members(annotation: object) -> set:
    """``float | None`` → {float, None}; a Literal or a list type is one member."""
    if typing.get_origin(annotation) in (typing.Literal, list):
        return {annotation}
    return set(typing.get_args(annotation)) or {annotation}


def test_ask_keywords_are_the_declared_options_with_their_types():
    hints = typing.get_type_hints(api.Options)
    assert list(hints) == list(Settings.model_fields)
    for name, field in Settings.model_fields.items():
        assert members(field.annotation) <= members(hints[name]), (name, hints[name])
    for function in (api.ask, api.ask_sync):
        params = inspect.signature(function).parameters
        assert list(params) == ["prompt", "options"]
        assert params["options"].kind is inspect.Parameter.VAR_KEYWORD


def test_unknown_keyword_is_a_type_error_and_sends_nothing():
    with pytest.raises(TypeError, match=r"unknown option.*temprature"):
        nbstream.ask_sync("hi", temprature=0.5)  # type: ignore[call-arg]


def test_bad_values_name_the_keyword():
    with pytest.raises(nbstream.SettingsError) as info:
        nbstream.ask_sync("hi", temperature=9, max_tokens=0, display="none")
    text = str(info.value)
    assert text.startswith("temperature: input should be less than or equal to 2, got 9")
    assert "max_tokens: input should be greater than 0, got 0" in text and "--" not in text


def test_empty_prompt_is_a_value_error():
    with pytest.raises(ValueError, match="prompt is empty"):
        nbstream.ask_sync("   ")


def test_ask_streams_through_the_python_api(fake_llm, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.openai_base_url)
    model = fake_llm.script(tokens=["api ", "answer"])
    import asyncio

    r = asyncio.run(nbstream.ask("hi", model=f"openai:{model}", display="none", top_p=0.9))
    assert r == "api answer" and r.finish_reason == "stop" and r.raise_for_error() is r
    assert fake_llm.log(model)[-1]["body"]["top_p"] == 0.9


def test_raise_for_error_raises_a_typed_error_with_the_partial_answer():
    failed = nbstream.Response("part", finish_reason="error", error="boom", model="t:m")
    with pytest.raises(nbstream.ResponseError, match="t:m failed: boom") as info:
        failed.raise_for_error()
    assert info.value.response == "part" and isinstance(info.value, nbstream.NbstreamError)
    stopped = nbstream.Response("part", finish_reason="cancelled")
    assert stopped.raise_for_error() is stopped  # stopped is not an error


def test_public_surface():
    for name in (
        "Response",
        "Final",
        "Request",
        "ProviderError",
        "ModelIdError",
        "SettingsError",
        "ResponseError",
        "register_provider",
        "ask",
        "ask_sync",
    ):
        assert name in nbstream.__all__ and getattr(nbstream, name) is not None
    assert issubclass(nbstream.ModelIdError, ValueError)
    assert issubclass(nbstream.ProviderError, nbstream.NbstreamError)
    from pathlib import Path

    assert (Path(nbstream.__file__).parent / "py.typed").exists()


def test_the_lazy_exports_are_typed_for_editors_and_mypy(tmp_path):
    """``from nbstream import ask_sync`` is loaded lazily (``import nbstream`` stays fast), and
    a type checker still sees the real signatures, not ``Any``."""
    import subprocess
    import sys

    use = tmp_path / "use.py"
    use.write_text(
        "import nbstream\n"
        "from nbstream import ask_sync, map_sync\n"
        "reveal_type(ask_sync('hi', model='local'))\n"
        "reveal_type(nbstream.Job)\n"
        "reveal_type(map_sync)\n"
    )
    done = subprocess.run(  # its own process: mypy raises the recursion limit for good
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--cache-dir",
            str(tmp_path / "cache"),
            str(use),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out, err = done.stdout, done.stderr
    lines = [line for line in out.splitlines() if "Revealed type" in line]
    assert len(lines) == 3, out + err
    assert '"nbstream.response.Response"' in lines[0]
    assert "nbstream.batch.job.Job" in lines[1]
    assert "items: Any, prompt: str" in lines[2] and "missing:" in lines[2]
