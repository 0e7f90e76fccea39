"""``%%llm`` (cell) and ``%llm`` (line): the notebook front door.

In a kernel, an input transformer rewrites a ``%%llm`` cell into one line,
``await nbstream.magics.run_cell(line, body)``, so IPython runs the cell as a coroutine
and the kernel can deliver the Stop button's click while the answer streams (NOTES §1).
Everywhere else (terminal IPython, ``run_cell_magic`` from code) the magic runs blocking
and Ctrl-C stops it.
"""

from __future__ import annotations

import os
from typing import Any

from IPython.core import magic_arguments
from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from traitlets import Enum, Float, Integer, Unicode

from .kernel import in_kernel, ipykernel_version, needs_pump
from .prompt import interpolate
from .providers import ModelIdError, parse_model_id
from .response import Response
from .run import DISPLAY_MODES, Options, make_stream, resolve_model, run_awaited, run_blocking

_instance: LLMMagics | None = None


@magics_class
class LLMMagics(Magics):
    """Configuration (``%config LLMMagics.<name> = value``) and the ``llm`` magics."""

    model = Unicode("", help="Default model id, PROVIDER:NAME (overrides $NBSTREAM_MODEL).").tag(
        config=True
    )
    system = Unicode("", help="Default system prompt.").tag(config=True)
    temperature = Float(None, allow_none=True, help="Default temperature.").tag(config=True)
    max_tokens = Integer(None, allow_none=True, help="Default answer length cap.").tag(config=True)
    timeout = Float(60.0, help="Idle timeout: seconds without a token before giving up.").tag(
        config=True
    )
    display = Enum(
        DISPLAY_MODES, "auto", help="auto (widget in notebooks, else text), widget, text, none."
    ).tag(config=True)
    throttle = Float(0.05, help="Seconds between display updates (at most ~20/s).").tag(config=True)

    @magic_arguments.magic_arguments()
    @magic_arguments.argument(
        "-m",
        "--model",
        metavar="PROVIDER:NAME",
        help="openai:gpt-4o-mini, anthropic:claude-sonnet-4-5, ollama:llama3.2, local, ... "
        "Default: %%config LLMMagics.model, then $NBSTREAM_MODEL, then a provider whose API "
        "key is set, then the embedded local model.",
    )
    @magic_arguments.argument(
        "-o",
        "--out",
        metavar="NAME",
        help="Also store the Response in this variable (it is always in _llm).",
    )
    @magic_arguments.argument("-s", "--system", metavar="TEXT", help="System prompt.")
    @magic_arguments.argument(
        "-t", "--temperature", type=float, metavar="T", help="Sampling temperature."
    )
    @magic_arguments.argument(
        "--max-tokens", type=int, metavar="N", help="Cap the answer at N tokens."
    )
    @magic_arguments.argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="Idle timeout: give up after this long without a token (default 60).",
    )
    @magic_arguments.argument(
        "--base-url",
        metavar="URL",
        help="Server URL for OpenAI-compatible servers (vLLM, llama.cpp, LM Studio) or proxies.",
    )
    @magic_arguments.argument(
        "--raw",
        action="store_true",
        help="Send the cell as written: no {variable} interpolation.",
    )
    @line_cell_magic
    def llm(self, line: str, cell: str | None = None) -> None:
        """Stream an LLM answer into the notebook as Markdown, token by token.

        Usage::

            %%llm [-m PROVIDER:NAME] [-o NAME] [options]
            Your prompt. {expressions} are filled in from your variables.

        The answer renders live with a status line and a Stop button. When it ends, it
        stays in the output as static HTML (visible in saved notebooks, nbconvert and
        GitHub), and the full text is stored as an ``nbstream.Response`` (a ``str`` with
        ``.finish_reason``, ``.error``, ``.model``, ``.usage``, ``.ttft``, ``.elapsed``) in
        ``_llm`` and in the ``-o`` variable — also when stopped or failed, with the
        partial text.

        Stop: the button closes the upstream connection at once; the cell ends normally.
        Kernel interrupt (■): same cleanup, the partial answer is stored, then the cell
        raises KeyboardInterrupt so "Run All" halts. In terminal IPython, Ctrl-C stops.

        Line magic: ``%llm`` or ``%llm help`` shows this help, ``%llm config`` the
        effective settings.
        """
        if cell is None:
            self._line_magic(line)
            return
        stream, out = self._prepare(line, cell)
        response = run_blocking(stream)
        self._finish(stream, response, out)

    async def run_cell(self, line: str, cell: str) -> None:
        """The awaited twin of the cell magic (what the input transformer calls)."""
        stream, out = self._prepare(line, cell)
        response = await run_awaited(stream)
        self._finish(stream, response, out)

    # -- helpers -------------------------------------------------------------------------

    def _prepare(self, line: str, cell: str) -> tuple[Any, str | None]:
        args = magic_arguments.parse_argstring(self.llm, line)
        if args.out is not None and not args.out.isidentifier():
            raise UsageError(f"-o needs a Python variable name, got {args.out!r}")
        if args.timeout is not None and args.timeout <= 0:
            raise UsageError(f"--timeout must be a positive number of seconds, got {args.timeout}")
        if args.max_tokens is not None and args.max_tokens <= 0:
            raise UsageError(f"--max-tokens must be a positive integer, got {args.max_tokens}")
        prompt = cell.strip()
        if not prompt:
            raise UsageError("the prompt is empty: write it in the cell below the %%llm line")
        if not args.raw:
            prompt = interpolate(prompt, self.shell.user_ns)
        options = Options(
            model=args.model,
            system=args.system if args.system is not None else (self.system or None),
            temperature=args.temperature if args.temperature is not None else self.temperature,
            max_tokens=args.max_tokens if args.max_tokens is not None else self.max_tokens,
            timeout=args.timeout if args.timeout is not None else self.timeout,
            base_url=args.base_url,
            display=self.display,
            throttle=self.throttle,
        )
        try:
            stream = make_stream(prompt, options, configured_model=self.model or None)
        except ModelIdError as exc:
            raise UsageError(str(exc)) from None
        return stream, args.out

    def _finish(self, stream: Any, response: Response, out: str | None) -> None:
        self.shell.user_ns["_llm"] = response
        if out:
            self.shell.user_ns[out] = response
        if stream.interrupted and in_kernel(self.shell):
            raise KeyboardInterrupt

    def _line_magic(self, line: str) -> None:
        word = line.strip()
        if word in ("", "help", "-h", "--help"):
            print(self.llm.__doc__)
            return
        if word == "config":
            print(self.config_report())
            return
        raise UsageError(
            f"unknown %llm command {word!r}: use %llm help, %llm config, or %%llm as a cell "
            "magic with the prompt in the cell"
        )

    def config_report(self) -> str:
        model_id, note = resolve_model(None, self.model or None)
        source = (
            "%config LLMMagics.model"
            if self.model
            else "$NBSTREAM_MODEL"
            if os.environ.get("NBSTREAM_MODEL")
            else (note or "")
        )
        try:
            provider, name = parse_model_id(model_id)
            effective = f"{provider}:{name}"
        except ModelIdError as exc:
            effective = f"{model_id}  (invalid: {exc})"
        rows = [
            ("model", f"{effective}  ({source})"),
            ("system", self.system or "(none)"),
            ("temperature", "provider default" if self.temperature is None else self.temperature),
            ("max_tokens", "provider default" if self.max_tokens is None else self.max_tokens),
            ("timeout", f"{self.timeout:g} s idle"),
            ("display", self.display),
            ("throttle", f"{self.throttle:g} s"),
        ]
        for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
            rows.append((var, "set" if os.environ.get(var) else "not set"))
        for var in ("OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "OLLAMA_HOST"):
            if os.environ.get(var):
                rows.append((var, os.environ[var]))
        version = ".".join(map(str, ipykernel_version())) or "none"
        pump = " (pumping widget messages while streaming)" if in_kernel() and needs_pump() else ""
        rows.append(("ipykernel", version + pump))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


# -- the input transformer -----------------------------------------------------------------


def rewrite_llm_cell(lines: list[str]) -> list[str]:
    """``%%llm ARGS\\nbody`` → ``await nbstream.magics.run_cell('ARGS', 'body')``."""
    if not lines:
        return lines
    first = lines[0].rstrip("\r\n")
    if not (first == "%%llm" or first.startswith(("%%llm ", "%%llm\t"))):
        return lines
    if first.rstrip().endswith("?"):  # %%llm? is help
        return lines
    line = first[len("%%llm") :].strip()
    body = "".join(lines[1:])
    return [f"await __import__('nbstream.magics').magics.run_cell({line!r}, {body!r})\n"]


async def run_cell(line: str, cell: str) -> None:
    if _instance is None:
        raise UsageError("nbstream is not loaded: run %load_ext nbstream")
    await _instance.run_cell(line, cell)


def load(shell: Any) -> LLMMagics:
    global _instance
    magics = LLMMagics(shell=shell)
    shell.register_magics(magics)
    if magics not in shell.configurables:
        shell.configurables.append(magics)
    if in_kernel(shell) and rewrite_llm_cell not in shell.input_transformers_cleanup:
        shell.input_transformers_cleanup.append(rewrite_llm_cell)
    _instance = magics
    return magics


def unload(shell: Any) -> None:
    global _instance
    if rewrite_llm_cell in shell.input_transformers_cleanup:
        shell.input_transformers_cleanup.remove(rewrite_llm_cell)
    if _instance is not None and _instance in shell.configurables:
        shell.configurables.remove(_instance)
    _instance = None
