"""Fixtures for the real-browser tier: JupyterLab + headless Chromium via Playwright.

Fixtures:
  lab      (session)  -> labkit.LabServer: url, token, root, api(path), request(), stop()
  nb7      (session)  -> labkit.LabServer running Notebook 7 (skips without `notebook`)
  browser  (session)  -> playwright Browser (system Chromium, offline-friendly args)
  page     (function) -> playwright Page, 1400x1000, document.title spy installed
  notebook (function) -> factory ``notebook(name, cells) -> NotebookPage`` (page + lab bound)
  new_page (function) -> factory ``new_page() -> Page`` in a fresh context (closed at the end)

Teardown shuts down only the kernels of notebooks the test opened through ``notebook``,
so a module-scoped notebook (see test_llm_in_lab.py) survives the tests around it.

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

TIMINGS = labkit.TIMINGS


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
def nb7(tmp_path_factory):
    """A Notebook 7 server (``jupyter notebook``) for the session, like ``lab``: its own
    port, token and temp dirs, 127.0.0.1, stopped by PID. Skips when ``notebook`` (7.x) is
    not installed."""
    try:
        import notebook
    except ImportError as exc:
        pytest.skip(f"Notebook 7 tests need the `notebook` package ({exc})")
    if int(notebook.__version__.split(".")[0]) < 7:
        pytest.skip(f"Notebook 7 tests need notebook>=7, not {notebook.__version__}")
    t0 = time.monotonic()
    server = labkit.start_notebook7(tmp_path_factory.mktemp("notebook7"))
    TIMINGS["nb7_start_s"] = round(time.monotonic() - t0, 2)
    try:
        yield server
    finally:
        killed = server.stop()
        _write_timings()
        left = server.leftover_pids()
        assert not left, f"processes still alive after Notebook 7 teardown: {left}"
        if killed:
            print(f"[browser] force-killed leftover PIDs after Notebook 7 exit: {killed}")


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


def _failed(request) -> bool:
    rep = getattr(request.node, "rep_call", None)
    return rep is not None and rep.failed


@pytest.fixture
def page(browser, lab, request):
    pg = labkit.new_page(browser)
    pg.nb_paths = set()  # notebooks opened through `notebook`; their kernels die with the page
    try:
        yield pg
    finally:
        if _failed(request):
            labkit.dump_failure(pg, request.node.name)
        pg.context.close()
        lab.shutdown_sessions(pg.nb_paths)


@pytest.fixture
def new_page(browser, request):
    """``new_page() -> Page``: extra pages in fresh contexts (e.g. to reopen a notebook)."""
    pages = []

    def _new():
        pg = labkit.new_page(browser)
        pages.append(pg)
        return pg

    try:
        yield _new
    finally:
        for k, pg in enumerate(pages):
            if _failed(request):
                labkit.dump_failure(pg, request.node.name, tag=f"extra-page-{k}")
            pg.context.close()


@pytest.fixture
def notebook(page, lab, request):
    """``notebook(name, cells) -> NotebookPage`` bound to this test's page and lab."""

    def _open(name: str, cells: list[str], timeout: float = 90) -> labkit.NotebookPage:
        page.nb_paths.add(name)
        nb = labkit.open_notebook(page, lab, name, cells, timeout=timeout)
        TIMINGS[f"open_notebook_s[{request.node.name}]"] = round(nb.open_seconds, 2)
        return nb

    return _open


def pytest_terminal_summary(terminalreporter):
    if labkit.REPORT:
        terminalreporter.section("browser tier")
        for line in labkit.REPORT:
            terminalreporter.write_line(line)


def _write_timings() -> None:
    labkit.ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (labkit.ARTIFACTS / "timings.json").write_text(json.dumps(TIMINGS, indent=1))
