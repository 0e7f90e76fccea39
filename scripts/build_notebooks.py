"""Write the demo notebooks in notebooks/ from the cell lists below, then execute them.

    python scripts/build_notebooks.py            # write + execute (outputs saved for nbval),
                                                 # recording answers in notebooks/.nbstream-cache
    python scripts/build_notebooks.py --no-run   # write only

The notebooks are documentation and tests at once: nbval re-runs them in CI and compares
outputs. Cells whose output is inherently variable (a model's wording, timings) carry
nbval's ``nbval-ignore-output`` tag; the facts that matter are printed by the cells after them.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
IGNORE = "\x00ignore\x00"  # prefix marker: the cell gets nbval's "nbval-ignore-output" tag
RAISES = "\x00raises\x00"  # prefix marker: the cell fails on purpose ("raises-exception" tag)
RECORDED_ANSWERS = {
    "07-notebook-context.ipynb": {
        "gpt-4o-mini": "The **south** region sold most: its bar is the tallest, at about 340 "
        "units, well ahead of west (about 210), north (120) and east (90).",
        "gpt-4.1-mini": "`sales` has no column `unit`: the column is `units` (a `KeyError` "
        'names the missing key).\n\n```python\ntotal = sales["units"].sum()\n```\n',
    }
}
"""Answers a notebook's cells get from the test server while it is recorded (models that
cannot run here: a figure needs a model that sees). Replayed from the cache afterwards."""


def md(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell(text.strip())


def code(text: str) -> nbformat.NotebookNode:
    """A code cell; a leading IGNORE marks output nbval must not compare (model wording,
    timings). A tag, not a ``# NBVAL_IGNORE_OUTPUT`` comment: ``%%llm`` must be line one
    and the rest of the cell is the prompt."""
    tags = []
    if text.startswith(RAISES):
        text = text[len(RAISES) :]
        tags.append("raises-exception")
    if text.startswith(IGNORE):
        text = text[len(IGNORE) :]
        tags.append("nbval-ignore-output")
    cell = nbformat.v4.new_code_cell(text.strip())
    if tags:
        cell.metadata["tags"] = tags
    return cell


QUICKSTART = [
    md("""
# nbstream quickstart

`nbstream` streams LLM answers into your notebook: Markdown that renders **token by token**,
a **Stop** button, and the answer as a **Python variable** for the next cells.

Everything in this notebook runs on the **embedded local model** (Gemma 3 270M, a small *base*
model that ships as a Python package): no API key, no network. Its answers are short and often
naive — it is here so you can see streaming, stopping and the variables work in your first
minute. Point `-m` at OpenAI, Anthropic or Ollama for real answers (see `02-providers.ipynb`).
"""),
    code("%load_ext nbstream"),
    md("""
## Ask

The cell body is the prompt. `-o answer` stores the response in `answer` (it is always in
`_llm` too). While it streams you see a status line (model, tokens, elapsed time, tokens/s)
and a **■ Stop** button; when it ends, the live view is replaced by the finished answer, which
is also what a saved notebook shows on GitHub or in nbconvert.
"""),
    code(
        IGNORE
        + """%%llm -m local -o answer --max-tokens 80
How do I read a CSV file with pandas?"""
    ),
    md("""
## The answer is a string — that also says how it ended

`answer` is an `nbstream.Response`: a plain `str` (slice it, `.split()` it, pass it to
`json.dumps`) with extra attributes: `finish_reason` is `"stop"` (the model finished),
`"length"` (cut by `--max-tokens`), `"cancelled"` (you pressed Stop or interrupted) or
`"error"` (with `.error` saying what went wrong — the partial text is kept either way).
"""),
    code("""print(type(answer).__name__, isinstance(answer, str))
print(answer.finish_reason in {"stop", "length"}, answer.error)
print(answer.model)
print(len(answer) > 0, answer.usage["output_tokens"] > 0)"""),
    code(IGNORE + """answer.summary()"""),
    md("""
## Variables in prompts

`{name}`, `{name.attr}` and `{name[0]}` / `{name["key"]}` in the prompt are filled in from your
variables, **by lookup only**: nothing is evaluated or called, so code pasted into a prompt
(`{items.pop()}`, `{len(rows)}`, JSON like `{"a": 1}`) is sent exactly as written and your
variables are never touched. Values are rendered for the model within a budget: lists and dicts
as JSON, DataFrames as a compact table with shape and dtypes (see `04-conversations-and-data`).
`{{` gives a literal brace and `--raw` turns interpolation off.
"""),
    code("""topic = "gradient descent"
columns = ["age", "income", "city"]"""),
    code(
        IGNORE
        + """%%llm -m local -o short --max-tokens 40
In one sentence, what is {topic}? Also: what type of data is in {columns}? Reply as JSON like {"a": 1}."""
    ),
    code("""print(short.prompt)"""),
    md("""
## Stop, and cut by length

Press **■ Stop** while an answer streams: the HTTP request to the provider is closed at once
(no more tokens billed), the text so far is kept, `finish_reason` becomes `"cancelled"`, and
the cell ends normally, so the next cells run. The kernel's interrupt (■ in the toolbar) does
the same cleanup and then stops "Run All", as interrupts do.

There are no clicks in a notebook run headless, so here the answer is cut by `--max-tokens`:
"""),
    code(
        IGNORE
        + """%%llm -m local -o cut --max-tokens 5
Write a long essay about the history of Python."""
    ),
    code("""print(cut.finish_reason, cut.usage["output_tokens"])"""),
    md("""
## Use the answer downstream
"""),
    code("""words = answer.split()
print(len(words) > 0, words == str(answer).split())"""),
    md("""
## The Python API

`await nbstream.ask(...)` streams with the same live view and Stop button, and returns the
same `Response` — handy in loops and functions. (Top-level `await` works in every Jupyter
kernel.)
"""),
    code(
        IGNORE
        + """import nbstream

r = await nbstream.ask("Name a popular Python plotting library.", model="local", max_tokens=30)"""
    ),
    code("""print(r.finish_reason in {"stop", "length"}, r is _llm, r.model)"""),
    md("""
`display="none"` skips the live view, e.g. for many small prompts in a loop:
"""),
    code("""names = []
for lang in ["Python", "Rust"]:
    reply = await nbstream.ask(f"{lang} is a programming language that", model="local",
                               max_tokens=8, display="none")
    names.append((lang, reply.finish_reason in {"stop", "length"}))
names"""),
    md("""
## Code, math and tables

Answers render like a notebook: fenced code is highlighted (with a **Copy** button while it
streams), `$…$` / `$$…$$` / `\\(…\\)` / `\\[…\\]` math is typeset, and long tables stay fast.
`--to-cell` puts the answer's Python code into a new cell below (in JupyterLab and
Notebook 7; a headless run like this one ignores it), and `answer.code_blocks` lists the blocks.
"""),
    code(
        IGNORE
        + """%%llm -m local -o code --max-tokens 120 --to-cell
How do I check whether a number is even in Python?"""
    ),
    code("""print([lang for lang, _ in code.code_blocks])"""),
    md("""
## Reproducible notebooks: record, then replay

Every answer is also recorded in a local SQLite history (`%llm history`, `nbstream.history()`).
The **replay cache** goes further: `--cache write` records answers as small JSON files next to
the notebook (commit them), and `--cache replay` answers from them without asking any model —
deterministic, free, offline. `--cache auto` does both: reuse, else ask and record. This
repository's CI runs its notebooks with `NBSTREAM_CACHE=replay`.
"""),
    code(
        IGNORE
        + """%%llm -m local --cache write --cache-dir .demo-cache -o recorded --max-tokens 30
Name three colours."""
    ),
    code(
        IGNORE
        + """%%llm -m local --cache replay --cache-dir .demo-cache -o replayed --max-tokens 30
Name three colours."""
    ),
    code("""print(replayed == recorded, replayed.cached, recorded.cached, replayed.cost)"""),
    md("""
## Settings

Every option is a flag, a `%config LLMMagics.<name>` default and an `NBSTREAM_<NAME>`
environment variable. `%llm config` shows the effective settings and where each came from;
`%%llm?` shows every option.
"""),
    code(IGNORE + "%llm config"),
]

PROVIDERS = [
    md("""
# Providers: OpenAI, Anthropic, Ollama and any OpenAI-compatible server

Pick a model with `-m PROVIDER:NAME`:

| provider | example | needs |
|---|---|---|
| `openai` | `-m openai:gpt-4o-mini` | `OPENAI_API_KEY` (and optionally `OPENAI_BASE_URL`) |
| `anthropic` | `-m anthropic:claude-sonnet-4-5` | `ANTHROPIC_API_KEY` (optionally `ANTHROPIC_BASE_URL`) |
| `ollama` | `-m ollama:llama3.2` | a running Ollama (`OLLAMA_HOST`, default `localhost:11434`) |
| any OpenAI-compatible server | `-m openai:MODEL --base-url http://host:8000/v1` | nothing else (vLLM, llama.cpp server, LM Studio) |
| `local` | `-m local` | `pip install 'nbstream[local]'` (embedded, no key, no network) |

Keys are read from the environment and never shown. To set one without writing it into the
notebook: `import os, getpass; os.environ["OPENAI_API_KEY"] = getpass.getpass()`.

The cells below run each provider **only if its key or server is there**, and say so otherwise.
"""),
    code("%load_ext nbstream\nimport os, urllib.request\nimport nbstream"),
    md("## OpenAI"),
    code(
        IGNORE
        + """if os.environ.get("OPENAI_API_KEY"):
    r = await nbstream.ask("Say hello in five words.", model="openai:gpt-4o-mini")
else:
    print("skipped: set OPENAI_API_KEY to run this cell (or use %%llm -m openai:gpt-4o-mini)")"""
    ),
    md("## Anthropic"),
    code(
        IGNORE
        + """if os.environ.get("ANTHROPIC_API_KEY"):
    r = await nbstream.ask("Say hello in five words.", model="anthropic:claude-sonnet-4-5")
else:
    print("skipped: set ANTHROPIC_API_KEY to run this cell")"""
    ),
    md("## Ollama (or any OpenAI-compatible server)"),
    code(
        IGNORE
        + """def reachable(url):
    try:
        urllib.request.urlopen(url, timeout=0.5)
        return True
    except Exception:
        return False

if reachable("http://localhost:11434/api/tags"):
    r = await nbstream.ask("Say hello in five words.", model="ollama:llama3.2")
else:
    print("skipped: no Ollama server on localhost:11434")"""
    ),
    md("""
## When things go wrong

Failures never raise in your face and never lose text: the response says what happened in one
line, with what to fix. Here, a server that is not running:
"""),
    code(
        IGNORE
        + """%%llm -m openai:some-model --base-url http://127.0.0.1:9/v1 --http-retries 0 --cache off
Hello?"""
    ),
    code("""print(_llm.finish_reason)
print(_llm.error.split(":")[0])"""),
    md("""
A malformed model id or an unknown option is a usage error, and nothing is sent:
"""),
    code("""try:
    get_ipython().run_cell_magic("llm", "-m gpt4", "hello")
except Exception as e:
    print(type(e).__name__, "-", str(e).split(":")[0])"""),
]

CUSTOM_PROVIDER = [
    md("""
# Bring your own provider

A provider is one small async generator: it gets a `Request` (prompt, model name, system,
temperature, max_tokens, …), yields text deltas as they arrive, and ends with one `Final`
saying why it stopped. Everything else — the live view, Stop, throttling, the idle timeout,
the `Response` — is nbstream's job, so a provider never knows about notebooks.

This one streams back a Markdown document word by word (a stand-in for your own model server).
"""),
    code("""import asyncio

import nbstream
from nbstream.providers import Final

async def markdown_echo(request):
    words = request.prompt.split(" ")
    for i, word in enumerate(words):
        await asyncio.sleep(0.01)
        yield word if i == 0 else " " + word
    yield Final("stop", {"input_tokens": len(words), "output_tokens": len(words)})

nbstream.register_provider("echo", markdown_echo)
%load_ext nbstream"""),
    code(
        IGNORE
        + """%%llm -m echo -o doc
# Streaming Markdown

Blocks that are complete — this paragraph, once a blank line follows it — are rendered
**once** and never re-sent; only the open tail is re-rendered as tokens arrive.

| approach | bytes pushed |
|---|---|
| re-render everything per token | O(n²) |
| nbstream | O(n) |

```python
def fib(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a
```"""
    ),
    code("""print(doc.finish_reason, doc.model, doc.usage)
print(doc.splitlines()[0])"""),
    md("""
A provider that raises `nbstream.providers.ProviderError("one line for the user")` gets
`finish_reason == "error"` with that message — and the text streamed so far is kept. A
provider that simply stops without yielding `Final` is treated as a dropped connection:
truncation is never reported as success.
"""),
    code("""from nbstream.providers import ProviderError

async def flaky(request):
    yield "Half an answer"
    raise ProviderError("the GPU fell over; try again")

nbstream.register_provider("flaky", flaky)
r = await nbstream.ask("anything", model="flaky", display="text", cache="off")
print(repr(r.finish_reason), repr(str(r)), repr(r.error))"""),
]

CONVERSATIONS = [
    md("""
# Conversations, structured answers, and your data

Three things data scientists do after a first answer: give the model **their data**, **follow
up**, and ask for the answer **as data** rather than prose. Everything here runs on the embedded
local model (a small *base* model: the mechanics are what to look at, not the wisdom).
"""),
    code("""%load_ext nbstream
import pandas as pd
import nbstream"""),
    md("""
## Your data in a prompt

`{df}` does not paste pandas' console output: the DataFrame is rendered for a model — shape,
dtypes, and a compact Markdown table of the first and last rows — within a budget
(`--context-budget`, 4,000 characters per field by default), and the prompt says what was
left out. `--show-prompt` shows exactly what was sent (collapsed above the answer, and in the
saved notebook).
"""),
    code("""sales = pd.DataFrame({
    "region": ["north", "south", "east", "west"] * 50,
    "units": [(i * 37) % 101 for i in range(200)],
    "price": [round(9.5 + (i % 7) * 0.25, 2) for i in range(200)],
})
sales.shape"""),
    code(
        IGNORE
        + """%%llm -m local -o about --max-tokens 40 --context-budget 600 --show-prompt
Which column of this table holds money? {sales}"""
    ),
    code("""print(about.prompt)"""),
    md("""
## Follow up: conversations

`--chat` continues the notebook's default thread (`--chat NAME` a named one): the model
receives the earlier turns of that thread. **Re-running a cell replaces its own turn** (cells
are identified by the id JupyterLab sends with each execution): the model never sees a stale
copy of itself, and later turns are kept but marked stale until they are re-run. The history
is bounded by a token budget (`--chat-budget`), oldest turns first; the status line says how
many turns were sent.
"""),
    code(
        IGNORE
        + """%%llm -m local --chat -o first --max-tokens 30
What is a DataFrame in pandas?"""
    ),
    code(
        IGNORE
        + """%%llm -m local --chat -o second --max-tokens 30
How do I sort one by a column?"""
    ),
    code("""print(len(nbstream.thread()))  # system-free thread: 2 user + 2 assistant messages"""),
    code(IGNORE + "%llm thread"),
    code("""%llm reset
print(len(nbstream.thread()))"""),
    md("""
## Answers as data: structured output

`--schema NAME` names a pydantic model, a dataclass, a TypedDict, a JSON-schema dict or a type
such as `list[City]` in your namespace. Each provider uses its native mechanism (OpenAI's JSON
schema `response_format`, Anthropic's forced tool use, a llama.cpp grammar for the local model),
the view shows the object filling in while it streams, and the answer is validated:
`x.data` is the object, `x` is still the raw text.
"""),
    code("""from pydantic import BaseModel

class City(BaseModel):
    name: str
    population: int"""),
    code(
        IGNORE
        + """%%llm -m local --schema City -o city --max-tokens 40
The largest city of France, with its population."""
    ),
    code("""print(type(city.data).__name__, city.finish_reason)
print(sorted(city.data.model_dump()))"""),
    code(
        IGNORE
        + """%%llm -m local --schema list[City] -o cities --max-tokens 80
Three European capitals and their populations."""
    ),
    code("""frame = cities.to_pandas()
print(list(frame.columns), len(frame) >= 1)"""),
]

BATCH = [
    md("""
# One prompt over many rows: `nbstream.map`

Classify, extract, summarise: the same prompt over every row of a DataFrame. `nbstream.map`
fills the prompt per row (`{review}` is the row's `review` column), runs the rows a few at a
time, shows **one** progress view (done / failed / running, tokens/s, ETA, the answer streaming
in a small pane, a **Stop** button), and returns a new DataFrame with the answers next to the
input. Everything here runs on the embedded local model (a small *base* model: look at the
mechanics, not the wisdom).
"""),
    code("""%load_ext nbstream
import pandas as pd
import nbstream"""),
    code("""reviews = pd.DataFrame({
    "review": [
        "Great battery life and a sharp screen.",
        "Stopped working after two days.",
        "Does what it says, nothing more.",
        "The best purchase I made this year!",
    ],
    "stars": [5, 1, 3, 5],
})
reviews"""),
    md("""
## Map a prompt over a DataFrame

`concurrency` bounds the requests in flight (the local model answers one at a time anyway);
`rpm=` / `tpm=` cap requests and tokens per minute for a hosted API. A row that fails keeps its
error and the batch goes on (an `error` column appears). Finished rows are recorded in the
replay cache, so **re-running the cell after a Stop or a crash does not pay again** for them.
"""),
    code(
        IGNORE
        + """labels = await nbstream.map(
    reviews,
    "Review: {review}\\nIs this review positive or negative?",
    model="local", max_tokens=8, concurrency=2,
)"""
    ),
    code("""print(list(labels.columns), len(labels))
print(all(isinstance(answer, str) for answer in labels["answer"]))  # each one a Response"""),
    md("""
## Structured answers as columns

With `schema=`, each row's answer is validated and its fields become columns.
"""),
    code("""from pydantic import BaseModel

class Verdict(BaseModel):
    positive: bool"""),
    code(
        IGNORE
        + """verdicts = await nbstream.map(
    reviews, "Is this review positive? {review}", model="local", schema=Verdict, max_tokens=16,
)"""
    ),
    code("""print(len(verdicts) == len(reviews), "positive" in verdicts.columns)"""),
    md("""
## In the background

`background=True` returns a `Job` at once: the kernel stays free while the rows run, and
`await job` (or `job.wait()`) gives the results; `job.stop()` stops it. A single answer works the
same way with `%%llm --bg -o name` (or `ask(..., background=True)`): the cell returns at once,
the answer keeps streaming into its view, and `await name` waits for it.
"""),
    code(
        IGNORE
        + """job = await nbstream.map(
    reviews["review"], "Five words on: {review}", model="local", max_tokens=12,
    background=True,
)"""
    ),
    code("""1 + 1  # runs while the job does"""),
    code("""summaries = await job
print(type(summaries).__name__, len(summaries))"""),
    code(
        IGNORE
        + """%%llm --bg -m local -o later --max-tokens 20
Name three uses of a DataFrame."""
    ),
    code("""final = await later
print(type(final).__name__, final.finish_reason in {"stop", "length"})"""),
    md("""
## When one kernel is not enough

* `mode="batch"` sends the rows to the provider's own batch service (OpenAI Batch API,
  Anthropic Message Batches) through their SDKs: half the price, no rate limits to juggle,
  hours of work on the provider's side. It returns a `Job` at once whose view polls;
  `job.id` (e.g. `"openai:batch_abc123"`) is recorded in the history file, so a new kernel
  picks the results up with `nbstream.collect(job.id, reviews)`.
* Self-hosted scale-out is an OpenAI-compatible cluster (vLLM, several GPUs behind one URL):
  `nbstream.map(df, prompt, model="openai:my-model", base_url="http://vllm:8000/v1",
  concurrency=64)`.
"""),
]

TOOLS = [
    md("""
# Answers that act: tools

A model can call **your functions** while it answers: it asks for a call, nbstream checks the
arguments against the function's signature, runs it in this kernel (after you approve, unless
you marked it safe), sends the result back, and the answer goes on. Every call shows up as a
card in the live view and is recorded in the answer variable.

This notebook runs on the **embedded local model** (Gemma 3 270M, a small *base* model). It
calls tools through a llama.cpp grammar that makes it choose between a call and an answer, so
what it shows is the **mechanics, not judgement**: it calls a tool for most questions that
look like the tool's description, sometimes one that does not fit. Use `-m openai:…`,
`-m anthropic:…` or `-m gemini:…` for real work; everything below works the same there.
"""),
    code("""%load_ext nbstream
import json
from typing import Literal
import pandas as pd
import nbstream"""),
    code("""sales = pd.DataFrame({
    "region": ["north", "south", "east", "west"] * 50,
    "units": [(i * 37) % 101 for i in range(200)],
    "price": [round(9.5 + (i % 7) * 0.25, 2) for i in range(200)],
})
sales.shape"""),
    md("""
## A tool is a function

Its name, docstring and type hints become what the model sees (a JSON schema made by
pydantic, each parameter described by its docstring line); the arguments the model sends are
checked against them before the function runs. A `Literal` keeps the model to the regions
that exist (the local model's grammar cannot even write another one). `approve=False` says it may run
without asking: it only reads. `%llm tools NAMES` shows what a cell would offer.
"""),
    code("""@nbstream.tool(approve=False)  # it only reads the table: no need to ask
def region_sales(region: Literal["north", "south", "east", "west"]) -> dict:
    \"\"\"Units sold and revenue of one region of the sales table.

    Args:
        region: The region's name.
    \"\"\"
    rows = sales[sales["region"] == region]
    revenue = float((rows["units"] * rows["price"]).sum())
    return {"region": region, "units": int(rows["units"].sum()), "revenue": round(revenue, 2)}"""),
    code("%llm tools region_sales"),
    md("""
## Ask with `--tools`

Names are looked up in your namespace like `{fields}` (nothing is evaluated). The card shows
the call as its arguments stream in, then its result; the answer continues below it.
"""),
    code(
        IGNORE
        + """%%llm -m local --tools region_sales -o south
How many units did the south region sell?"""
    ),
    code("""for call in south.tool_calls:  # name, arguments, decision, result, error, elapsed, round
    print(call["name"], json.loads(call["arguments"]), call["error"])"""),
    code("""print(region_sales("south"))  # what the tool returned to the model"""),
    md("""
## Tools that show things

A tool runs on the kernel's thread, so what it prints or displays appears in the cell, like
this bar chart (SVG, no plotting library needed).
"""),
    code("""from IPython.display import SVG, display

@nbstream.tool(approve=False)
def plot_units(region: Literal["north", "south", "east", "west"]) -> str:
    \"\"\"Draw a bar chart of the units a region sold per price point.

    Args:
        region: The region's name.
    \"\"\"
    by_price = sales[sales["region"] == region].groupby("price")["units"].sum()
    top = max(by_price.max(), 1)
    bars = "".join(
        f'<rect x="{10 + 40 * i}" y="{110 - 100 * units / top:.0f}" width="30" '
        f'height="{100 * units / top:.0f}" fill="#4c78a8"/>'
        for i, units in enumerate(by_price)
    )
    display(SVG(f'<svg xmlns="http://www.w3.org/2000/svg" width="300" height="120">{bars}</svg>'))
    return f"a chart of {len(by_price)} bars for {region} is shown to the user\""""),
    code(
        IGNORE
        + """%%llm -m local --tools plot_units -o chart --max-tokens 40
Plot the units of the north region."""
    ),
    md("""
## Approval

A tool without `approve=False` waits for you: the live view shows a card with the function,
its arguments, and **Run** / **Skip** / **Always run in this kernel**; **Stop** while it waits
ends the answer. In terminal IPython you answer `y` / `n` / `a`. Where nobody can answer —
this notebook run headless by nbclient or nbval in CI — the call is **refused**: the model is
told, the status line says which call and how to allow it, and nothing runs. (Open this
notebook in JupyterLab or on Binder to click Run yourself.)
"""),
    code("""@nbstream.tool  # approval needed: it changes your data
def drop_region(region: Literal["north", "south", "east", "west"]) -> str:
    \"\"\"Remove every row of one region from the sales table.

    Args:
        region: The region's name.
    \"\"\"
    global sales
    sales = sales[sales["region"] != region]
    return f"{region} removed\""""),
    code(
        IGNORE
        + """%%llm -m local --tools drop_region -o dropped --max-tokens 40
Remove the west region from the sales table."""
    ),
    code("""print(len(sales))  # still 200 when run headless: nothing ran without your approval"""),
    md("""
## More

* `await nbstream.ask(prompt, tools=[region_sales])` and `nbstream.map(df, prompt,
  tools=[...])` take the functions themselves.
* `--max-tool-rounds` (default 10) caps the rounds of calls; `%config
  LLMMagics.auto_approve = True` lets every call run in this kernel.
* **MCP servers** join as tool sources with `pip install 'nbstream[mcp]'`: declare them in
  the standard `mcpServers` JSON and use `--mcp-config servers.json --tools mcp:NAME` (all of
  a server's tools) or `mcp:NAME/tool`. Their calls go through the same approval.
* The replay cache records every round **and** the tool results: re-running a cached answer
  never runs a tool again (CI replays this notebook that way).
"""),
]

SEEING = [
    md("""
# Answers that see: figures, cells, fixes, stale answers

The notebook is the context: a figure in a `{field}` is sent as an image, `--cells N` sends
what the last cells did, `%llm fix` explains the last error and proposes a corrected cell,
and `%llm stale` tells which answers read data that has changed since.

The text-only parts run on the **embedded local model** (a 270M *base* model: look at the
mechanics, not the wisdom). It cannot see images and does not write fixes, so the figure and
the fix sections were **recorded**: their answers came from nbstream's test server (scripted
replies, not a real model) and are replayed from `notebooks/.nbstream-cache` (`--cache
auto`). Point `-m` at OpenAI, Anthropic or Gemini with a key to ask a real model about your
own figures and errors.
"""),
    code("""%load_ext nbstream
import matplotlib.pyplot as plt
import pandas as pd
import nbstream"""),
    code("""sales = pd.DataFrame({
    "region": ["north", "south", "east", "west"],
    "units": [120, 340, 90, 210],
})
sales"""),
    md("""
## A figure in the prompt

`{fig}` sends the figure as a PNG image part, in its place in the prompt (drawn at the
provider's size limit); `{last_figure}` is the last image any cell displayed.
`--show-prompt` keeps a thumbnail of what was sent.
"""),
    code(
        IGNORE
        + """fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
ax.bar(sales["region"], sales["units"], color="#4c78a8")
ax.set_ylabel("units")
plt.show()"""
    ),
    code(
        IGNORE
        + """%%llm -m openai:gpt-4o-mini --cache auto --show-prompt -o seen
Which region sold most in this chart? {fig}"""
    ),
    code(
        """print("image" in seen.prompt)  # the prompt had an image (its label, in the text form)"""
    ),
    md("""
## The last cells as context: `--cells N`

The sources and text outputs of the last N executed cells go before the prompt, newest
last, within a budget (older cells are left out first, and the prompt says so).
`{In[3]}`, `{Out[3]}` and `{_}` are looked up like any field.
"""),
    code("""sales["units"].sum()"""),
    code(
        IGNORE
        + """%%llm -m local --cells 2 --max-tokens 40 -o about_cells
What did the last cell compute?"""
    ),
    code("""print(about_cells.prompt.splitlines()[0])"""),
    md("""
## `%llm fix`

After a cell fails, `%llm fix` sends the error, the traceback trimmed to the notebook's own
frames, the failing line with the type / shape / dtypes of the variables it uses, and the
cell's source. The corrected cell is shown as a diff and put into a new cell below — never
run (headless runs like this one do not add cells; it is in `_llm.python_code()`).
"""),
    code(RAISES + """total = sales["unit"].sum()  # a typo: the column is "units\""""),
    code(IGNORE + """%llm fix -m openai:gpt-4.1-mini --cache auto"""),
    code("""print("KeyError" in _llm.prompt, "sales: pandas" in _llm.prompt)"""),
    md("""
## Stale answers

Every answer records fingerprints of what it read. After the data changes, `x.stale()` says
which inputs changed and `%llm stale` lists the answers concerned; re-running a cell whose
inputs are unchanged with `--cache auto` is served from the cache ("inputs unchanged").
"""),
    code(
        IGNORE
        + """%%llm -m local --max-tokens 30 -o summary
In one sentence: {sales}"""
    ),
    code("""print(summary.stale())  # nothing changed yet"""),
    code("""sales = sales[sales["units"] > 100]  # the data changes
print(summary.stale())"""),
    code("""%llm stale"""),
]

NOTEBOOK_SPECS = {
    "01-quickstart.ipynb": QUICKSTART,
    "02-providers.ipynb": PROVIDERS,
    "03-custom-provider.ipynb": CUSTOM_PROVIDER,
    "04-conversations-and-data.ipynb": CONVERSATIONS,
    "05-batch.ipynb": BATCH,
    "06-tools.ipynb": TOOLS,
    "07-notebook-context.ipynb": SEEING,
}


@contextlib.contextmanager
def recording_server(answers: dict[str, str]) -> Iterator[None]:
    """While a notebook with recorded answers runs: the test server (tests/) answers those
    models, the OpenAI SDK pointed at it with a placeholder key."""
    if not answers:
        yield
        return
    sys.path.insert(0, str(ROOT / "tests"))
    from fake_llm_server import FakeLLMServer

    server = FakeLLMServer().start()
    saved = {k: os.environ.get(k) for k in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    try:
        for model, text in answers.items():
            server.script(name=model, text=text, token_size=6)
        os.environ.update(OPENAI_API_KEY="sk-recording", OPENAI_BASE_URL=server.openai_base_url)
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


def build(name: str, cells: list[nbformat.NotebookNode], run: bool) -> None:
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    if run:
        # Record every answer in notebooks/.nbstream-cache (committed): CI replays them with
        # NBSTREAM_CACHE=replay, so its nbval run is deterministic and sends nothing.
        os.environ.setdefault("NBSTREAM_CACHE", "auto")
        with recording_server(RECORDED_ANSWERS.get(name, {})):
            NotebookClient(
                nb,
                timeout=600,
                kernel_name="python3",
                resources={"metadata": {"path": str(NOTEBOOKS)}},
            ).execute()
        nb.metadata.pop("widgets", None)
    path = NOTEBOOKS / name
    nbformat.write(nb, path)
    print(f"wrote {path.relative_to(ROOT)}")


def main(argv: list[str]) -> None:
    NOTEBOOKS.mkdir(exist_ok=True)
    run = "--no-run" not in argv
    only = [a for a in argv if a.endswith(".ipynb")]
    for name, cells in NOTEBOOK_SPECS.items():
        if not only or name in only:
            build(name, cells, run)


if __name__ == "__main__":
    main(sys.argv[1:])
