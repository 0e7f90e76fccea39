"""Pytest fixture for the fake LLM server (see ``fake_llm_server.py``).

Import it into a conftest or test module to make it available::

    from fake_llm_fixture import fake_llm  # noqa: F401

``fake_llm`` is session-scoped: one server subprocess for the whole run. Scripts are selected by
the unique model name :meth:`FakeLLMServer.script` returns, so tests do not interfere.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fake_llm_server import FakeLLMServer

__all__ = ["FakeLLMServer", "fake_llm"]


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[FakeLLMServer]:
    """A running :class:`FakeLLMServer`, stopped at the end of the session."""
    with FakeLLMServer() as server:
        yield server


def point_sdks_at(
    monkeypatch: pytest.MonkeyPatch, server: FakeLLMServer, openai_key: str, anthropic_key: str
) -> None:
    """Both SDKs talk to ``server`` with these keys (and no Anthropic auth token)."""
    monkeypatch.setenv("OPENAI_API_KEY", openai_key)
    monkeypatch.setenv("ANTHROPIC_API_KEY", anthropic_key)
    monkeypatch.setenv("OPENAI_BASE_URL", server.openai_base_url)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.anthropic_base_url)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
