"""The answer as HTML, for every display: the incremental renderer a live view feeds, and the
static bundle (HTML + text) that replaces a live view when the stream ends, so that a saved
notebook shows the answer everywhere (``docs/design.md#what-a-saved-notebook-keeps``).

Nothing here needs a widget library: the live-HTML display and the progress display use it
where anywidget is not installed.
"""

from __future__ import annotations

import base64
import html as htmlmod
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbstream.render import incremental, markdown
from nbstream.structured.view import IncrementalStructured, render_partial

if TYPE_CHECKING:
    from nbstream.response import Response
    from nbstream.structured.schema import Schema
    from nbstream.structured.view import IncrementalStructured

ANSWER_OPEN = '<div class="nbstream-answer mathjax_ignore tex2jax_ignore">'
"""The answer's container. The classes keep the front end's MathJax away: nbstream typesets
math itself (MathML), and MathJax would turn "$5 and $10" in prose into math."""


def static_text(name: str) -> str:
    """The file ``static/<name>`` as text. A widget's ``_esm``/``_css`` must be given as text,
    never as a path: anywidget turns a path into a class-level file watcher that connects one
    callback per instance, so every view (and its sink, stream and answer) would live as long
    as the class (anywidget issue #929; docs/design.md)."""
    return (Path(__file__).parent.parent / "static" / name).read_text(encoding="utf-8")


def compact_js(name: str) -> str:
    """The module ``static/<name>`` without indentation, blank lines and whole-line ``//``
    comments (line breaks kept: automatic semicolons stay where they were), for a widget's
    ``_esm``: a quarter fewer bytes in every view's setup message."""
    lines = (line.strip() for line in static_text(name).splitlines())
    return "\n".join(line for line in lines if line and not line.startswith("//"))


def inline_css(name: str) -> str:
    """The stylesheet ``static/<name>`` without comments or line breaks, for the ``<style>``
    of a static bundle (a saved notebook carries its own styles)."""
    return " ".join(re.sub(r"/\*.*?\*/", "", static_text(name), flags=re.S).split())


def renderer(schema: Schema | None) -> incremental.IncrementalMarkdown | IncrementalStructured:
    """The incremental renderer for an answer: Markdown, or with a schema a table of JSON."""
    if schema is None:
        return incremental.IncrementalMarkdown()

    return IncrementalStructured(schema)


def structured_html(response: Response, live_html: str) -> str:
    """The static HTML of a structured answer: the validated object (a table for a list of
    records, a field/value table for one object); when there is none (stopped, cut, not
    valid), what the live view showed, or the raw text if no JSON value was found in it."""

    if response.data is not None:
        return render_partial(response.data)
    if "<table" in live_html or "<ol" in live_html or not response.text.strip():
        return live_html
    return f'<pre class="nbstream-raw">{htmlmod.escape(response.text)}</pre>'


def plain_text(response: Response) -> str:
    """The ``text/plain`` a saved notebook keeps: the answer, plus how it ended if not fine."""
    text = response.text
    if response.finish_reason == "stop":
        return text
    ending = response.ending
    if response.finish_reason == "cancelled":
        ending += " — partial answer"
    elif response.finish_reason == "error":
        ending += f": {response.error}"
    return f"{text}\n\n[nbstream: {ending}]" if text else f"[nbstream: {ending}]"


def footer_words(response: Response, note: str | None = None) -> str:
    """The saved footer: :meth:`Response.summary` with the stream's status note after the
    model (``chat: 2 earlier turns sent`` / ``schema by instructions: …``), as live."""
    summary = response.summary()
    said = summary.split(" · ")
    note = " · ".join(p for p in (note or "").split(" · ") if p and p not in said)  # "cached"
    if not note:
        return summary
    if response.model and summary.startswith(response.model):
        return f"{response.model} · {note}{summary[len(response.model) :]}"
    return f"{note} · {summary}"


def static_bundle(
    response: Response,
    html: str | None = None,
    prompt: str | None = None,
    note: str | None = None,
    thumbnails: list[tuple[str, bytes]] | None = None,
    thinking: bool = True,
) -> dict[str, str]:
    """The HTML + text bundle that replaces the live view when the stream ends
    (``html``: the answer already rendered, to spare a second render; ``prompt``: shown in
    a collapsed section, for ``--show-prompt``; ``note``: the stream's status note, kept in
    the footer). The HTML carries its own small stylesheet (theme variables, scrolling
    tables, code colours when there is code), so the saved answer looks the same in
    JupyterLab, Notebook 7 and nbconvert's HTML."""
    body = markdown.render(response.text) if html is None else html
    footer = (
        f'<div class="nbstream-footer" data-finish-reason="{response.finish_reason}">'
        f"{htmlmod.escape(footer_words(response, note))}</div>"
    )
    details = ""
    if prompt:
        images = "".join(
            f'<img class="nbstream-thumb" alt="{htmlmod.escape(label, quote=True)}" '
            f'title="{htmlmod.escape(label, quote=True)}" '
            f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'
            for label, png in thumbnails or []
        )
        details = (
            '<details class="nbstream-prompt"><summary>prompt</summary>'
            f"<pre>{htmlmod.escape(prompt)}</pre>{images}</details>"
        )
    if thinking:
        details += thinking_html(response)
    details += tool_calls_html(response.tool_calls)
    style = _static_css(with_code='class="highlight"' in body)
    return {
        "text/html": f"<style>{style}</style>{details}{ANSWER_OPEN}{body}</div>{footer}",
        "text/plain": plain_text(response),
    }


def thinking_summary(response: Response) -> str:
    """``Thought for 12 s · 840 tokens`` (the tokens the provider reported as reasoning, else
    the thinking deltas counted)."""
    usage = response.usage or {}
    tokens = usage.get("reasoning_tokens") or response.thinking_chunks
    secs = response.thinking_seconds
    took = f"Thought for {secs:.0f} s · " if secs is not None else "Thought · "
    return f"{took}{tokens} token{'s' if tokens != 1 else ''}"


def thinking_html(response: Response) -> str:
    """The thinking as a collapsed section (escaped text), or ``""`` when there was none."""
    if not response.thinking:
        return ""
    return (
        f'<details class="nbstream-thinking"><summary>{htmlmod.escape(thinking_summary(response))}'
        f'</summary><pre class="nbstream-thinking-text">{htmlmod.escape(response.thinking)}'
        "</pre></details>"
    )


def tool_calls_html(calls: list[dict[str, Any]], limit: int = 300) -> str:
    """The answer's tool calls as a collapsed list (the saved output keeps them): name,
    arguments, what was decided and the start of what the model was sent; all escaped."""
    if not calls:
        return ""
    items = []
    for call in calls:
        result = str(call.get("result") or "")
        if len(result) > limit:
            result = result[: limit - 1] + "…"
        items.append(
            f"<li><code>{htmlmod.escape(str(call.get('name')))}</code> "
            f"<code>{htmlmod.escape(str(call.get('arguments')))}</code> · "
            f"{htmlmod.escape(str(call.get('decision')))} → {htmlmod.escape(result)}</li>"
        )
    count = f"{len(calls)} tool call{'s' if len(calls) != 1 else ''}"
    listed = "".join(items)
    return f'<details class="nbstream-tools"><summary>{count}</summary><ul>{listed}</ul></details>'


def _static_css(with_code: bool) -> str:
    return _STYLE + _CODE_STYLE if with_code else _STYLE


_STYLE = inline_css("view.css")
"""The saved answer's own stylesheet."""
_CODE_STYLE = inline_css("highlight.css")
"""…and its code colours, when it has highlighted code (comments out: 4.2 → 2.6 KB)."""


__all__ = [
    "ANSWER_OPEN",
    "footer_words",
    "inline_css",
    "plain_text",
    "renderer",
    "static_bundle",
    "static_text",
    "structured_html",
    "thinking_html",
    "thinking_summary",
]
