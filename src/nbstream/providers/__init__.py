"""Provider registry: ``"provider:model"`` ids → provider functions (imported lazily)."""

from __future__ import annotations

import importlib

from ..errors import ModelIdError
from .base import Final, Provider, ProviderError, Request

__all__ = [
    "DEFAULT_MODELS",
    "Final",
    "ModelIdError",
    "Provider",
    "ProviderError",
    "Request",
    "get_provider",
    "is_builtin",
    "parse_model_id",
    "register_provider",
]

_BUILTIN: dict[str, str] = {
    "openai": "nbstream.providers.openai_chat:stream",
    "ollama": "nbstream.providers.openai_chat:stream_ollama",
    "anthropic": "nbstream.providers.anthropic_messages:stream",
    "local": "nbstream.providers.local:stream",
}
_REGISTERED: dict[str, Provider] = {}

DEFAULT_MODELS: dict[str, str] = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-sonnet-4-5",
    "ollama": "llama3.2",
    "local": "gemma3-270m",
}

MODEL_ID_HELP = (
    "a model id is PROVIDER:NAME, e.g. openai:gpt-4o-mini, anthropic:claude-sonnet-4-5, "
    "ollama:llama3.2 or local; providers: "
)


def providers() -> list[str]:
    return sorted({*_BUILTIN, *_REGISTERED})


def parse_model_id(model_id: str) -> tuple[str, str]:
    """``"openai:gpt-4o"`` → ``("openai", "gpt-4o")``; ``"local"`` → ``("local", "gemma3-270m")``.

    Only the first ``:`` separates, so ``ollama:llama3.2:3b`` works.
    """
    spec = model_id.strip()
    provider, sep, name = spec.partition(":")
    provider = provider.strip().lower()
    name = name.strip()
    known = providers()
    if not spec or any(c.isspace() for c in spec) or (sep and not name):
        raise ModelIdError(f"malformed model id {model_id!r}: {MODEL_ID_HELP}{', '.join(known)}")
    if provider not in known:
        raise ModelIdError(
            f"unknown provider {provider!r} in {model_id!r}: {MODEL_ID_HELP}{', '.join(known)}"
        )
    if not name:
        name = DEFAULT_MODELS.get(provider, "")
    return provider, name


def is_builtin(provider: str) -> bool:
    """Whether ``provider`` is one of nbstream's own (not replaced by a registered one): they
    all handle ``Request.messages`` and ``Request.schema``."""
    return provider in _BUILTIN and provider not in _REGISTERED


def get_provider(provider: str) -> Provider:
    """The stream function for ``provider`` (imports its module on first use)."""
    if provider in _REGISTERED:
        return _REGISTERED[provider]
    module_name, _, attr = _BUILTIN[provider].partition(":")
    stream: Provider = getattr(importlib.import_module(module_name), attr)
    return stream


def register_provider(name: str, stream: Provider) -> None:
    """Add (or replace) a provider: ``stream(request)`` is an async generator of ``str`` deltas
    and one final :class:`Final`."""
    if not name.isidentifier():
        raise ValueError(f"provider names are identifiers, got {name!r}")
    _REGISTERED[name.lower()] = stream
