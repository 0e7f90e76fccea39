"""The kernel path: a ``%%llm`` cell becomes one awaited call.

A widget click reaches the kernel only while the running cell *awaits*
(``docs/design.md#stop-while-a-cell-runs``), and a cell magic cannot make its cell async.
So in a kernel, :func:`rewrite_llm_cell` (an IPython input transformer) turns::

    %%llm -m openai:gpt-4o-mini -o answer
    Explain {topic}.

into ``await _nbstream_run_cell('-m openai:gpt-4o-mini -o answer', 'Explain {topic}.\\n')``
and IPython runs the cell as a coroutine. ``_nbstream_run_cell`` is
:func:`nbstream.notebook.magics.run_cell`, put in the user namespace (hidden from ``%who``) by
:func:`install`.

Only the cell the kernel was asked to run is rewritten. The body of ``%%time``,
``%%timeit``, ``%%capture`` or ``get_ipython().run_cell(...)`` is compiled as ordinary
(synchronous) code, where ``await`` is a syntax error; there, and with ``%autoawait off``,
the cell is left alone and the ``%%llm`` magic runs blocking on a worker thread: the answer
streams, the variable is bound, interrupt stops it, but the Stop button cannot be heard.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nbstream.kernel import get_shell

RUNNER = "_nbstream_run_cell"
"""The name the rewritten cell calls (see :func:`install`)."""

MAGIC = "%%llm"


def rewrite_llm_cell(lines: list[str]) -> list[str]:
    """``%%llm ARGS\\nbody`` → ``await _nbstream_run_cell('ARGS', 'body')``, for the
    kernel's own cell only (see the module docstring)."""
    if not lines:
        return lines
    first = lines[0].rstrip("\r\n")
    fix = _fix_line(lines)
    if fix is not None and _is_the_kernels_cell(lines):  # `%llm fix ARGS`: awaited too
        return [f"await {RUNNER}({fix!r}, '')\n"]
    if not (first == MAGIC or first.startswith((MAGIC + " ", MAGIC + "\t"))):
        return lines
    if first.rstrip().endswith("?"):  # %%llm? is help
        return lines
    if not _is_the_kernels_cell(lines):
        return lines
    line = first[len(MAGIC) :].strip()
    body = "".join(lines[1:])
    return [f"await {RUNNER}({line!r}, {body!r})\n"]


def _fix_line(lines: list[str]) -> str | None:
    """``--fix ARGS`` when the cell is the one line ``%llm fix ARGS``, else ``None``."""
    text = "".join(lines).strip()
    if "\n" in text:
        return None
    words = text.split(maxsplit=2)
    if words[:2] != ["%llm", "fix"]:
        return None
    return ("--fix " + (words[2] if len(words) > 2 else "")).strip()


def _is_the_kernels_cell(lines: list[str]) -> bool:
    """True when ``lines`` is the cell of the current execute request (not the body of
    another cell magic) and top-level ``await`` is on."""

    shell = get_shell()
    if shell is None:
        return True
    if not getattr(shell, "autoawait", True):
        return False
    code = _request_code(shell)
    if code is None:
        return True  # nothing to compare with: the cell is the request's, as before
    return code.lstrip().startswith(lines[0].lstrip().rstrip("\r\n"))


def _request_code(shell: Any) -> str | None:
    """The code of the execute request being handled, if the kernel says."""
    kernel = getattr(shell, "kernel", None)
    get_parent = getattr(kernel, "get_parent", None)
    if get_parent is None:
        return None
    try:
        parent = get_parent()
    except Exception:
        return None
    if not isinstance(parent, dict):
        return None
    if parent.get("header", {}).get("msg_type") != "execute_request":
        return None
    code = parent.get("content", {}).get("code")
    return code if isinstance(code, str) else None


def install(shell: Any, runner: Callable[..., Any]) -> None:
    """Register the transformer and put ``runner`` in the user namespace as :data:`RUNNER`."""
    shell.user_ns[RUNNER] = runner
    shell.user_ns_hidden[RUNNER] = runner
    if rewrite_llm_cell not in shell.input_transformers_cleanup:
        shell.input_transformers_cleanup.append(rewrite_llm_cell)


def uninstall(shell: Any) -> None:
    if rewrite_llm_cell in shell.input_transformers_cleanup:
        shell.input_transformers_cleanup.remove(rewrite_llm_cell)
    shell.user_ns.pop(RUNNER, None)
    shell.user_ns_hidden.pop(RUNNER, None)
