"""Tool calls for the embedded local model: its document, its grammars, its streamed call.

Gemma 3 270M is a *base* model with no function-calling format of its own, so tool calls are
made the way its answers are: as a continuation of a Markdown FAQ (:data:`TOOLS_HEAD`) whose
worked entries show a question, the tools it may use, a ``**Call:**`` line with JSON, the
``**Result:**`` and the ``**A:**``. Two llama.cpp grammars keep it inside the format:

1. :data:`DECISION` — after the question and its ``**Tools:**`` line the model writes
   either ``**Call:**`` or ``**A:**`` (the choice between a call and an answer);
2. :func:`call_grammar` — after ``**Call:**`` it writes ``{"name": …, "arguments": …}``
   for one of the offered tools, the arguments following that tool's JSON schema.

After ``**A:**`` the answer streams without a grammar, as without tools. A model this small
shows the mechanics, not judgement: it calls a tool for most questions that look like its
description, and it may call one that does not fit (the arguments are still valid).
The worked entries were chosen by greedy runs: with one tool entry and one plain entry the
model always answered; with two tool entries around one plain entry it calls the offered
tool and, given a result, answers from it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from nbstream.errors import ProviderError
from nbstream.providers.base import ToolCall, ToolCallDelta
from nbstream.providers.messages import Message

TOOLS_HEAD = """\
# Frequently asked questions

{system}Some answers call a tool first: the tools an answer may call are listed under its question.

**Q:** What is the weather in Paris today?

**Tools:** `get_weather(city: string)`: The current weather in a city.

**Call:** {{"name": "get_weather", "arguments": {{"city": "Paris"}}}}

**Result:** {{"city": "Paris", "sky": "sunny", "temp_c": 21}}

**A:** It is sunny in Paris, 21 °C.

**Q:** How do I check whether a number is even in Python?

**Tools:** `get_weather(city: string)`: The current weather in a city.

**A:** Use the remainder operator `%`:

```python
def is_even(n):
    return n % 2 == 0
```

**Q:** What is the price of one share of ACME?

**Tools:** `stock_price(symbol: string)`: The last price of a stock, in USD.

**Call:** {{"name": "stock_price", "arguments": {{"symbol": "ACME"}}}}

**Result:** 132.5

**A:** One share of ACME costs $132.50.

"""
"""The FAQ a question with tools continues (``{system}``: empty, or the system text and a
blank line)."""

CALL_CUE = "**Call:**"
ANSWER_CUE = "**A:**"
DECISION = f'root ::= "{CALL_CUE}" | "{ANSWER_CUE}"'
"""The grammar of the choice between a call and an answer."""
STOP_SEQUENCES = ("\n**Q:", "\n**A:", "\n**Call:", "\n**Result:", "\n**Tools:", "\n\n\n\n")
"""Where an answer after ``**A:**`` ends."""
RESULT_LIMIT = 1_200
"""Characters of a tool result put into the document (the model holds 2,048 tokens)."""

_CUE = re.compile(r"^\*\*(Q|A|Call|Result|Tools):\*\*", re.MULTILINE)


def escape_cues(text: str) -> str:
    r"""Keep a text from starting a new FAQ line (``**Q:**`` → ``\*\*Q:**``)."""
    return _CUE.sub(r"\\*\\*\1:**", text.strip())


def signature(tool: Mapping[str, Any]) -> str:
    """``name(a: integer, b?: string)``: a tool as its entry's ``**Tools:**`` line shows it.

    Types only: listing an enum's values made the model pick the first one (3 of 3 questions
    naming another region); without them it copied the value from the question (3 of 3),
    and the grammar still allows only the enum's values."""
    parameters = tool.get("parameters") or {}
    properties = parameters.get("properties") or {}
    required = set(parameters.get("required") or ())
    shown = []
    for name, spec in properties.items():
        kind = spec.get("type", "value") if isinstance(spec, Mapping) else "value"
        if isinstance(kind, list):
            kind = " | ".join(str(k) for k in kind)
        shown.append(f"{name}{'' if name in required else '?'}: {kind}")
    description = " ".join(str(tool.get("description") or "").split())
    line = f"`{tool['name']}({', '.join(shown)})`"
    return f"{line}: {description[:200]}" if description else line


def tools_line(tools: Sequence[Mapping[str, Any]]) -> str:
    return "**Tools:** " + "; ".join(signature(t) for t in tools)


def entries(turns: Sequence[Message]) -> list[str]:
    """The FAQ lines of earlier messages: ``**Q:**``, ``**Call:**``, ``**Result:**``,
    ``**A:**`` (an unanswered question without calls is left out)."""
    lines: list[str] = []
    open_question: list[str] = []
    for m in turns:
        if m["role"] == "user":
            open_question = [f"**Q:** {escape_cues(m['content'])}"]
        elif m["role"] == "assistant" and m.get("tool_calls"):
            lines += open_question
            open_question = []
            for call in m["tool_calls"]:
                lines.append(f"{CALL_CUE} {call_json(call['name'], call.get('arguments'))}")
        elif m["role"] == "tool":
            lines.append(f"**Result:** {result_text(m['content'])}")
        elif m["role"] == "assistant" and m["content"].strip():
            lines += open_question
            open_question = []
            lines.append(f"{ANSWER_CUE} {escape_cues(m['content'])}")
    return [line + "\n\n" for line in lines]


def document(
    turns: Sequence[Message],
    prompt: str,
    system: str | None,
    tools: Sequence[Mapping[str, Any]],
) -> str:
    """The document the model continues: the FAQ, the earlier turns, the question with its
    tools line and the calls and results of this question so far."""
    system_block = f"{system.strip()}\n\n" if system and system.strip() else ""
    earlier, question, rounds = _split_current(turns, prompt)
    return (
        TOOLS_HEAD.format(system=system_block)
        + "".join(entries(earlier))
        + f"**Q:** {question.strip()}\n\n{tools_line(tools)}\n\n"
        + "".join(entries(rounds))
    )


def _split_current(
    turns: Sequence[Message], prompt: str
) -> tuple[list[Message], str, list[Message]]:
    """(earlier turns, the question being answered, its tool rounds so far). A round after
    tool results has no new prompt: the question is the last user message."""
    if prompt.strip():
        return list(turns), prompt, []
    for i in range(len(turns) - 1, -1, -1):
        if turns[i]["role"] == "user":
            return list(turns[:i]), str(turns[i]["content"]), list(turns[i + 1 :])
    return [], "", list(turns)


def call_json(name: str, arguments: Any) -> str:
    try:
        parsed = json.loads(arguments) if isinstance(arguments, str) else (arguments or {})
    except ValueError:
        parsed = {}
    return json.dumps({"name": name, "arguments": parsed}, ensure_ascii=False)


def result_text(content: str) -> str:
    text = " ".join(content.split()) if len(content) < 200 else content.strip()
    if len(text) > RESULT_LIMIT:
        text = text[:RESULT_LIMIT] + " … (cut)"
    return escape_cues(text)


def call_schema(tools: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A JSON schema that a call of any offered tool matches: ``{"name": <const>,
    "arguments": <its parameters>}`` for each, their ``$defs`` moved to the root."""
    defs: dict[str, Any] = {}
    options = []
    for tool in tools:
        parameters = dict(tool.get("parameters") or {"type": "object", "properties": {}})
        for key, value in (parameters.pop("$defs", None) or {}).items():
            if key in defs and defs[key] != value:
                raise ProviderError(
                    f"The local model cannot offer tool {tool['name']!r} with the others: "
                    f"two tools define different types named {key!r}; offer it alone."
                )
            defs[key] = value
        options.append(
            {
                "type": "object",
                "properties": {"name": {"const": tool["name"]}, "arguments": parameters},
                "required": ["name", "arguments"],
            }
        )
    schema: dict[str, Any] = {"anyOf": options}
    if defs:
        schema["$defs"] = defs
    return schema


def call_gbnf(tools: Sequence[Mapping[str, Any]]) -> str:
    """The GBNF of a call (a space, then the call's JSON)."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf  # lazy: the local extra

    body = str(json_schema_to_gbnf(json.dumps(call_schema(tools))))
    body = re.sub(r"^root ::=", "call ::=", body, count=1, flags=re.MULTILINE)
    return 'root ::= " " call\n' + body


_CALL_HEAD = re.compile(r'^\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*')


class CallReader:
    """Reads the call's JSON as it streams: the name once it is complete, then the
    arguments' text (the closing brace of the call held back), as :class:`ToolCallDelta`."""

    def __init__(self, index: int = 0) -> None:
        self.index = index
        self.text = ""
        self.name: str | None = None
        self.sent = 0  # characters of the arguments already sent

    def feed(self, piece: str) -> list[ToolCallDelta]:
        self.text += piece
        deltas: list[ToolCallDelta] = []
        if self.name is None:
            match = _CALL_HEAD.match(self.text)
            if match is None:
                return deltas
            self.name = json.loads(f'"{match.group(1)}"')
            self.text = self.text[match.end() :]
            deltas.append(ToolCallDelta(self.index, name=self.name))
        # Hold back a tail that may be the call's closing brace and spacing.
        body = self.text.lstrip()
        ready = body.rstrip().rstrip("}").rstrip()
        if len(ready) > self.sent:
            deltas.append(ToolCallDelta(self.index, arguments=ready[self.sent :]))
            self.sent = len(ready)
        return deltas

    def finish(self, call_id: str) -> tuple[ToolCall, list[ToolCallDelta]]:
        """The complete call (the JSON the grammar made), and the arguments not yet sent."""
        try:
            arguments = self.text.strip()
            if not arguments.endswith("}"):
                raise ValueError("no closing brace")
            arguments = arguments[:-1].rstrip()  # the call's own closing brace
            parsed = json.loads(arguments)
        except ValueError as exc:
            raise ProviderError(
                "The local model wrote an incomplete tool call (it ran out of tokens?): "
                "raise --max-tokens or ask again."
            ) from exc
        if self.name is None:  # pragma: no cover - the grammar makes the name first
            raise ProviderError("The local model wrote a tool call without a name.")
        rest = []
        if len(arguments) > self.sent:  # (``sent`` counts ``arguments``' characters too)
            rest.append(ToolCallDelta(self.index, arguments=arguments[self.sent :]))
        call = ToolCall(call_id, self.name, json.dumps(parsed, ensure_ascii=False))
        return call, rest


__all__ = [
    "ANSWER_CUE",
    "CALL_CUE",
    "DECISION",
    "STOP_SEQUENCES",
    "TOOLS_HEAD",
    "CallReader",
    "call_gbnf",
    "call_schema",
    "document",
    "entries",
    "escape_cues",
    "signature",
]
