"""Pytest fixture for the fake LLM server (see ``fake_llm_server.py``).

Import it into a conftest or test module to make it available::

    from fake_llm_fixture import fake_llm  # noqa: F401

``fake_llm`` is session-scoped: one server subprocess for the whole run. Scripts are selected by
the unique model name :meth:`FakeLLMServer.script` returns, so tests do not interfere.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from fake_llm_server import FakeLLMServer

__all__ = ["FakeLLMServer", "fake_llm"]


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[FakeLLMServer]:
    """A running :class:`FakeLLMServer`, stopped at the end of the session."""
    with FakeLLMServer() as server:
        yield server


GEMINI_KEY = "AIzaSy-fake-gemini-SECRET-0123456789"


def point_sdks_at(
    monkeypatch: pytest.MonkeyPatch,
    server: FakeLLMServer,
    openai_key: str,
    anthropic_key: str,
    gemini_key: str = GEMINI_KEY,
) -> None:
    """The three SDKs talk to ``server`` with these keys (and no Anthropic auth token, no
    ``GOOGLE_API_KEY``)."""
    monkeypatch.setenv("OPENAI_API_KEY", openai_key)
    monkeypatch.setenv("ANTHROPIC_API_KEY", anthropic_key)
    monkeypatch.setenv("GEMINI_API_KEY", gemini_key)
    monkeypatch.setenv("OPENAI_BASE_URL", server.openai_base_url)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.anthropic_base_url)
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.gemini_base_url)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)


def interrupt_mid_answer(kernel: Any, server: FakeLLMServer, model: str, execution: Any) -> dict:
    """Press ■ on ``kernel`` half a second after ``server`` received the request for
    ``model``; wait for the client to go away and for ``execution`` to end. Returns the
    server's record of the request."""
    kernel.wait_until(lambda: server.log(model) != [], 30, "the request")
    time.sleep(0.5)
    kernel.interrupt()
    record = server.wait_for_disconnect(model, timeout=10)
    kernel.wait(execution, 30)
    return record
