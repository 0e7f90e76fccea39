"""``%llm fix`` and ``%%llm --fix``: ask the model why the last cell failed and for a corrected
cell; show the correction as a diff and put it into a new cell below (never run).

What is sent (:func:`fix_prompt`): the exception's type and message, the traceback trimmed to
the notebook's own frames (library frames counted, the innermost kept), the failing line and
the variables it uses described by type / shape / dtypes (never their data), and the failing
cell's source; with ``%%llm --fix`` the cell's own words come first.
"""

from __future__ import annotations

import difflib
import html
from typing import Any

from nbstream.prompts.cells import CellRecord, last_error
from nbstream.render.markdown import PYTHON, code_blocks

NOTHING_TO_FIX = (
    "Nothing to fix: the last cell ran without an error. Run the failing cell, then %llm fix "
    "(or %%llm --fix with your own words)."
)

FIX_INSTRUCTIONS = (
    "A cell of my Jupyter notebook failed. Explain the cause in two or three sentences, then "
    "give the whole corrected cell in one ```python block, ready to run. Keep everything else "
    "in the cell as it is."
)


def failing_cell() -> CellRecord | None:
    """The cell ``%llm fix`` would fix: the last one that ran, if it failed (``%llm`` cells
    skipped, so asking twice fixes the same cell)."""
    return last_error()


def fix_prompt(record: CellRecord, words: str = "") -> str:
    """The prompt for a failed cell (see the module docstring)."""
    error = record.error
    assert error is not None
    lines = [words.strip(), ""] if words.strip() else []
    lines += [FIX_INSTRUCTIONS, "", f"Error: {error.summary()}"]
    if error.traceback:
        lines += ["Traceback (the notebook's frames, innermost last):", error.traceback]
    if error.code:
        where = f"Failing line {error.line}" if error.line else "Failing line"
        lines.append(f"{where}: {error.code}")
    if error.variables:
        lines.append("Variables on that line:")
        lines += [f"- {name}: {about}" for name, about in error.variables.items()]
    label = f"In [{record.count}]" if record.count is not None else "The failing cell"
    lines += ["", f"{label}, the failing cell:", "```python", record.source.rstrip(), "```"]
    return "\n".join(lines)


def corrected_code(answer: str) -> str:
    """The corrected cell: the answer's last Python (or unlabelled) code block, ``""`` if none."""
    blocks = code_blocks(str(answer))
    chosen = [code for lang, code in blocks if lang.lower() in PYTHON]
    if not chosen:
        chosen = [code for lang, code in blocks if not lang]
    return chosen[-1].rstrip("\n") if chosen else ""


def diff_lines(before: str, after: str) -> list[str]:
    """A unified diff of the failing cell and the corrected one."""
    return list(
        difflib.unified_diff(
            before.rstrip("\n").splitlines(),
            after.splitlines(),
            "failing cell",
            "corrected cell",
            lineterm="",
        )
    )


def diff_bundle(lines: list[str]) -> dict[str, str]:
    """The diff as HTML (added lines green, removed red; escaped) and as text."""
    rows = []
    for line in lines:
        kind = "ctx"
        if line.startswith(("+++", "---")):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        rows.append(f'<span class="nbstream-diff-{kind}">{html.escape(line)}</span>')
    style = (
        "<style>.nbstream-diff{font-family:var(--jp-code-font-family,monospace);"
        "font-size:var(--jp-code-font-size,13px);white-space:pre;overflow-x:auto;"
        "padding:0.4em 0.6em;border-radius:3px;background:var(--jp-cell-editor-background,#f5f5f5)}"
        ".nbstream-diff span{display:block}"
        ".nbstream-diff-add{background:rgba(46,160,67,0.18)}"
        ".nbstream-diff-del{background:rgba(248,81,73,0.18)}"
        ".nbstream-diff-hunk,.nbstream-diff-file{color:var(--jp-ui-font-color2,#616161)}</style>"
    )
    return {
        "text/html": f'{style}<div class="nbstream-diff">{"".join(rows)}</div>',
        "text/plain": "\n".join(lines),
    }


def show_fix(shell: Any, record: CellRecord, answer: str) -> str:
    """Show the correction as a diff and put it into a new cell below (not run); returns
    what happened, in words."""
    code = corrected_code(answer)
    if not code:
        return "The answer has no code block: no corrected cell to put below."
    if code.strip() == record.source.strip():
        return "The corrected cell is the same as the failing one: nothing put below."
    from IPython.display import display  # lazy: only in a shell

    display(diff_bundle(diff_lines(record.source, code)), raw=True)
    shell.set_next_input(code, replace=False)
    return (
        "The corrected cell is in a new cell below (not run). Headless runners ignore new "
        "cells: it is also in _llm.python_code()."
    )


__all__ = [
    "NOTHING_TO_FIX",
    "corrected_code",
    "diff_bundle",
    "diff_lines",
    "failing_cell",
    "fix_prompt",
    "show_fix",
]
