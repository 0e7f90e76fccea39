"""Every user option, declared once.

Each option is one pydantic ``Field`` on :class:`Settings`: its type, default, bounds and
help text. Everything else is derived from that declaration:

* the ``%%llm`` flags (:func:`add_magic_arguments`; the flag names are in the field's
  ``flags`` extra, the help text is the field's description),
* the ``%config LLMMagics.<name>`` traits (:func:`config_traits`),
* the environment variables ``NBSTREAM_<NAME>`` (:func:`from_environment`),
* the keyword arguments of :func:`nbstream.ask` / :func:`nbstream.ask_sync` (written out
  for type checkers and editors; ``tests/test_settings.py`` checks them against this), and
* the provider :class:`~nbstream.providers.base.Request` fields for options marked
  ``request=True`` (also checked by a test).

There is one merge, :func:`resolve`: call arguments → ``%config`` → environment → defaults,
the same for the magic and the Python API. :data:`UNSET` tells "not given" from ``None``
(``system=None`` is a choice: no system prompt).

Adding an option is one field here plus, if it goes to the model, its mapping in each
provider.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import warnings
from collections.abc import Callable, Mapping
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from nbstream.errors import Problem, SettingsError
from nbstream.pricing import load_prices  # raises ValueError naming what is wrong

__all__ = [
    "CACHE_MODES",
    "DISPLAY_MODES",
    "UNSET",
    "Problem",
    "Settings",
    "SettingsError",
    "Unset",
    "add_magic_arguments",
    "config_traits",
    "flag_of",
    "from_environment",
    "request_fields",
    "resolve",
]


class Unset:
    """The type of :data:`UNSET`: "this option was not given here"."""

    _instance: Unset | None = None

    def __new__(cls) -> Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "UNSET"


UNSET: Any = Unset()
"""Default of every keyword argument of ``ask``: fall back to ``%config``, env, default."""

DisplayMode = Literal["auto", "widget", "html", "text", "none"]
DISPLAY_MODES: tuple[str, ...] = get_args(DisplayMode)

CacheMode = Literal["off", "auto", "read", "write", "replay"]
ReasoningEffort = Literal["low", "medium", "high"]
OnOff = Literal["on", "off"]
ApiChoice = Literal["auto", "chat", "responses"]
CACHE_MODES: tuple[str, ...] = get_args(CacheMode)

HISTORY_OFF = "off"
"""The value of the ``history`` option that records nothing."""

DEFAULT_CHAT = "default"
"""The thread of a bare ``--chat`` (and of ``chat=True``)."""

OFF_WORDS = ("off", "false", "no", "0", "none")
"""Values of ``history`` and ``chat`` that switch them off (e.g. over a ``%config``)."""


def option(
    default: Any,
    *flags: str,
    help: str,
    metavar: str | None = None,
    request: bool = False,
    magic: Mapping[str, Any] | None = None,
    **constraints: Any,
) -> Any:
    """Declare one option: ``flags`` for ``%%llm``, ``request=True`` if providers receive it,
    ``magic``: more argparse keywords for its flag (e.g. ``nargs="?"`` with a ``const``)."""
    return Field(
        default,
        description=help,
        json_schema_extra={
            "flags": list(flags),
            "metavar": metavar,
            "request": request,
            "magic": dict(magic or {}),
        },
        **constraints,
    )


# The `schema` option shadows BaseModel.schema(), pydantic 1's deprecated classmethod, which
# nothing here calls (instances read the field); pydantic warns about it once, at import.
warnings.filterwarnings(
    "ignore", message='Field name "schema" in "Settings" shadows', category=UserWarning
)


class Settings(BaseModel):
    """The effective options of one call (after :func:`resolve`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = option(
        None,
        "-m",
        "--model",
        metavar="PROVIDER:NAME",
        help="openai:gpt-4o-mini, anthropic:claude-sonnet-4-5, gemini:gemini-2.5-flash, "
        "ollama:llama3.2, local, ... "
        "When not set anywhere: a provider whose API key is set, else the embedded local model.",
    )
    system: str | None = option(
        None, "-s", "--system", metavar="TEXT", request=True, help="System prompt."
    )
    temperature: float | None = option(
        None,
        "-t",
        "--temperature",
        metavar="T",
        request=True,
        ge=0,
        le=2,
        allow_inf_nan=False,
        help="Sampling temperature, 0 to 2 (provider default when unset).",
    )
    top_p: float | None = option(
        None,
        "--top-p",
        metavar="P",
        request=True,
        gt=0,
        le=1,
        allow_inf_nan=False,
        help="Nucleus sampling: keep the most likely tokens up to this probability mass (0-1].",
    )
    max_tokens: int | None = option(
        None,
        "--max-tokens",
        metavar="N",
        request=True,
        gt=0,
        help="Cap the answer at N tokens; a cut answer has finish_reason 'length'.",
    )
    stop: list[str] | None = option(
        None,
        "--stop",
        metavar="SEQ",
        request=True,
        help="Stop the answer where this text would appear (repeat the flag for several).",
    )
    base_url: str | None = option(
        None,
        "--base-url",
        metavar="URL",
        request=True,
        help="Server URL for OpenAI-compatible servers (vLLM, llama.cpp, LM Studio) or proxies.",
    )
    connect_timeout: float = option(
        10.0,
        "--connect-timeout",
        metavar="SECONDS",
        request=True,
        gt=0,
        allow_inf_nan=False,
        help="Give up connecting to the server after this long.",
    )
    thinking: int | None = option(
        None, "--thinking", metavar="TOKENS", request=True, ge=0,
        help="Let the model think first, up to TOKENS tokens (Anthropic: at least 1024; "
        "Gemini: 0 turns it off); the thinking streams apart, kept in x.thinking.",
    )  # fmt: skip
    reasoning_effort: ReasoningEffort | None = option(
        None, "--reasoning-effort", metavar="LEVEL", request=True,
        help="How hard a reasoning model thinks: low, medium, high (OpenAI o-series, gpt-5).",
    )  # fmt: skip
    api: ApiChoice = option(
        "auto", "--api", metavar="API", request=True,
        help="openai: chat (Chat Completions) or responses (the Responses API); auto: "
        "responses at api.openai.com, chat for other servers.",
    )  # fmt: skip
    save_thinking: OnOff = option(
        "on", "--save-thinking", metavar="on|off",
        help="off: the saved output leaves the thinking out (x.thinking keeps it).",
    )  # fmt: skip
    first_token_timeout: float = option(
        120.0,
        "--first-token-timeout",
        metavar="SECONDS",
        gt=0,
        allow_inf_nan=False,
        help="Give up when the first token has not arrived this long after the request was "
        "sent (reasoning models think before they answer).",
    )
    idle_timeout: float = option(
        60.0,
        "--idle-timeout",
        "--timeout",
        metavar="SECONDS",
        gt=0,
        allow_inf_nan=False,
        help="Give up after this long without a token once the answer has started.",
    )
    http_retries: int = option(
        3,
        "--http-retries",
        metavar="N",
        ge=0,
        le=10,
        help="Retry HTTP 429, 5xx and connection errors up to N times, with backoff, "
        "before the first token (never after: no duplicated text).",
    )
    retry_max_wait: float = option(
        60.0, "--retry-max-wait", metavar="SECONDS", gt=0, allow_inf_nan=False,
        help="The longest single wait before a retry; a server asking (Retry-After) for "
        "longer is an error instead.",
    )  # fmt: skip
    display: DisplayMode = option(
        "auto", "--display", metavar="MODE",
        help="auto (a live widget in notebooks, live HTML where widgets do not show, text "
        "elsewhere), widget, html (no widgets: throttled HTML updates), text or none.",
    )  # fmt: skip
    throttle: float = option(
        0.05, "--throttle", metavar="SECONDS", ge=0, le=5, allow_inf_nan=False,
        help="Seconds between display updates (the notebook server drops messages above ~1000/s).",
    )  # fmt: skip
    show_prompt: bool = option(
        False, "--show-prompt",
        help="Show the prompt exactly as sent (after filling in {variables}) in a collapsed "
        "section above the answer, live and in the saved output.",
    )  # fmt: skip
    max_cost: float | None = option(
        None, "--max-cost", metavar="USD", gt=0, allow_inf_nan=False,
        help="End an answer whose running cost estimate passes USD (finish_reason 'length', "
        "the status says why). Needs the model's price.",
    )  # fmt: skip
    kernel_budget: float | None = option(
        None, "--kernel-budget", metavar="USD", gt=0, allow_inf_nan=False,
        help="This kernel's spending limit (usually %config): a warning at 80 %, new requests "
        "refused at 100 % (%llm cost shows the spending).",
    )  # fmt: skip
    context_budget: int = option(
        4000,
        "--context-budget",
        metavar="CHARS",
        ge=200,
        le=1_000_000,
        help="Characters one {variable} may take in the prompt: DataFrames, arrays, long "
        "texts are summarised to fit, and the prompt says what was left out.",
    )
    cells: int | None = option(
        None, "--cells", metavar="N", ge=1, le=50,
        help="Send the sources and text outputs (errors included) of the last N executed "
        "cells before the prompt, newest last, within twice the context budget.",
    )  # fmt: skip
    chat: str | None = option(
        None,
        "--chat",
        metavar="NAME",
        magic={"nargs": "?", "const": DEFAULT_CHAT},
        help="Continue a conversation: the earlier answers of thread NAME ('default' when the "
        "flag has no value) are sent with the prompt, and this answer joins the thread. "
        "Re-running a cell replaces its own turn (later turns are kept but not sent until "
        "re-run). %llm thread [NAME] shows a thread, %llm reset [NAME] clears it; off: none.",
    )
    chat_budget: int | None = option(
        None,
        "--chat-budget",
        metavar="TOKENS",
        ge=0,
        le=10_000_000,
        help="The most tokens (estimated) the earlier turns, the system prompt and the prompt "
        "may take together; the oldest turns are left out first. Unset: per provider (100k "
        "for OpenAI, Anthropic and Gemini, 3k for Ollama and self-hosted servers, what fits the "
        "local model's context).",
    )
    schema: str | None = option(  # type: ignore[assignment]  # see the filter above
        None,
        "--schema",
        metavar="TYPE",
        help="Answer as JSON matching this type, then validate it: a pydantic model, "
        "dataclass or TypedDict from your namespace, list[Model], dict[str, float], or a "
        "JSON Schema literal. The Response's .data is the validated object, .to_pandas() a "
        "DataFrame; the live view shows it as a table while it streams.",
    )
    retries: int = option(
        1,
        "--retries",
        metavar="N",
        ge=0,
        le=5,
        help="With a schema: when the answer does not validate, ask again up to N times, "
        "sending the bad answer and the error back (HTTP retries are --http-retries).",
    )
    tools: str | None = option(
        None,
        "--tools",
        metavar="NAMES",
        help="Functions of yours the model may call, comma-separated names or attribute "
        "chains (load_sales,sales.by_region), looked up like {fields}, never evaluated; "
        "ask()/map() also take the functions. Each call waits for your approval unless the "
        "function is marked @nbstream.tool(approve=False) or auto_approve is on. "
        "%llm tools shows what the model sees.",
    )
    max_tool_rounds: int = option(
        10,
        "--max-tool-rounds",
        metavar="N",
        ge=1,
        le=100,
        help="With tools: at most N rounds of calls in one answer, then it ends saying so.",
    )
    mcp_config: str | None = option(
        None,
        "--mcp-config",
        metavar="PATH",
        help='JSON file of MCP servers ({"mcpServers": {name: {command, args, env} or '
        "{url}}}, as other MCP clients read it); --tools mcp:NAME offers a server's tools, "
        "mcp:NAME/tool one of them.",
    )
    auto_approve: bool = option(
        False,
        "--auto-approve",
        help="Run every tool call without asking (also in headless runs). Off: only tools "
        "marked @nbstream.tool(approve=False) run without asking.",
    )
    cache: CacheMode = option(
        "off",
        "--cache",
        metavar="MODE",
        help="Replay cache of answers (files under cache_dir, one JSON per request; commit "
        "them for reproducible notebooks): off; auto (reuse a recorded answer, else ask the "
        "model and record it); read (reuse, never record); write (always ask, record); "
        "replay (recorded answers only: a miss is an error and nothing is sent).",
    )
    cache_dir: str = option(
        ".nbstream-cache",
        "--cache-dir",
        metavar="DIR",
        help="Folder of the replay cache; relative paths are relative to the working "
        "directory (for a notebook kernel: the notebook's folder).",
    )
    history: str | None = option(
        None, "--history", metavar="PATH",
        help="SQLite file where every answer is recorded (%llm history, nbstream.history()), "
        "or off. Unset: history.sqlite in the user data directory.",
    )  # fmt: skip
    history_cap: str | None = option(
        None, "--history-cap", metavar="CAP", pattern=r"^\s*\d+(\.\d+)?\s*(d|days?|MB|mb)\s*$",
        help="Prune the history when a kernel first writes to it: answers older than N days "
        "('90d') or the oldest beyond a size ('200MB'). %llm history --prune prunes now.",
    )  # fmt: skip
    prices: str | None = option(
        None,
        "--prices",
        metavar="PATH",
        help="TOML or JSON file of your own prices, USD per million tokens: "
        '{"openai:my-model": {"input": 1.0, "output": 2.0, "cached_input": 0.5}}; '
        "they take precedence over nbstream's table.",
    )

    @field_validator(
        "model", "system", "base_url", "history", "prices", "chat", "schema", mode="before"
    )
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("cache_dir", mode="before")
    @classmethod
    def _path_is_a_string(cls, value: Any) -> Any:
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if isinstance(value, str) and not value.strip():
            raise ValueError("the cache folder cannot be empty")
        return value

    @field_validator("history")
    @classmethod
    def _history_off(cls, value: str | None) -> str | None:
        if value is not None and value.strip().lower() in OFF_WORDS:
            return HISTORY_OFF
        return value

    @field_validator("chat", mode="before")
    @classmethod
    def _chat_name(cls, value: Any) -> Any:
        if value is True:
            return DEFAULT_CHAT
        if value is False:
            return None
        if isinstance(value, str):
            value = value.strip()
            return None if not value or value.lower() in OFF_WORDS else value
        return value

    @field_validator("prices")
    @classmethod
    def _prices_file_is_readable(cls, value: str | None) -> str | None:
        if value is not None:
            load_prices(value)
        return value

    @field_validator("base_url")
    @classmethod
    def _url_has_a_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("stop", mode="before")
    @classmethod
    def _one_stop_is_a_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [value]
        return value

    @field_validator("stop")
    @classmethod
    def _stops_are_not_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(not s for s in value):
            raise ValueError("a stop sequence cannot be empty")
        return value or None


NAMES: tuple[str, ...] = tuple(Settings.model_fields)


def _extra(name: str) -> dict[str, Any]:
    extra = Settings.model_fields[name].json_schema_extra
    assert isinstance(extra, dict)
    return extra


def flag_of(name: str) -> str:
    """The ``%%llm`` flag of an option, e.g. ``--max-tokens`` (the longest spelling)."""
    flags: list[str] = _extra(name)["flags"]
    longs = [f for f in flags if f.startswith("--")]
    return longs[0] if longs else flags[0]


@functools.cache
def request_fields() -> tuple[str, ...]:
    """Options that providers receive in :class:`~nbstream.providers.base.Request`."""
    return tuple(n for n in NAMES if _extra(n)["request"])


def _base_type(annotation: Any) -> Any:
    """``float | None`` → ``float``; ``Literal[...]`` and ``list[str]`` stay as they are."""
    if get_origin(annotation) in (Literal, list):
        return annotation
    args = [a for a in get_args(annotation) if a is not type(None)]
    return args[0] if args else annotation


def _is_list(name: str) -> bool:
    return get_origin(_base_type(Settings.model_fields[name].annotation)) is list


# -- errors ---------------------------------------------------------------------------


def _message(error: Mapping[str, Any]) -> str:
    message = str(error.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ")
    return message[:1].lower() + message[1:]


# -- the merge ---------------------------------------------------------------------------


def env_var(name: str) -> str:
    """The environment variable of an option: ``NBSTREAM_<NAME>``."""
    return f"NBSTREAM_{name.upper()}"


def from_environment(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``NBSTREAM_<NAME>`` values that are set (as strings; a list option takes JSON or one
    value)."""
    environ = os.environ if environ is None else environ
    found: dict[str, Any] = {}
    for name in NAMES:
        raw = environ.get(env_var(name))
        if raw is None or not raw.strip():
            continue
        value: Any = raw.strip()
        if _is_list(name) and value.startswith("["):
            with contextlib.suppress(json.JSONDecodeError):
                value = json.loads(value)
        found[name] = value
    return found


def _given(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if not isinstance(v, Unset)}


_configured_source: Callable[[], dict[str, Any]] | None = None


def use_configured(source: Callable[[], dict[str, Any]] | None) -> None:
    """Where :func:`configured` reads the ``%config`` layer from: ``%load_ext nbstream``
    hands over its magics' traits, ``%unload_ext`` takes them back (``None``)."""
    global _configured_source
    _configured_source = source


def configured() -> dict[str, Any]:
    """The ``%config LLMMagics.*`` values (``None`` = not configured); ``{}`` when nbstream
    is not loaded as an extension."""
    return _configured_source() if _configured_source is not None else {}


def resolve(
    call: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> Settings:
    """Merge the layers, first given wins: ``call`` → ``config`` → environment →
    ``defaults`` (a front door's own defaults, e.g. :func:`nbstream.map` caches rows) →
    the declared defaults.

    ``call`` and ``config`` map option names to values, :data:`UNSET` meaning "not given"
    (``config`` values of ``None`` also mean "not configured": traits start as ``None``).
    Raises :class:`SettingsError` naming every rejected value and where it came from.
    """
    layers: list[tuple[Literal["call", "config", "env"], dict[str, Any]]] = [
        ("call", _given(call or {})),
        ("config", {k: v for k, v in _given(config or {}).items() if v is not None}),
        ("env", from_environment(environ)),
        ("call", _given(defaults or {})),
    ]
    unknown = [k for _, layer in layers for k in layer if k not in Settings.model_fields]
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(sorted(set(unknown)))}")
    merged: dict[str, Any] = {}
    source: dict[str, Literal["call", "config", "env"]] = {}
    for where, layer in reversed(layers):
        for name, value in layer.items():
            merged[name] = value
            source[name] = where
    try:
        return Settings(**merged)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = str(error["loc"][0]) if error.get("loc") else "?"
            problems.append(
                Problem(name, merged.get(name), _message(error), source.get(name, "call"))
            )
        raise SettingsError(problems) from None


def check(name: str, value: Any) -> Any:
    """Validate one value for option ``name`` (``%config`` assignments); return it."""
    if value is None:
        return None
    try:
        Settings(**{name: value})
    except ValidationError as exc:
        error = exc.errors()[0]
        raise SettingsError([Problem(name, value, _message(error), "config")]) from None
    return value


# -- derived front-door declarations ------------------------------------------------------


def config_traits() -> dict[str, Any]:
    """One traitlets trait per option for ``%config LLMMagics.<name>`` (``None`` = not set)."""
    import traitlets

    traits: dict[str, Any] = {}
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "" if default is None else f" Default: {default!r}."
        help_text = f"{field.description}{shown} (Also ${env_var(name)}.)"
        kind = _base_type(field.annotation)
        trait: traitlets.TraitType[Any, Any]
        if get_origin(kind) is Literal:
            trait = traitlets.Enum(get_args(kind), None, allow_none=True, help=help_text)
        elif kind is bool:
            trait = traitlets.Bool(None, allow_none=True, help=help_text)
        elif kind is float:
            trait = traitlets.Float(None, allow_none=True, help=help_text)
        elif kind is int:
            trait = traitlets.Int(None, allow_none=True, help=help_text)
        elif get_origin(kind) is list:
            trait = traitlets.List(traitlets.Unicode(), None, allow_none=True, help=help_text)
        else:
            trait = traitlets.Unicode(None, allow_none=True, help=help_text)
        traits[name] = trait.tag(config=True)
    return traits


def add_magic_arguments(func: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a ``magic_arguments`` magic with one flag per option (values stay strings
    and are validated by :func:`resolve`, so every front door reports errors alike)."""
    from IPython.core import magic_arguments

    for name in reversed(NAMES):
        field = Settings.model_fields[name]
        extra = _extra(name)
        kwargs: dict[str, Any] = {"dest": name, "metavar": extra["metavar"], "default": None}
        help_text = field.description or ""
        if field.default is not None:
            help_text += f" Default: {field.default}."
        if _is_list(name):
            kwargs["action"] = "append"
        if _base_type(field.annotation) is bool:  # --show-prompt / --no-show-prompt
            kwargs["action"] = argparse.BooleanOptionalAction
            del kwargs["metavar"]
        kwargs.update(extra.get("magic") or {})
        kwargs["help"] = help_text.replace("%", "%%")
        func = magic_arguments.argument(*extra["flags"], **kwargs)(func)
    return func
