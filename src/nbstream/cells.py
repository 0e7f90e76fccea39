"""Putting an answer's code into the notebook: ``%%llm --to-cell`` and ``%llm to-cell``.

IPython's ``set_next_input`` asks the front end to create a new cell below the running one
with the given text. JupyterLab, Notebook 7 and terminal IPython (which pre-fills the next
prompt) honour it; headless runners (nbclient, nbval, papermill) ignore it, and other front
ends may, so the message says where the code is in any case: ``_llm.python_code()``.
"""

from __future__ import annotations

from typing import Any

from .response import Response

PYTHON = frozenset({"python", "py", "python3", "ipython", "ipython3", "pycon"})


def python_code(response: Response | str) -> str:
    """The answer's Python code blocks joined by a blank line (unlabelled blocks when no
    block is labelled Python); ``""`` when there is none."""
    from .markdown import code_blocks

    blocks = code_blocks(str(response))
    chosen = [code for lang, code in blocks if lang.lower() in PYTHON]
    if not chosen:
        chosen = [code for lang, code in blocks if not lang]
    return "\n\n".join(code.rstrip("\n") for code in chosen)


def to_cell(shell: Any, response: Response | None) -> str:
    """Ask the front end for a new cell below with the answer's Python code; return what
    happened, in words for the user."""
    if response is None:
        return "no answer yet: run a %%llm cell first"
    code = python_code(response)
    if not code:
        return "the answer has no Python code block: nothing to put in a cell"
    shell.set_next_input(code, replace=False)
    lines = code.count("\n") + 1
    return (
        f"{lines} line(s) of Python go into a new cell below (JupyterLab, Notebook 7, terminal "
        "IPython; headless runners and some other front ends ignore it: the code is also in "
        "_llm.python_code())"
    )
