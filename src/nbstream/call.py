"""One front-door call beyond its first stream: validation re-asks and bookkeeping.

Two options of issue 11 are handled here, above the engine, which knows neither:

* ``chat``: the thread's earlier turns (:mod:`nbstream.conversation`, within the budget,
  up to the running cell's own turn) go into ``Request.messages`` / ``system``; the status
  note says what was sent; when the call ends its turn is recorded (re-running a cell
  replaces it), also when it was stopped or failed.
* ``schema``: resolved before anything is sent (:func:`nbstream.structured.resolve_schema`);
  the wire form goes into ``Request.schema``, the sinks render the JSON as a table. An
  answer that finished is validated (``Response.data``); one that does not match becomes
  ``finish_reason == "error"`` with the validator's message, and up to ``retries`` times a
  new provider call asks again with the bad answer and the error (:class:`Call`): a new
  :class:`Stream` whose sink (:class:`Relay`) continues the same display.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from nbstream import cache, pricing
from nbstream import store as records
from nbstream.conversation import Turn, record
from nbstream.engine import Sink, Stream
from nbstream.errors import SchemaValidationError
from nbstream.providers import get_provider
from nbstream.providers.base import Request
from nbstream.response import Response, remember
from nbstream.settings import Settings
from nbstream.tools.running import Approval, Outcome, run_call, summary

if TYPE_CHECKING:
    from nbstream.conversation import History
    from nbstream.structured.schema import Schema
    from nbstream.tools.definition import Tool


def _join(*notes: str | None) -> str | None:
    return " · ".join(n for n in notes if n) or None


class Chat:
    """The conversation side of one call: its thread, the key of its turn, what was sent."""

    def __init__(self, name: str, key: str | None, history: History) -> None:
        self.name = name
        self.key = key
        self.history = history

    def note(self) -> str:
        """``chat: 2 earlier turns sent (~40 tokens)`` (+ ``appending: no cell id``)."""
        label = "chat" if self.name == "default" else f"chat {self.name!r}"
        text = f"{label}: {self.history.summary()}"
        if self.key is None:
            text += "; appending: no cell id"
        return text


CUT_BEFORE_CLOSED = (
    "cut by length before the JSON closed (max_tokens reached): no data; raise max_tokens "
    "(the partial JSON is the text)"
)
"""The error of a structured answer that ``max_tokens`` cut before its JSON was complete
(``finish_reason`` stays ``length``: it is not re-asked)."""


def judge(schema: Schema, response: Response) -> tuple[Response, SchemaValidationError | None]:
    """The verdict on a structured answer that ended on its own (``stop`` / ``length``): a
    valid one gets ``data`` and the text of the type asked for
    (:meth:`~nbstream.structured.Schema.answer_text`); one cut by length before its JSON
    closed gets :data:`CUT_BEFORE_CLOSED` as its error; an invalid finished one is returned
    with the validation error (the caller decides: re-ask, or an error). Other endings are
    left as they are. Streams (:class:`Call`) and provider batches use it."""
    if response.finish_reason not in ("stop", "length"):
        return response, None
    try:
        response.data = schema.validate(response.text)
    except SchemaValidationError as exc:
        if response.finish_reason == "length":
            response.error = CUT_BEFORE_CLOSED
            return response, None
        return response, exc
    return response.with_text(schema.answer_text(response.text, response.data)), None


REASK = (
    "That answer cannot be used: {error}. Answer the same question again, with JSON only "
    "that matches the schema."
)
"""The prompt of a validation re-ask (the bad answer is sent before it)."""


class Call:
    """One front-door call: the stream of its first request and, with a schema, the re-asks
    that follow an answer that does not validate (each a new provider call, in a new
    :class:`Stream` sharing the sink). Every stream's ``on_response`` is a
    :class:`Bookkeeping` of this call: it validates, decides on a re-ask, does the cost
    and history bookkeeping of that provider call, and for the last one records the turn
    of the conversation and sums what the calls cost."""

    def __init__(
        self,
        *,
        settings: Settings,
        provider_name: str,
        model_id: str,
        prompt: str,
        schema: Schema | None,
        chat: Chat | None,
        sink: Sink,
        describe_option: Callable[[str], str],
        notes: list[str],
        tools: list[Tool] | None = None,
        inputs: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.provider_name = provider_name
        self.model_id = model_id
        self.prompt = prompt
        self.schema = schema
        self.chat = chat
        self.sink = sink
        self.describe_option = describe_option
        self.notes = notes
        self.context = records.front_end_context()
        self.responses: list[Response] = []
        self.pending: tuple[Request, str, str] | None = None
        """The next request, its status note and the text it continues: after an answer
        that did not validate (a re-ask), or after tool calls (the next round)."""
        self.halted = False
        """Interrupted: no further stream."""
        self.tools = {t.name: t for t in tools or []}
        self.tool_round: Stream | None = None
        """The stream whose answer asked for tool calls, until they have run."""
        self.rounds = 0
        self.tool_records: list[dict[str, Any]] = []
        self.round_messages: list[dict[str, Any]] = []
        """The tool rounds as messages (for the conversation's turn)."""
        self.approval = Approval(auto=settings.auto_approve)
        self.inputs = dict(inputs or {})
        """Fingerprints of what the prompt read (``Response.inputs``)."""

    def stream(self, request: Request, note: str | None = None, prefix: str = "") -> Stream:
        provider, lookup = cache.wrap(
            get_provider(self.provider_name),
            self.provider_name,
            self.model_id,
            request,
            self.settings,
        )
        cached = None
        if lookup.hit:
            cached = "cached: inputs unchanged" if self.inputs else "cached"
        notes = [note, cached, *self.notes]
        return Stream(
            provider,
            request,
            model_id=self.model_id,
            settings=self.settings,
            sink=self.sink,
            note=_join(*notes),
            describe_option=self.describe_option,
            on_response=Bookkeeping(lookup, self.context, self),
            prefix=prefix,
        )

    def follow_up(self, stream: Stream) -> Stream | None:
        """The next stream after ``stream`` ended (a validation re-ask), or ``None``."""
        pending, self.pending = self.pending, None
        if pending is None:
            return None
        if stream.interrupted or self.halted:  # the re-ask is not sent: this is the answer
            last = self.responses[-1] if self.responses else None
            if self.halted and last is not None and last.finish_reason in ("stop", "length"):
                last.finish_reason = stream.state = "cancelled"  # stopped between tool rounds
            self._settle(stream)
            return None
        request, note, prefix = pending
        try:
            return self.stream(request, note, prefix)
        except BaseException:  # the re-ask cannot even start: show the answer as it is
            self._settle(stream)
            raise

    def _settle(self, stream: Stream) -> None:
        """The last answer stays the answer: finish it and show its held end."""
        self.finish(stream, self.responses[-1])
        if isinstance(self.sink, Relay):
            self.sink.flush()

    # -- the hooks, in the order Bookkeeping calls them -------------------------------------

    def check(self, stream: Stream, response: Response) -> Response:
        """Validate a finished answer against the schema: a valid one gets its ``data`` and
        the text of the type asked for (:meth:`~nbstream.structured.Schema.answer_text`);
        a failure makes the response an error (text kept) and, if re-asks are left, queues
        one. Returns the answer in its final form."""
        if self.tools and stream.tool_calls and response.finish_reason in ("stop", "length"):
            return self._tool_calls_asked(stream, response)
        if self.schema is None:
            return response
        response, error = judge(self.schema, response)
        if error is None:
            return response
        reasks = len(self.responses)
        message = str(error)
        if reasks:
            message += f" (after asking again {reasks} {'time' if reasks == 1 else 'times'})"
        response.finish_reason = stream.state = "error"
        response.error = message
        if reasks < self.settings.retries and not stream.interrupted and not self.halted:
            what = "invalid JSON" if error.field is None else "the JSON does not match"
            note = f"{what} — asking again ({reasks + 1}/{self.settings.retries})"
            request = stream.request
            retry = replace(
                request,
                prompt=REASK.format(error=str(error)),
                messages=(
                    *request.messages,
                    {"role": "user", "content": request.prompt},
                    {"role": "assistant", "content": response.text},
                ),
            )
            self.pending = (retry, note, "")
            if isinstance(self.sink, Relay):
                self.sink.hold = True
        return response

    # -- tool rounds --------------------------------------------------------------------------

    def _tool_calls_asked(self, stream: Stream, response: Response) -> Response:
        """The model asked for tool calls: unless interrupted or out of rounds, they run
        before the next stream (:meth:`run_tools`), which continues this answer."""
        if stream.interrupted or self.halted:
            return response
        if self.rounds >= self.settings.max_tool_rounds:
            response.finish_reason = stream.state = "error"
            response.error = (
                f"stopped after {self.rounds} rounds of tool calls (the model asked for more); "
                f"raise {self.describe_option('max_tool_rounds')}"
            )
            return response
        self.tool_round = stream
        self.pending = (stream.request, "", "")  # made real by run_tools
        if isinstance(self.sink, Relay):
            self.sink.hold = True
            self.sink.continuing = True
        return response

    def _end_cancelled(self, stream: Stream, outcomes: list[Outcome]) -> None:
        """Stopped or interrupted between rounds: no next round; the answer so far is the
        answer, cancelled."""
        self.halted = True
        if self.responses:
            self.responses[-1].finish_reason = stream.state = "cancelled"
        self.tool_records.extend(o.record(self.rounds) for o in outcomes)

    async def run_tools(self) -> None:
        """Run the calls the last answer asked for (approved, refused or replayed), and queue
        the next round: the same request with the assistant's calls and their results added."""
        stream, self.tool_round = self.tool_round, None
        if stream is None:
            return
        self.rounds += 1
        request = stream.request
        lookup = getattr(stream.on_response, "lookup", None)
        entry = getattr(lookup, "entry", None)
        recorded = getattr(entry, "tool_results", None)
        outcomes: list[Outcome] = []
        try:
            if recorded is not None and len(recorded) == len(stream.tool_calls):
                outcomes = [
                    Outcome(c, "replayed", str(r.get("result", "")), r.get("error"))
                    for c, r in zip(stream.tool_calls, recorded, strict=True)
                ]
            else:
                view = getattr(self.sink, "approve", None)
                for call in stream.tool_calls:
                    outcome = await run_call(
                        call, self.tools, self.approval, self.settings.context_budget, view
                    )
                    outcomes.append(outcome)
                    if outcome.decision == "stopped":  # Stop while a card waited
                        self._end_cancelled(stream, outcomes)
                        return
        except KeyboardInterrupt:  # interrupted while a tool ran: the answer ends here
            stream.interrupted = True
            self._end_cancelled(stream, outcomes)
            return
        self.tool_records.extend(o.record(self.rounds) for o in outcomes)
        if lookup is not None and recorded is None and lookup.path is not None:
            cache.record_tool_results(
                lookup, [{"result": o.result, "error": o.error} for o in outcomes]
            )
        turns = list(request.messages)
        if request.prompt:
            turns.append({"role": "user", "content": request.prompt})
        this_round: list[dict[str, Any]] = [
            {
                "role": "assistant",
                "content": stream.text[len(stream.prefix) :],
                "tool_calls": [dataclasses.asdict(c) for c in stream.tool_calls],
                **(
                    {"thinking_blocks": [dict(b) for b in stream.thinking_blocks]}
                    if stream.thinking_blocks
                    else {}
                ),
            }
        ]
        this_round.extend(
            {"role": "tool", "tool_call_id": o.call.id, "name": o.call.name, "content": o.result}
            for o in outcomes
        )
        turns.extend(this_round)
        self.round_messages.extend(this_round)
        text = stream.text
        prefix = f"{text}\n\n" if text.strip() and not text.endswith("\n\n") else text
        note = summary(outcomes) + (" (replayed: no tool ran)" if recorded is not None else "")
        self.pending = (replace(request, prompt="", messages=tuple(turns)), note, prefix)

    def finish(self, stream: Stream, response: Response) -> None:
        """The last answer of the call: the prompt the user asked, the cost and usage of
        every provider call of it, and its turn in the conversation."""
        earlier = self.responses
        if earlier:
            response.prompt = self.prompt
            response.usage = _add_usage([*[r.usage for r in earlier], response.usage])
            costs = [r.cost for r in [*earlier, response]]
            response.cost = None if None in costs else sum(c for c in costs if c is not None)
        if self.tool_records:
            response.tool_calls = list(self.tool_records)
        response.inputs = dict(self.inputs)
        remember(response)
        if self.chat is not None:
            turn = Turn.from_response(response, system=self.settings.system, cell_id=self.chat.key)
            if self.round_messages:
                turn.rounds = list(self.round_messages)
                turn.final = stream.text[len(stream.prefix) :]
            record(turn, self.chat.name)


def _add_usage(usages: list[dict[str, int] | None]) -> dict[str, int] | None:
    total: dict[str, int] = {}
    for usage in usages:
        for key, value in (usage or {}).items():
            total[key] = total.get(key, 0) + int(value)
    return total or None


class Relay:
    """The sink of a call with validation re-asks: passes everything on to ``sink``, except
    the end of an answer that is asked again (:attr:`hold`). The next stream's start then
    continues the same display in place (``sink.on_restart``) or, for sinks that cannot,
    ends the held answer there and starts the next one after it."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.pumps_widget_messages = sink.pumps_widget_messages
        self.hold = False
        self.continuing = False
        """The next stream continues the held answer's text (a tool round), not a re-ask."""
        self.approve = getattr(sink, "approve", None)
        """The display's way to ask whether a tool call may run (a card), if it has one."""
        self._held: tuple[Stream, Response] | None = None

    def on_start(self, stream: Stream) -> None:
        held, self._held = self._held, None
        if held is None:
            self.sink.on_start(stream)
            return
        if self.continuing:
            self.continuing = False
            go_on = getattr(self.sink, "on_continue", None)
            if go_on is not None:
                go_on(stream)
                return
        restart = getattr(self.sink, "on_restart", None)
        if restart is not None:
            restart(stream)
        else:
            self.sink.on_end(*held)
            self.sink.on_start(stream)

    def on_delta(self, stream: Stream, delta: str) -> None:
        self.sink.on_delta(stream, delta)

    def on_status(self, stream: Stream) -> None:
        self.sink.on_status(stream)

    def on_end(self, stream: Stream, response: Response) -> None:
        if self.hold:
            self.hold = False
            self._held = (stream, response)
            return
        self.sink.on_end(stream, response)

    def flush(self) -> None:
        """Show the end of a held answer whose re-ask will not run (interrupted)."""
        held, self._held = self._held, None
        if held is not None:
            self.sink.on_end(*held)


class Bookkeeping:
    """What happens to every answer before it is shown as ended (the engine's
    ``on_response``, which also runs after an interrupt): validation against the schema,
    its cost, the session's total, a row in the history (queued: the stream never waits
    for the disk), and for the last answer of a call its turn in the conversation."""

    def __init__(
        self, lookup: cache.Lookup, context: dict[str, str | None], call: Call | None = None
    ) -> None:
        self.lookup = lookup
        self.context = context
        self.call = call

    def __call__(self, stream: Stream, response: Response) -> Response:

        call = self.call
        settings = stream.settings
        response.cached = self.lookup.hit
        try:
            if call is not None:
                response = call.check(stream, response)
            self.lookup.commit(response.finish_reason)  # after the verdict, never before
            if self.lookup.replay_miss:
                response.cost = 0.0  # nothing was sent
            else:
                response.cost = pricing.cost(
                    response.model,
                    response.usage,
                    cached=response.cached,
                    prices_file=settings.prices,
                )
        finally:  # a prices file gone bad must not lose the answer's record
            pricing.add_to_session(response)
            try:
                if call is not None and call.pending is None:
                    call.finish(stream, response)  # the answer complete (its tool calls) …
            finally:
                path = records.history_path(settings.history)  # … before its history row
                if path is not None:
                    row = records.record_of(
                        stream, response, request_key=self.lookup.key, context=self.context
                    )
                    records.record(path, row, cap=settings.history_cap)
                if call is not None:
                    call.responses.append(response)
        return response


def call_of(stream: Stream) -> Call | None:
    """The :class:`Call` a stream belongs to (``None``: a stream made without one)."""
    hook = stream.on_response
    return hook.call if isinstance(hook, Bookkeeping) else None


__all__ = ["CUT_BEFORE_CLOSED", "REASK", "Bookkeeping", "Call", "Chat", "Relay", "call_of", "judge"]
