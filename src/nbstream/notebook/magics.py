"""``%%llm`` (cell) and ``%llm`` (line): the notebook front door.

The options are not declared here: the flags and the ``%config LLMMagics.*`` traits are
derived from :mod:`nbstream.settings`. This module parses the option line, words errors
as flags, binds the variables, and hands the cell to :mod:`nbstream.run`. In a kernel the
cell arrives through :mod:`nbstream.notebook.transform` (awaited, so Stop works); everywhere else
it runs blocking and Ctrl-C / interrupt stops it. ``--bg`` (how the cell runs, not an
option of the answer, so not a setting) hands the stream to :mod:`nbstream.background`
instead and returns once its view is shown.
"""

from __future__ import annotations

import builtins
import collections
import keyword
import os
import shlex
from collections.abc import Mapping
from typing import Any

import traitlets
from IPython.core import magic_arguments
from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand

from nbstream import background, conversation, settings
from nbstream.engine import Stream
from nbstream.errors import ModelIdError, SchemaError, SettingsError
from nbstream.kernel import in_kernel, ipykernel_version, needs_pump
from nbstream.notebook import transform, watch
from nbstream.notebook.cells import to_cell
from nbstream.notebook.fix import NOTHING_TO_FIX, failing_cell, fix_prompt, show_fix
from nbstream.notebook.history import history_command
from nbstream.notebook.stale import stale_report
from nbstream.pricing import cost_report
from nbstream.prompts.cells import last_image
from nbstream.prompts.interpolate import Composed, compose
from nbstream.prompts.media import MediaError
from nbstream.providers import parse_model_id, registered
from nbstream.providers.common import mask_url
from nbstream.response import Response
from nbstream.run import make_stream, resolve_model, run_awaited, run_blocking, store
from nbstream.store import default_path
from nbstream.tools import ToolError, marked_tools, resolve_tools, tools_report

_instance: LLMMagics | None = None

RESERVED_NAMES = frozenset(
    {
        "In",
        "Out",
        "_",
        "__",
        "___",
        "_i",
        "_ii",
        "_iii",
        "_oh",
        "_dh",
        "_ih",
        "exit",
        "quit",
        "get_ipython",
        "_llm",
        transform.RUNNER,
    }
)


def describe_option(name: str) -> str:
    """How ``%%llm`` names an option in messages: its flag (and its ``%config`` trait)."""
    return f"{settings.flag_of(name)} (or %config LLMMagics.{name})"


_ConfigTraits: type[Magics] = type("_ConfigTraits", (Magics,), settings.config_traits())
"""``Magics`` plus one ``%config`` trait per option of :class:`nbstream.settings.Settings`."""


@magics_class
class LLMMagics(_ConfigTraits):  # type: ignore[misc,valid-type]
    """Configuration (``%config LLMMagics.<name> = value``) and the ``llm`` magics."""

    @traitlets.validate(*settings.NAMES)
    def _check(self, proposal: Any) -> Any:
        try:
            return settings.check(proposal["trait"].name, proposal["value"])
        except SettingsError as exc:
            raise traitlets.TraitError(str(exc)) from None

    def configured(self) -> dict[str, Any]:
        """The options set with ``%config`` (``None`` = not set)."""
        return {name: getattr(self, name) for name in settings.NAMES}

    @magic_arguments.magic_arguments()
    @settings.add_magic_arguments
    @magic_arguments.argument(
        "-o",
        "--out",
        metavar="NAME",
        help="Also store the Response in this variable (it is always in _llm).",
    )
    @magic_arguments.argument(
        "--raw",
        action="store_true",
        help="Send the cell as written: no {variable} interpolation.",
    )
    @magic_arguments.argument(
        "--to-cell",
        action="store_true",
        help="When the answer ends, put its Python code into a new cell below "
        "(also: %%llm to-cell, for the last answer).",
    )
    @magic_arguments.argument(
        "--fix",
        action="store_true",
        help="Ask why the last cell failed (its error, traceback, failing line and the "
        "variables it uses, its source) and for a corrected cell, shown as a diff and put "
        "into a new cell below, never run. The cell's text, if any, is added to the question "
        "(also: %%llm fix [options]).",
    )
    @magic_arguments.argument(
        "--bg",
        action="store_true",
        help="Background: the cell returns at once and the answer streams on while other "
        "cells run; _llm (and -o NAME) hold an nbstream.Pending until it ends, then the "
        "Response (see BACKGROUND).",
    )
    @no_var_expand
    @line_cell_magic
    def llm(self, line: str, cell: str | None = None) -> None:
        """Stream an LLM answer into the notebook as Markdown, token by token.

        Usage::

            %%llm [-m PROVIDER:NAME] [-o NAME] [--bg] [options]
            Your prompt. {name}, {name.attr}, {name[0]} are filled in from your variables.

        The answer renders live with a status line and a Stop button. When it ends, it
        stays in the output as static HTML (visible in saved notebooks, nbconvert and
        GitHub), and the full text is stored as an ``nbstream.Response`` (a ``str`` with
        ``.finish_reason``, ``.error``, ``.model``, ``.usage``, ``.ttft``, ``.elapsed``) in
        ``_llm`` and in the ``-o`` variable — also when stopped or failed, with the
        partial text.

        Stop: the button closes the upstream connection at once; the cell ends normally.
        Kernel interrupt (■): same cleanup, the partial answer is stored, then the cell
        raises KeyboardInterrupt so "Run All" halts. In terminal IPython, Ctrl-C stops.

        BACKGROUND (``--bg``): the cell returns as soon as the live view is shown; the
        answer keeps streaming into it while other cells run, and several background
        answers may stream at once. ``_llm`` and the ``-o`` variable hold an
        ``nbstream.Pending`` meanwhile: ``x.text`` (the text so far), ``x.state``,
        ``x.done``, ``x.stop()`` (what the view's Stop does), ``x.wait()`` or ``await x``
        (wait for the end, return the Response). When the answer ends, ``_llm`` and the
        ``-o`` variable are rebound to the final Response, unless you reassigned them
        meanwhile: from then on ``x`` is the Response itself. Each view's Stop stops only
        its own answer; a kernel interrupt (■) interrupts the running cell only,
        background answers go on. A cell
        that runs after it does not wait for it: ``await x`` there if it needs the answer.
        ``--to-cell`` needs the finished answer: use ``%llm to-cell`` once it ended. In
        terminal IPython a background answer shows nothing while it streams (unless
        ``--display`` is set): ``x.wait()`` waits for it.

        Option values are quoted as in a shell (``-s "Be brief."``). Every option also
        has a ``%config LLMMagics.<name>`` default and an ``$NBSTREAM_<NAME>`` variable;
        a flag wins over %config, which wins over the environment.

        Line magic: ``%llm`` or ``%llm help`` shows this help, ``%llm config`` the
        effective settings, ``%llm to-cell`` puts the last answer's Python code into a new
        cell below, ``%llm history [N] [--search TEXT]`` lists recorded answers,
        ``%llm cost`` this session's tokens and cost by model, ``%llm thread [NAME]`` a
        conversation (``--chat``) and what the next prompt would send, ``%llm reset
        [NAME]`` forgets it, ``%llm tools [NAMES]`` shows functions as a model would see
        them as tools (the named ones, else those marked with ``@nbstream.tool``),
        ``%llm fix [options]`` asks why the last cell failed and puts a corrected cell
        below, ``%llm stale`` lists the answers whose inputs have changed since.
        """
        if cell is None:
            self._line_magic(line)
            return
        stream, args = self._prepare(line, cell, awaited=False)
        if args.bg:
            background.start(stream, names=("_llm", args.out)).wait_shown()
            return
        response = run_blocking(stream)
        self._finish(stream, response, args)

    async def run_cell(self, line: str, cell: str) -> None:
        """The awaited twin of the cell magic (what the rewritten cell calls)."""
        stream, args = self._prepare(line, cell, awaited=True)
        if args.bg:
            await background.start(stream, names=("_llm", args.out)).shown()
            return
        response = await run_awaited(stream)
        self._finish(stream, response, args)

    # -- helpers -------------------------------------------------------------------------

    def parse_line(self, line: str) -> Any:
        """Parse the option line as a shell would (quotes group and are removed)."""
        try:
            argv = shlex.split(line)
        except ValueError as exc:
            raise UsageError(
                f"cannot parse the %%llm line ({exc}): {line.strip()!r} — close the quote, "
                "or escape a literal quote with a backslash"
            ) from None
        return self.llm.parser.parse_args(join_type_expressions(argv))

    def _prepare(self, line: str, cell: str, *, awaited: bool) -> tuple[Stream, Any]:
        args = self.parse_line(line)
        if args.out is not None:
            check_variable_name(args.out)
        if args.bg and args.fix:
            raise UsageError("--bg cannot be combined with --fix: the fix needs the ended answer")
        if args.bg and args.to_cell:
            raise UsageError(
                "--bg cannot be combined with --to-cell: the code goes into a cell when the "
                "answer has ended, and a background cell has already returned; run "
                "%llm to-cell once it ended"
            )
        template = cell.strip()
        if args.fix:
            failed = failing_cell()
            if failed is None:
                raise UsageError(NOTHING_TO_FIX)
            args.failed = failed
            template, args.raw = fix_prompt(failed, template), True
        if not template:
            raise UsageError("the prompt is empty: write it in the cell below the %%llm line")
        namespace = prompt_namespace(self.shell.user_ns, template)

        def prompt(options: settings.Settings) -> str | Composed:
            if args.raw:
                return template
            return compose(template, namespace, budget=options.context_budget)

        call = {name: getattr(args, name) for name in settings.NAMES}
        call = {k: (settings.UNSET if v is None else v) for k, v in call.items()}
        try:
            stream = make_stream(
                prompt,
                call,
                describe_option=describe_option,
                awaited=awaited or args.bg,  # a background view's Stop is heard between cells
                namespace=namespace,
                defaults=background.defaults() if args.bg else None,
            )
        except SettingsError as exc:
            raise UsageError(exc.describe(settings.flag_of)) from None
        except ModelIdError as exc:
            raise UsageError(str(exc)) from None
        except SchemaError as exc:
            raise UsageError(f"--schema: {exc}") from None
        except ToolError as exc:
            raise UsageError(f"--tools: {exc}") from None
        except MediaError as exc:
            raise UsageError(str(exc)) from None
        return stream, args

    def _finish(self, stream: Stream, response: Response, args: Any) -> None:
        store(response, args.out)
        if stream.interrupted and in_kernel(self.shell):
            raise KeyboardInterrupt
        if args.to_cell:
            print(to_cell(self.shell, response))
        if args.fix and response.text:
            print(show_fix(self.shell, args.failed, response))

    def _line_magic(self, line: str) -> None:
        word = line.strip()
        if word in ("", "help", "-h", "--help"):
            print(self.llm.__doc__)
            return
        if word == "config":
            print(self.config_report())
            return
        if command_of(word) == "fix":
            stream, args = self._prepare(f"--fix {word[3:]}", "", awaited=False)
            self._finish(stream, run_blocking(stream), args)
            return
        if word == "to-cell":
            last = self.shell.user_ns.get("_llm")
            if isinstance(last, background.Pending):
                if last.response is None:
                    raise UsageError(
                        "the last answer is still streaming in the background (--bg): "
                        "wait for it (await _llm), then run %llm to-cell"
                    )
                last = last.response
            print(to_cell(self.shell, last))
            return
        command, _, rest = word.partition(" ")
        if command == "history":
            try:
                print(history_command(rest))
            except (ValueError, SettingsError) as exc:
                raise UsageError(str(exc)) from None
            return
        if word == "stale":
            print(stale_report(self.shell.user_ns))
            return
        if word == "cost":
            print(cost_report())
            return
        if command in ("thread", "reset"):
            print(thread_command(command, rest))
            return
        if command == "tools":
            namespace = self.shell.user_ns
            config = settings.resolve({}, self.configured()).mcp_config
            try:
                if rest.strip():
                    found = resolve_tools(rest, namespace, mcp_config=config)
                else:
                    found = marked_tools(namespace)
            except ToolError as exc:
                raise UsageError(str(exc)) from None
            print(tools_report(found))
            return
        raise UsageError(
            f"unknown %llm command {word!r}: use %llm help, %llm config, %llm to-cell, "
            "%llm history, %llm cost, %llm thread, %llm reset, %llm tools, %llm fix, "
            "%llm stale, or %%llm as a cell magic with the prompt in the cell"
        )

    def config_report(self) -> str:
        """The effective settings and where each comes from; keys only as set / not set."""
        configured = self.configured()
        env = settings.from_environment()
        try:
            effective = settings.resolve({}, configured)
        except SettingsError as exc:
            return f"invalid settings: {exc}"
        rows: list[tuple[str, str]] = []
        model_id, note = resolve_model(effective)
        try:
            provider, name = parse_model_id(model_id)
            model = f"{provider}:{name}"
        except ModelIdError as exc:
            model = f"{model_id}  (invalid: {exc})"
        for option in settings.NAMES:
            value = getattr(effective, option)
            if option == "model":
                value = model
            if configured.get(option) is not None:
                source = f"%config LLMMagics.{option}"
            elif option in env:
                source = f"${settings.env_var(option)}"
            elif option == "model":
                source = note or "default"
            else:
                source = "default"
            shown = "(none)" if value is None else str(value)
            if option == "history" and value is None:
                shown = str(default_path())
            rows.append((option, f"{mask_url(shown)}  ({source})"))
        declared = [caps for _, caps in registered()]
        for var in dict.fromkeys(v for caps in declared for v in caps.key_variables):
            rows.append((var, "set" if os.environ.get(var) else "not set"))
        for var in dict.fromkeys(v for caps in declared for v in caps.url_variables):
            if os.environ.get(var):
                rows.append((var, mask_url(os.environ[var])))
        version = ".".join(map(str, ipykernel_version())) or "none"
        pump = " (pumping widget messages while streaming)" if in_kernel() and needs_pump() else ""
        rows.append(("ipykernel", version + pump))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def check_variable_name(name: str) -> None:
    """Refuse ``-o`` names that are not variables or would shadow Python or IPython."""
    if not name.isidentifier():
        raise UsageError(f"-o needs a Python variable name, got {name!r}")
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        raise UsageError(f"-o {name}: {name!r} is a Python keyword; choose another name")
    if name in RESERVED_NAMES:
        raise UsageError(f"-o {name}: IPython uses {name!r} itself; choose another name")
    if hasattr(builtins, name):
        raise UsageError(f"-o {name}: that would hide the built-in {name}(); choose another name")


async def run_cell(line: str, cell: str) -> None:
    """What a rewritten ``%%llm`` cell awaits (see :mod:`nbstream.notebook.transform`)."""
    if _instance is None:
        raise UsageError("nbstream is not loaded: run %load_ext nbstream")
    await _instance.run_cell(line, cell)


def instance() -> LLMMagics | None:
    """The loaded magics (they hold the ``%config`` values), or ``None``."""
    return _instance


def load(shell: Any) -> LLMMagics:
    global _instance
    magics = LLMMagics(shell=shell)
    shell.register_magics(magics)
    if magics not in shell.configurables:
        shell.configurables.append(magics)
    if in_kernel(shell):
        transform.install(shell, run_cell)
    watch.install(shell)
    _instance = magics
    settings.use_configured(magics.configured)  # %config reaches every layer through settings
    return magics


def unload(shell: Any) -> None:
    global _instance
    transform.uninstall(shell)
    watch.uninstall()
    if _instance is not None and _instance in shell.configurables:
        shell.configurables.remove(_instance)
    _instance = None
    settings.use_configured(None)


def command_of(word: str) -> str:
    return word.split(maxsplit=1)[0] if word.strip() else ""


def prompt_namespace(user_ns: dict[str, Any], template: str) -> Mapping[str, Any]:
    """Where a cell's ``{fields}`` are looked up: the user's namespace, and
    ``{last_figure}`` (the most recent image a cell displayed) unless the user has a
    variable of that name."""
    if "{last_figure}" in template and "last_figure" not in user_ns:
        image = last_image()
        if image is None:
            raise UsageError(
                "{last_figure}: no cell of this kernel has displayed an image yet (since "
                "%load_ext nbstream): show the figure first, or name it ({fig})"
            )
        return collections.ChainMap(user_ns, {"last_figure": image})
    return user_ns


def thread_command(command: str, rest: str) -> str:
    """``%llm thread [NAME]`` / ``%llm reset [NAME | --all]``: the report, as text. A name
    with spaces is quoted (``%llm thread "data cleaning"``); a word starting with ``-``
    is a flag, never a thread name."""

    usage = f"%llm {command} [NAME]" + (" | --all" if command == "reset" else "")
    try:
        words = shlex.split(rest)
    except ValueError as exc:
        raise UsageError(f'{usage}: {exc} (quote a name with spaces: "my thread")') from None
    flags = [w for w in words if w.startswith("-")]
    names = [w for w in words if not w.startswith("-")]
    unknown = [f for f in flags if not (command == "reset" and f == "--all")]
    if unknown:
        raise UsageError(f"{usage}: unknown flag {unknown[0]!r}")
    if len(names) > 1 or (flags and names):
        raise UsageError(
            f"{usage}: takes one thread name, got {rest.strip()!r} "
            '(quote a name with spaces: "my thread")'
        )
    name = names[0] if names else conversation.DEFAULT_THREAD
    if command == "thread":
        return conversation.format_thread(name)
    if flags:
        gone = conversation.reset(all_threads=True)
        return f"All threads cleared ({len(gone)}: {', '.join(map(repr, gone)) or 'none'})."
    conversation.reset(name)
    return f"Thread {name!r} cleared."


TYPE_OPTIONS = ("--schema",)
"""Options whose value is a type expression: ``--schema dict[str, float]`` and
``--schema Row | None`` work unquoted (the words are joined back)."""


def _open_brackets(text: str) -> int:
    return sum(text.count(c) for c in "[({") - sum(text.count(c) for c in "])}")


def join_type_expressions(argv: list[str]) -> list[str]:
    """Rejoin the words of a type expression that the shell split at its spaces: after
    ``--schema`` the words go together while a bracket is open or a ``|`` joins them."""
    out: list[str] = []
    words = iter(argv)
    for word in words:
        name, eq, value = word.partition("=")
        if name not in TYPE_OPTIONS:
            out.append(word)
            continue
        if not eq:
            out.append(word)
            following = next(words, None)
            if following is None:
                break
            value = following
        rest = list(words)
        taken = 0
        while taken < len(rest) and (
            _open_brackets(value) > 0 or value.rstrip().endswith("|") or rest[taken].startswith("|")
        ):
            value += " " + rest[taken]
            taken += 1
        out.append(f"{name}={value}" if eq else value)
        out.extend(join_type_expressions(rest[taken:]))
        break
    return out
