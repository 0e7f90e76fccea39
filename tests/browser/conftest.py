"""Fixtures for the real-browser tier: JupyterLab + headless Chromium via Playwright.

Fixtures:
  lab      (session)  -> labkit.LabServer: url, token, root, api(path), request(), stop()
  browser  (session)  -> playwright Browser (system Chromium, offline-friendly args)
  page     (function) -> playwright Page, 1400x1000, document.title spy installed
  notebook (function) -> factory ``notebook(name, cells) -> NotebookPage`` (page + lab bound)

Helpers live in ``labkit.py`` (``open_notebook``, ``NotebookPage``); this directory is put
on ``sys.path`` so tests can ``from labkit import open_notebook``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import labkit  # noqa: E402

TIMINGS: dict[str, float] = {}


def _skip_reason() -> str | None:
    chromium = labkit.chromium_path()
    if not (os.path.isfile(chromium) and os.access(chromium, os.X_OK)):
        return f"browser tier: Chromium not found at {chromium} (set NBSTREAM_CHROMIUM)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        return f"browser tier: playwright is not importable ({exc})"
    try:
        import jupyterlab  # noqa: F401
        import nbformat  # noqa: F401
    except ImportError as exc:
        return f"browser tier: jupyterlab/nbformat missing ({exc})"
    return None


SKIP_REASON = _skip_reason()


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE not in Path(str(item.path)).resolve().parents:
            continue
        item.add_marker(pytest.mark.browser)
        if SKIP_REASON:
            item.add_marker(pytest.mark.skip(reason=SKIP_REASON))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    t0 = time.monotonic()
    server = labkit.start_lab(tmp_path_factory.mktemp("jupyterlab"))
    TIMINGS["lab_start_s"] = round(time.monotonic() - t0, 2)
    try:
        yield server
    finally:
        t1 = time.monotonic()
        killed = server.stop()
        TIMINGS["lab_stop_s"] = round(time.monotonic() - t1, 2)
        _write_timings()
        left = server.leftover_pids()
        assert not left, f"processes still alive after lab teardown: {left}"
        if killed:
            # Not fatal, but worth seeing: the server did not clean up its kernels.
            print(f"[browser] force-killed leftover PIDs after server exit: {killed}")


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    t0 = time.monotonic()
    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=labkit.chromium_path(),
            headless=True,
            args=labkit.CHROMIUM_ARGS,
        )
        TIMINGS["browser_start_s"] = round(time.monotonic() - t0, 2)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, lab, request):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.add_init_script(labkit.TITLE_SPY_JS)
    pg = context.new_page()
    console: list[str] = []
    pg.on("console", lambda m: console.append(f"[{m.type}] {m.text}"))
    pg.on("pageerror", lambda e: console.append(f"[pageerror] {e}"))
    pg.console_log = console  # type: ignore[attr-defined]
    try:
        yield pg
    finally:
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            out = labkit.ARTIFACTS / "failures" / request.node.name.replace("/", "_")
            out.mkdir(parents=True, exist_ok=True)
            try:
                pg.screenshot(path=str(out / "page.png"), full_page=True)
            except Exception as exc:  # page may be dead; keep the other artifacts
                console.append(f"[artifact] screenshot failed: {exc}")
            (out / "console.log").write_text("\n".join(console))
        context.close()
        lab.shutdown_all_kernels()


@pytest.fixture
def notebook(page, lab, request):
    """``notebook(name, cells) -> NotebookPage`` bound to this test's page and lab."""

    def _open(name: str, cells: list[str], timeout: float = 90) -> labkit.NotebookPage:
        nb = labkit.open_notebook(page, lab, name, cells, timeout=timeout)
        TIMINGS[f"open_notebook_s[{request.node.name}]"] = round(nb.open_seconds, 2)
        return nb

    return _open


def _write_timings() -> None:
    labkit.ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (labkit.ARTIFACTS / "timings.json").write_text(json.dumps(TIMINGS, indent=1))
