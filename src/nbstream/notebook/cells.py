"""Putting an answer's code into the notebook: ``%%llm --to-cell`` and ``%llm to-cell``.

IPython's ``set_next_input`` asks the front end to create a new cell below the running one
with the given text. JupyterLab, Notebook 7 and terminal IPython (which pre-fills the next
prompt) honour it; headless runners (nbclient, nbval, papermill) ignore it, and other front
ends may, so the message says where the code is in any case: ``_llm.python_code()``.
"""

from __future__ import annotations

from typing import Any

from nbstream.render.markdown import python_code
from nbstream.response import Response


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
