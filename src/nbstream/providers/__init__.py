"""Provider registry: ``"provider:model"`` ids → provider functions and their capabilities (the
built-ins register at import through the same door as anyone's; their SDKs load on first use)."""

from __future__ import annotations

from nbstream.errors import ModelIdError
from nbstream.providers import anthropic_messages, gemini, local, openai_chat
from nbstream.providers.base import Capabilities, Final, Provider, ProviderError, Request
from nbstream.providers.common import KEY_VARIABLES

__all__ = [
    "DEFAULT_MODELS",
    "Capabilities",
    "Final",
    "ModelIdError",
    "Provider",
    "ProviderError",
    "Request",
    "capabilities",
    "get_provider",
    "is_builtin",
    "parse_model_id",
    "register_provider",
    "registered",
]

_PROVIDERS: dict[str, tuple[Provider, Capabilities]] = {}
"""Every provider by name: its stream function and what it declared it can do."""
_BUILTIN: set[str] = set()
"""The names nbstream itself registered (and not replaced since)."""

DEFAULT_MODELS: dict[str, str] = {}
"""What a model id without a name means, per provider (from their capabilities)."""

MODEL_ID_HELP = (
    "a model id is PROVIDER:NAME, e.g. openai:gpt-4o-mini, anthropic:claude-sonnet-4-5, "
    "gemini:gemini-2.5-flash, "
    "ollama:llama3.2 or local; providers: "
)


def providers() -> list[str]:
    return sorted(_PROVIDERS)


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
    """Whether ``provider`` is one of nbstream's own (not replaced by a registered one)."""
    return provider in _BUILTIN


def get_provider(provider: str) -> Provider:
    """The stream function for ``provider``."""
    return _PROVIDERS[provider][0]


def capabilities(provider: str) -> Capabilities:
    """What ``provider`` declared it can do (defaults for an unknown name)."""
    found = _PROVIDERS.get(provider)
    return found[1] if found is not None else Capabilities()


def registered() -> list[tuple[str, Capabilities]]:
    """Every provider and its capabilities, in the order they were registered."""
    return [(name, caps) for name, (_, caps) in _PROVIDERS.items()]


def register_provider(
    name: str, stream: Provider, capabilities: Capabilities | None = None
) -> None:
    """Add (or replace) a provider: ``stream(request)`` is an async generator of ``str`` deltas
    and one final :class:`Final`. ``capabilities`` declares what it can do (its default
    model, key variables, conversation budget, whether it carries conversations and schemas
    itself, …); without it, the one-function contract's defaults apply."""
    if not name.isidentifier():
        raise ValueError(f"provider names are identifiers, got {name!r}")
    key = name.lower()
    caps = capabilities if capabilities is not None else Capabilities()
    _PROVIDERS[key] = (stream, caps)
    KEY_VARIABLES.update(caps.key_variables)  # their values are masked wherever shown
    _BUILTIN.discard(key)
    if caps.default_model:
        DEFAULT_MODELS[key] = caps.default_model
    else:
        DEFAULT_MODELS.pop(key, None)


def _register_builtins() -> None:
    """nbstream's own providers, through the same door as anyone's (importing these modules
    imports no SDK: each imports its SDK when it first streams)."""

    register_provider("openai", openai_chat.stream, openai_chat.CAPABILITIES)
    register_provider("ollama", openai_chat.stream_ollama, openai_chat.OLLAMA_CAPABILITIES)
    register_provider("anthropic", anthropic_messages.stream, anthropic_messages.CAPABILITIES)
    register_provider("local", local.stream, local.CAPABILITIES)
    register_provider("gemini", gemini.stream, gemini.CAPABILITIES)
    _BUILTIN.update(_PROVIDERS)


_register_builtins()
