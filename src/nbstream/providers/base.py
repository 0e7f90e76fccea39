"""The contract every provider honours.

A provider is one async generator function::

    async def stream(request: Request) -> AsyncIterator[str | Final]

It yields text deltas (``str``) as they arrive and then exactly one :class:`Final`.
It knows its wire format and nothing else: no display, no timing, no retries, no variables.

* A stream that ends without a ``Final`` was cut short (dropped connection, crash):
  the engine reports it as an error. Providers must *not* invent a ``Final`` when the
  wire format's terminal event (``finish_reason`` / ``message_stop``) never came
  (``docs/design.md#sdks-hide-dropped-connections``).
* Anything that goes wrong is raised as :class:`ProviderError` with a one-line,
  actionable message that never contains a secret; HTTP 429/5xx and connection failures
  are marked ``retryable`` (the engine retries them before the first token). The SDKs'
  own retries are switched off: nbstream owns the policy.
* Cancellation (``asyncio.CancelledError``) may arrive at any ``await``; providers use
  ``async with`` / ``try/finally`` so that the upstream HTTP response is closed at once.
* ``request.messages`` holds the earlier turns of a conversation (``--chat``), oldest
  first, as ``{"role": "user" | "assistant", "content": str}``; ``request.system`` is the
  effective system prompt. Each provider turns them into its own format
  (each provider module has its format: ``to_openai``, ``to_anthropic``, ``to_local_document``).
* ``request.schema`` (``--schema``) is the answer's JSON schema in its wire form
  (:attr:`nbstream.structured.Schema.wire`). A provider asks for it with its native
  mechanism and yields the answer's **JSON text** as the deltas (validation happens above
  the engine). A provider that cannot enforce it should put
  :func:`nbstream.structured.instructions` in the prompt.
* ``request.tools`` (``--tools``) are the functions the model may call, in their wire form
  (``name``, ``description``, ``parameters``: a JSON schema). A provider that declares
  ``Capabilities(tools=True)`` sends them in its native format, yields a
  :class:`ToolCallDelta` as each call's name and arguments stream in (for the display), and
  puts the complete calls into its :class:`Final` (``tool_calls``); the model's earlier
  calls and their results come back in ``request.messages`` as ``{"role": "assistant",
  "content", "tool_calls": [{"id", "name", "arguments"}]}`` and ``{"role": "tool",
  "tool_call_id", "name", "content"}``.
* :func:`note` adds a remark to the live status line (e.g. a fallback the provider took).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal

from nbstream.errors import ProviderError

FinishReason = Literal["stop", "length", "cancelled", "error"]
"""How an answer ended: the model finished, was cut by max_tokens, was stopped, failed."""

WireFinish = Literal["stop", "length"]
"""The finish reasons a provider can report in its :class:`Final`."""


@dataclass(frozen=True)
class Attachment:
    """An image or a PDF in the prompt, in the place its ``{field}`` stood
    (:attr:`Request.parts`). Made by :mod:`nbstream.prompts.media`; a provider sends it in
    its native content format."""

    kind: Literal["image", "document"]
    mime: str
    """``image/png``, ``image/jpeg``, ``image/webp``, ``image/gif`` or ``application/pdf``."""
    data: bytes = field(repr=False)
    label: str
    """Where it came from: the field (``fig``, ``last_figure``) or the file name."""
    sha256: str
    width: int | None = None
    height: int | None = None
    pages: int | None = None
    """A PDF's page count, when it could be read."""

    def key_material(self) -> dict[str, Any]:
        """What identifies it in the replay cache's key and the history: the hash, not the
        bytes."""
        return {
            "kind": self.kind,
            "mime": self.mime,
            "sha256": self.sha256,
            "bytes": len(self.data),
        }

    def describe(self) -> str:
        """``fig: PNG 800×600, 41 KB`` (for prompts shown as text, history, status lines)."""
        what = self.mime.rpartition("/")[2].upper()
        size = f" {self.width}×{self.height}" if self.width and self.height else ""
        pages = f" {self.pages} page{'s' if self.pages != 1 else ''}," if self.pages else ""
        return f"{self.label}: {what}{size},{pages} {_kilobytes(len(self.data))}"

    def base64(self) -> str:
        import base64

        return base64.b64encode(self.data).decode("ascii")


def _kilobytes(n: int) -> str:
    return f"{n / 1024:,.0f} KB" if n >= 1024 else f"{n} bytes"


@dataclass(frozen=True)
class Request:
    """What the user asked for, independent of any wire format.

    The fields from ``system`` to ``connect_timeout`` are the options declared with
    ``request=True`` in :mod:`nbstream.settings` (a test keeps the two in step);
    ``messages`` and ``schema`` are built by the front door from ``--chat`` and
    ``--schema``. Every field is part of the replay cache's key (:mod:`nbstream.cache`)
    except the ones saying how the request travels.
    """

    prompt: str
    model: str
    """Model name *without* the provider prefix, e.g. ``gpt-4o-mini``."""
    system: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] | None = None
    base_url: str | None = None
    connect_timeout: float = 10.0
    thinking: int | None = None
    """A thinking budget in tokens (``--thinking``; 0: no thinking where that can be said)."""
    reasoning_effort: str | None = None
    """``low`` / ``medium`` / ``high`` for reasoning models (``--reasoning-effort``)."""
    api: str = "auto"
    """Which of a provider's APIs (``--api``: OpenAI's ``chat`` or ``responses``; ``auto``:
    the provider decides). How the request travels: not in the replay cache's key."""
    messages: tuple[Mapping[str, Any], ...] = ()
    """Earlier turns of the conversation, oldest first (no system message: see ``system``);
    tool rounds as described in the module docstring."""
    schema: Mapping[str, Any] | None = None
    """The structured answer's schema, :attr:`nbstream.structured.Schema.wire`: ``name``,
    ``label``, ``schema`` (strict JSON schema), ``strict``."""
    tools: tuple[Mapping[str, Any], ...] = ()
    """The functions the model may call: ``name``, ``description``, ``parameters``."""
    parts: tuple[str | Attachment, ...] = ()
    """The prompt with its images and documents in place (empty: text only). ``prompt``
    then holds the same text with ``[image: fig: PNG 800×600, 41 KB]`` labels; a provider
    that declares ``Capabilities(images=True)`` sends ``parts`` as the user's content."""
    whole: bool = False
    """Ask for the whole answer at once instead of a stream (a batch row nobody watches:
    one response to parse instead of a chunk per token), where the provider can
    (``Capabilities.whole``). How the request travels: not in the replay cache's key."""


@dataclass(frozen=True)
class ToolCall:
    """One call the model asked for: the provider's id for it, the function's name, and
    the arguments as the JSON text the model wrote (validated above the provider)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ToolCallDelta:
    """A call streaming in (for the display): call ``index`` of this answer, its name once
    known, and the piece of its arguments' JSON text that just arrived."""

    index: int
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True)
class ThinkingDelta:
    """A piece of the model's thinking (reasoning) as it streams: shown apart from the answer,
    never part of its text (``Response.thinking``)."""

    text: str


@dataclass(frozen=True)
class Final:
    """The terminal event of a stream that completed on the wire."""

    finish_reason: WireFinish
    usage: dict[str, int] | None = None
    """``{"input_tokens": int, "output_tokens": int}`` when the provider reports it, plus
    ``reasoning_tokens`` (part of the output) where it says how many were thinking."""
    tool_calls: tuple[ToolCall, ...] = ()
    """The calls the model asked for in this answer (it waits for their results)."""
    thinking_blocks: tuple[Mapping[str, Any], ...] = ()
    """The thinking as the provider must get it back in a tool loop or a conversation
    (Anthropic's ``thinking`` blocks with their ``signature``, ``redacted_thinking``
    blocks), in order; sent again as ``"thinking_blocks"`` of the assistant message."""


Provider = Callable[[Request], AsyncIterator["str | ToolCallDelta | ThinkingDelta | Final"]]

Budget = Callable[[int | None, str | None], int]
"""A conversation budget that depends on the call: ``(max_tokens, base_url) -> tokens``."""

OTHER_BUDGET = 8_000
"""The conversation budget of a provider that declares none (estimated tokens)."""


@dataclass(frozen=True)
class Price:
    """USD per million tokens (``cached_input``: prompt tokens served from the provider's
    prompt cache; ``None``: charged as input)."""

    input: float
    output: float
    cached_input: float | None = None

    def cost(self, usage: Mapping[str, int]) -> float:
        """The cost of one answer's ``usage`` in USD."""
        tokens_in = int(usage.get("input_tokens") or 0)
        tokens_out = int(usage.get("output_tokens") or 0)
        cached = min(int(usage.get("cached_input_tokens") or 0), tokens_in)
        cached_price = self.input if self.cached_input is None else self.cached_input
        total = (tokens_in - cached) * self.input + cached * cached_price
        return (total + tokens_out * self.output) / 1_000_000


def price(input: float, cached_input: float | None, output: float) -> Price:
    """A :class:`Price` in the column order of the providers' tables (input, cached, output)."""
    return Price(input=input, output=output, cached_input=cached_input)


@dataclass(frozen=True)
class Prices:
    """A provider's price list: model name → :class:`Price`, and where it came from."""

    table: Mapping[str, Price]
    """Model names (without the provider prefix) → prices."""
    taken: str
    """When the list was taken from the provider's pricing page (``YYYY-MM-DD``)."""
    aliases: Mapping[str, str] = field(default_factory=dict)
    """Other names the provider accepts for a model in ``table``."""
    spelling: Callable[[str], str] | None = None
    """Rewrites a model name before lookup (e.g. ``claude-sonnet-4.5`` → ``claude-sonnet-4-5``)."""


@dataclass(frozen=True)
class BatchAnswer:
    """One row's answer from a provider's batch service (the batch layer makes it a
    :class:`~nbstream.response.Response`)."""

    text: str
    finish_reason: FinishReason
    usage: dict[str, int] | None = None
    error: str | None = None


@dataclass(frozen=True)
class Capabilities:
    """What a provider can do and needs, declared once next to its stream function and given
    to :func:`nbstream.register_provider` (built-ins register through the same door).

    The front doors consult it instead of naming providers: which model an id without a name
    means, which environment variable makes it the default model, how many tokens of
    conversation to send, whether it carries ``Request.messages`` and ``Request.schema``
    itself (else the schema goes into the system prompt as instructions), whether it has a
    batch service. A provider registered without capabilities gets these defaults: today's
    one-function contract."""

    default_model: str = ""
    """The model an id without a name (``local``, ``openai``) means."""
    key_variables: tuple[str, ...] = ()
    """Environment variables that hold its credentials (shown as set / not set, masked)."""
    url_variables: tuple[str, ...] = ()
    """Environment variables that say where its server is (shown, masked)."""
    default_if_set: tuple[str, ...] = ()
    """A model is not configured and one of these is set: this provider is the default."""
    budget: int | Budget = OTHER_BUDGET
    """The default conversation budget (estimated tokens), or a function of the call."""
    conversation: bool = False
    """It sends ``Request.messages`` in its own message format."""
    schema: bool = False
    """It honours ``Request.schema`` with a native mechanism."""
    batch: str | None = None
    """The module of its batch service (``map(mode="batch")``), imported on first use: see
    :class:`nbstream.providers.batches.BatchService`."""
    prices: Prices | None = None
    """Its price list (``None``: no prices known, costs are unknown unless ``free``)."""
    free: bool = False
    """It runs on your machine: an answer without a price costs 0."""
    empty_stream_hint: Callable[[Request], str] | None = None
    """Added to the error of a stream that ended before sending anything (e.g. a server of
    the user's own that cuts requests off)."""
    tools: bool = False
    """It sends ``Request.tools`` natively and reports the model's calls (``Final.tool_calls``)."""
    images: bool = False
    """It sends the images of ``Request.parts`` natively."""
    documents: bool = False
    """It sends PDFs of ``Request.parts`` natively."""
    image_max_side: int = 2048
    """Images are downscaled to fit this many pixels on their longer side before sending
    (the provider's documented limit or the size past which it scales them itself)."""
    image_max_bytes: int = 5 * 1024 * 1024
    """Images larger than this (encoded) are re-encoded smaller before sending."""
    whole: bool = False
    """Answers a request with ``whole=True`` in one response (not streamed)."""
    thinking: bool = False
    """It honours ``Request.thinking`` (a thinking budget in tokens)."""
    reasoning_effort: bool = False
    """It honours ``Request.reasoning_effort`` (``low`` / ``medium`` / ``high``)."""
    count_tokens: Callable[[Request], Awaitable[int]] | None = None
    """The provider's token counting for a request's prompt (``None``: it has none;
    :func:`nbstream.quote` then counts characters)."""

    def conversation_budget(self, max_tokens: int | None, base_url: str | None) -> int:
        """The default conversation budget for a call."""
        if callable(self.budget):
            return self.budget(max_tokens, base_url)
        return self.budget


NOTES: ContextVar[Callable[[str], None] | None] = ContextVar("nbstream_notes", default=None)
"""Where :func:`note` sends its text: set by the engine for the stream it runs."""


def note(text: str) -> None:
    """Add ``text`` to the status line of the stream being run (call it from the provider's
    own coroutine, e.g. "schema by instructions: the server has no response_format").
    Does nothing outside a stream."""
    callback = NOTES.get()
    if callback is not None:
        callback(text)


__all__ = [
    "OTHER_BUDGET",
    "Attachment",
    "BatchAnswer",
    "Budget",
    "Capabilities",
    "Final",
    "FinishReason",
    "Price",
    "Prices",
    "Provider",
    "ProviderError",
    "Request",
    "ThinkingDelta",
    "ToolCall",
    "ToolCallDelta",
    "WireFinish",
    "note",
    "price",
]
