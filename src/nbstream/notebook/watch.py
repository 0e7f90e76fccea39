"""Watching the notebook run, for ``--cells``, ``{last_figure}`` and ``%llm fix``: IPython's
``pre_run_cell`` / ``post_run_cell`` events, the display publisher (images and text a cell
displays) and the output streams (what it prints) fill :mod:`nbstream.prompts.cells`.

Installed by ``%load_ext nbstream``; it only records (sources, a few KB of output per
cell, the last image's bytes, an exception's summary), never changes what a cell does,
and a failure inside it is swallowed (the cell's own behaviour comes first).
"""

from __future__ import annotations

import ast
import base64
import contextlib
import os
import re
import sys
import sysconfig
import threading
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from nbstream.prompts import cells
from nbstream.prompts.context import to_prompt
from nbstream.prompts.media import attachment_of

_installed: dict[str, Any] = {}
TEXT_KEEP = 1_000
"""Characters of one displayed value's ``text/plain`` kept."""


def install(shell: Any) -> None:
    """Start recording (once per shell)."""
    if _installed.get("shell") is shell:
        return
    uninstall()
    _installed["shell"] = shell
    shell.events.register("pre_run_cell", _pre)
    shell.events.register("post_run_cell", _post)
    publisher = getattr(shell, "display_pub", None)
    if publisher is not None:
        original = publisher.publish
        with contextlib.suppress(AttributeError, TypeError):
            publisher.publish = _publishing(original)
            _installed["publisher"] = (publisher, original)
    # What IPython itself prints for a cell (a traceback, "Out[3]: …" in a terminal) is not
    # the cell's output: the record has the error and the result already.
    for owner, method in (
        (shell, "showtraceback"),
        (shell, "showsyntaxerror"),
        (getattr(shell, "displayhook", None), "write_output_prompt"),
        (getattr(shell, "displayhook", None), "write_format_data"),
    ):
        original_method = getattr(owner, method, None)
        if original_method is None:
            continue
        with contextlib.suppress(AttributeError, TypeError):
            setattr(owner, method, _quiet(original_method))
            _installed.setdefault("quiet", []).append((owner, method))
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        write = getattr(stream, "write", None)
        if write is None:
            continue
        try:
            stream.write = _writing(write)  # an ipykernel OutStream takes it; a file does not
        except (AttributeError, TypeError):
            continue
        _installed[name] = (stream, write)


def uninstall() -> None:
    shell = _installed.pop("shell", None)
    if shell is not None:
        for event, callback in (("pre_run_cell", _pre), ("post_run_cell", _post)):
            with contextlib.suppress(ValueError):
                shell.events.unregister(event, callback)
    if "publisher" in _installed:
        publisher, original = _installed.pop("publisher")
        with contextlib.suppress(AttributeError):
            publisher.publish = original
    for owner, method in _installed.pop("quiet", []):
        with contextlib.suppress(AttributeError):
            delattr(owner, method)  # the class's own method again
    for name in ("stdout", "stderr"):
        if name in _installed:
            stream, write = _installed.pop(name)
            with contextlib.suppress(AttributeError):
                del stream.write  # the class's own method again
            if getattr(stream, "write", None) != write:
                with contextlib.suppress(AttributeError):
                    stream.write = write


def _pre(info: Any) -> None:
    with contextlib.suppress(Exception):
        shell = _installed.get("shell")
        count = getattr(shell, "execution_count", None)
        cells.begin(
            cells.CellRecord(
                count=count,
                source=str(getattr(info, "raw_cell", "") or ""),
                cell_id=getattr(info, "cell_id", None),
            )
        )


def _post(result: Any) -> None:
    with contextlib.suppress(Exception):
        record = cells.RUNNING[0] if cells.RUNNING else None
        if record is None:
            return
        record.count = getattr(result, "execution_count", record.count)
        value = getattr(result, "result", None)
        if value is not None:
            found = attachment_of(value, "last_figure") if _is_image_like(value) else None
            if found is not None and found.kind == "image":
                cells.saw_image(found.data)
            record.add_output(to_prompt(value, TEXT_KEEP) + "\n")
        failure = getattr(result, "error_before_exec", None) or getattr(
            result, "error_in_exec", None
        )
        if failure is not None and not isinstance(failure, KeyboardInterrupt):
            shell = _installed.get("shell")
            namespace = getattr(shell, "user_ns", {}) or {}
            record.error = describe_error(failure, record.source, namespace)
        cells.end(record)


def _is_image_like(value: Any) -> bool:
    module = type(value).__module__ or ""
    return module.startswith(("matplotlib", "PIL", "IPython.core.display"))


def _publishing(original: Callable[..., Any]) -> Callable[..., Any]:
    def publish(data: Any, *args: Any, **kwargs: Any) -> Any:
        with contextlib.suppress(Exception):
            _saw(data)
        return original(data, *args, **kwargs)

    return publish


def _saw(data: Mapping[str, Any]) -> None:
    for mime in ("image/png", "image/jpeg"):
        raw = data.get(mime)
        if raw:
            cells.saw_image(base64.b64decode(raw) if isinstance(raw, str) else bytes(raw))
            return
    text = data.get("text/plain")
    if isinstance(text, str) and "application/vnd.jupyter.widget-view+json" not in data:
        cells.output(text[:TEXT_KEEP] + "\n")


_paused = threading.local()


def _quiet(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` with the output recording paused while it runs (on its thread)."""

    def quiet(*args: Any, **kwargs: Any) -> Any:
        _paused.depth = getattr(_paused, "depth", 0) + 1
        try:
            return method(*args, **kwargs)
        finally:
            _paused.depth -= 1

    return quiet


def _writing(write: Callable[[str], Any]) -> Callable[[str], Any]:
    def tee(text: str) -> Any:
        if not getattr(_paused, "depth", 0):
            with contextlib.suppress(Exception):
                cells.output(text)
        return write(text)

    return tee


# -- exceptions -----------------------------------------------------------------------------

_LIBRARY_ROOTS = tuple(
    os.path.normcase(p)
    for p in {sysconfig.get_paths().get(k, "") for k in ("stdlib", "platstdlib", "purelib")}
    if p
)


def _is_cell(filename: str) -> bool:
    shell = _installed.get("shell")
    known = getattr(getattr(shell, "compile", None), "_filename_map", None) or {}
    return filename in known or filename.startswith("<ipython-input") or "ipykernel_" in filename


def _is_users(filename: str) -> bool:
    """A cell, or a file outside the standard library and site-packages."""
    if _is_cell(filename):
        return True
    path = os.path.normcase(os.path.abspath(filename)) if filename[:1] != "<" else ""
    return bool(path) and "site-packages" not in path and not path.startswith(_LIBRARY_ROOTS)


def describe_error(
    error: BaseException, source: str, namespace: Mapping[str, Any]
) -> cells.CellError:
    """The exception as ``%llm fix`` sends it: type, message, the traceback trimmed to the
    user's frames (library frames counted, the innermost one kept), the failing line of the
    cell and the variables it uses."""
    kind = type(error).__name__
    if isinstance(error, SyntaxError):
        at = error.lineno
        where = f"line {at}, offset {error.offset}" if at else ""
        return cells.CellError(kind, str(error.msg or ""), where, at, (error.text or "").strip())
    frames = traceback.extract_tb(error.__traceback__)
    kept: list[str] = []
    skipped = 0
    line: int | None = None
    code = ""
    frame_globals: Mapping[str, Any] = namespace
    tb = error.__traceback__
    tbs = []
    while tb is not None:
        tbs.append(tb)
        tb = tb.tb_next
    for i, frame in enumerate(frames):
        innermost = i == len(frames) - 1
        if _is_users(frame.filename) or innermost:
            if skipped:
                kept.append(f"  … {skipped} frame{'s' if skipped != 1 else ''} inside libraries …")
                skipped = 0
            where = "the cell" if _is_cell(frame.filename) else os.path.basename(frame.filename)
            kept.append(
                f"  {where}, line {frame.lineno}, in {frame.name}: {(frame.line or '').strip()}"
            )
            if _is_cell(frame.filename):
                line, code = frame.lineno, (frame.line or "").strip()
                if i < len(tbs):
                    frame_globals = {**tbs[i].tb_frame.f_globals, **tbs[i].tb_frame.f_locals}
        else:
            skipped += 1
    if not code and line is None and source.strip():
        code = source.strip().splitlines()[-1]
    variables = describe_names(code, frame_globals) if code else {}
    message = str(error)
    return cells.CellError(kind, message, "\n".join(kept), line, code, variables)


_IDENTIFIER = re.compile(r"[^\W\d]\w*")


def describe_names(code: str, namespace: Mapping[str, Any]) -> dict[str, str]:
    """The names ``code`` uses that the namespace holds, each described: type, and for
    tables and arrays their shape, columns and dtypes (never their data)."""
    try:
        names = [n.id for n in ast.walk(ast.parse(code.strip())) if isinstance(n, ast.Name)]
    except SyntaxError:
        names = _IDENTIFIER.findall(code)
    described: dict[str, str] = {}
    for name in dict.fromkeys(names):
        if name in namespace and not name.startswith("_") and len(described) < 12:
            value = namespace[name]
            if callable(value) and not hasattr(value, "shape"):
                continue
            described[name] = describe_value(value)
    return described


def describe_value(value: Any) -> str:
    kind = f"{type(value).__module__}.{type(value).__qualname__}".removeprefix("builtins.")
    shape = getattr(value, "shape", None)
    if shape is not None and hasattr(value, "dtypes"):  # a DataFrame
        dtypes = ", ".join(f"{c} ({t})" for c, t in list(value.dtypes.items())[:30])
        more = len(value.columns) - 30
        if more > 0:
            dtypes += f", … {more} more"
        return f"{kind}, shape {tuple(shape)}; columns: {dtypes}"
    if shape is not None and hasattr(value, "dtype"):
        name = getattr(value, "name", None)
        named = f" named {name!r}" if name is not None else ""
        return f"{kind}{named}, shape {tuple(shape)}, dtype {value.dtype}"
    if isinstance(value, (str, bytes, list, tuple, dict, set)):
        return f"{kind} of length {len(value)}: {to_prompt(value, 200)[:120]}"
    return f"{kind}: {to_prompt(value, 200)[:120]}"


__all__ = ["describe_error", "describe_names", "describe_value", "install", "uninstall"]
