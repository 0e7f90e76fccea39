"""Helpers for the real-browser tier: throwaway JupyterLab / Notebook 7 servers and a
notebook driver.

This is a plain module (``tests/browser`` is deliberately not a package); ``conftest.py``
puts this directory on ``sys.path`` so test modules can ``from labkit import ...``.

Nothing here imports playwright at module level, so the directory can be skipped cleanly
when playwright or Chromium is missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "browser"

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

# Records every value assigned to document.title, because JupyterLab rewrites the title
# itself (reading it afterwards would miss an injected assignment). Also records
# uncaught page errors so tests can assert the page stayed healthy.
TITLE_SPY_JS = r"""
(() => {
  if (window.__titles) { return; }
  window.__titles = [];
  window.__pageErrors = [];
  const desc = Object.getOwnPropertyDescriptor(Document.prototype, 'title');
  Object.defineProperty(Document.prototype, 'title', {
    configurable: true,
    enumerable: desc.enumerable,
    get() { return desc.get.call(this); },
    set(v) {
      try { window.__titles.push(String(v)); } catch (e) { /* ignore */ }
      desc.set.call(this, v);
    },
  });
  window.addEventListener('error', (e) => {
    window.__pageErrors.push(String((e && e.message) || e));
  });
})();
"""

# Marker env var put on the server process; kernels inherit it, so teardown can find
# every process this fixture started (by PID, via /proc) without matching names.
RUN_MARKER_VAR = "NBSTREAM_BROWSER_TEST_RUN"

# Filled by fixtures and tests; written to test-artifacts/browser/timings.json at the end
# of the session. REPORT lines are also printed in pytest's terminal summary.
TIMINGS: dict[str, float] = {}
REPORT: list[str] = []


def chromium_path() -> str:
    return os.environ.get("NBSTREAM_CHROMIUM", "/usr/bin/chromium")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pids_with_env(var: str, value: str) -> list[int]:
    """PIDs of live processes whose initial environment has ``var=value``."""
    needle = f"{var}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # zombies ("Z") are already dead, they only wait for reaping
        state = stat.rsplit(")", 1)[-1].split()[0] if ")" in stat else ""
        if needle in env.split(b"\0") and state != "Z":
            found.append(int(entry.name))
    return found


def _wait_pid_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            if stat.rsplit(")", 1)[-1].split()[0] == "Z":
                return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


@dataclass
class LabServer:
    """A JupyterLab (``app="lab"``) or Notebook 7 (``app="notebook"``) server started for
    the test session (127.0.0.1 only)."""

    url: str  # base URL with trailing slash, e.g. http://127.0.0.1:PORT/
    token: str
    root: Path  # notebook directory (ServerApp.root_dir)
    base: Path  # temp dir holding config/data/runtime/settings dirs
    log_path: Path
    proc: subprocess.Popen | None = None
    marker: str = ""
    startup_seconds: float = 0.0
    app: str = "lab"
    _stopped: bool = field(default=False, repr=False)

    # -- HTTP helpers ------------------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None, timeout: float = 10) -> Any:
        """``method`` on ``/<path>`` with the token; returns decoded JSON (or None)."""
        url = self.url + path.lstrip("/")
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Authorization", f"token {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def api(self, path: str) -> Any:
        """GET JSON from the server, e.g. ``lab.api("api/sessions")``."""
        return self.request("GET", path)

    def sessions(self) -> list[dict]:
        return self.api("api/sessions")

    def session_for(self, nb_path: str) -> dict | None:
        for s in self.sessions():
            if s.get("path") == nb_path:
                return s
        return None

    def shutdown_all_kernels(self) -> None:
        """Delete every session and kernel (used between tests and at teardown)."""
        with contextlib.suppress(OSError, urllib.error.URLError):
            for s in self.sessions():
                with contextlib.suppress(OSError, urllib.error.URLError):
                    self.request("DELETE", f"api/sessions/{s['id']}")
            for k in self.api("api/kernels"):
                with contextlib.suppress(OSError, urllib.error.URLError):
                    self.request("DELETE", f"api/kernels/{k['id']}")

    def shutdown_sessions(self, paths: list[str] | set[str]) -> None:
        """Delete the sessions (and so the kernels) of the notebooks at ``paths``."""
        wanted = set(paths)
        if not wanted:
            return
        with contextlib.suppress(OSError, urllib.error.URLError):
            for s in self.sessions():
                if s.get("path") in wanted:
                    with contextlib.suppress(OSError, urllib.error.URLError):
                        self.request("DELETE", f"api/sessions/{s['id']}")

    def lab_url(self, nb_name: str, workspace: str | None = None) -> str:
        """URL opening ``nb_name`` in a fresh (or given) workspace, token included."""
        ws = workspace or f"t{uuid.uuid4().hex[:10]}"
        quoted = urllib.parse.quote(nb_name)
        return f"{self.url}lab/workspaces/{ws}/tree/{quoted}?token={self.token}"

    def notebook_url(self, nb_name: str) -> str:
        """URL opening ``nb_name`` in this server's UI: a fresh Lab workspace, or
        Notebook 7's single-document page ``/notebooks/NAME``."""
        if self.app == "notebook":
            quoted = urllib.parse.quote(nb_name)
            return f"{self.url}notebooks/{quoted}?token={self.token}"
        return self.lab_url(nb_name)

    # -- lifecycle ---------------------------------------------------------------------
    def leftover_pids(self) -> list[int]:
        return _pids_with_env(RUN_MARKER_VAR, self.marker) if self.marker else []

    def stop(self) -> list[int]:
        """Stop the server by its PID (SIGTERM, then SIGKILL) and reap its kernels.

        Returns the PIDs that had to be force-killed after the server exited (should be
        empty). Idempotent.
        """
        if self._stopped:
            return []
        self._stopped = True
        proc = self.proc
        if proc is None:
            return []
        if proc.poll() is None:
            self.shutdown_all_kernels()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        killed = []
        for pid in self.leftover_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        for pid in killed:
            _wait_pid_gone(pid, 5)
        return killed


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


# Per app: the module run with ``python -m`` and the traitlets class of its options.
APPS = {"lab": ("jupyterlab", "LabApp"), "notebook": ("notebook", "JupyterNotebookApp")}


def start_lab(base: Path, *, startup_timeout: float = 60, attempts: int = 3) -> LabServer:
    """Start JupyterLab from this interpreter's environment in an isolated temp tree."""
    return start_server(base, app="lab", startup_timeout=startup_timeout, attempts=attempts)


def start_notebook7(base: Path, *, startup_timeout: float = 60, attempts: int = 3) -> LabServer:
    """Start Notebook 7 (``jupyter notebook``) the same way (own port, token, temp dirs)."""
    return start_server(base, app="notebook", startup_timeout=startup_timeout, attempts=attempts)


def start_server(
    base: Path, *, app: str = "lab", startup_timeout: float = 60, attempts: int = 3
) -> LabServer:
    """Start JupyterLab or Notebook 7 (``app``) from this interpreter's environment in an
    isolated temp tree: 127.0.0.1, a free port, a fresh token, its own config/data/runtime/
    settings dirs; stop it with ``LabServer.stop()`` (by PID)."""
    module, app_class = APPS[app]
    base.mkdir(parents=True, exist_ok=True)
    root = base / "notebooks"
    config_dir = base / "config"
    data_dir = base / "data"
    runtime_dir = base / "runtime"
    ipython_dir = base / "ipython"
    settings_dir = base / "user-settings"
    workspaces_dir = base / "workspaces"
    for d in (root, config_dir, data_dir, runtime_dir, ipython_dir, settings_dir, workspaces_dir):
        d.mkdir(parents=True, exist_ok=True)

    # Kernel spec pinned to this interpreter (so the kernel can import the test env's
    # packages); the temp data dir comes first on the data path, so it wins over others.
    _write_json(
        data_dir / "kernels" / "python3" / "kernel.json",
        {
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (ipykernel)",
            "language": "python",
            "metadata": {"debugger": True},
        },
    )
    # No news / update toasts; render every cell (deterministic DOM for assertions).
    _write_json(
        settings_dir / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings",
        {"fetchNews": "false", "checkForUpdates": False},
    )
    _write_json(
        settings_dir / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings",
        {"windowingMode": "none"},
    )

    token = uuid.uuid4().hex
    marker = uuid.uuid4().hex
    env = dict(os.environ)
    env.update(
        JUPYTER_CONFIG_DIR=str(config_dir),
        JUPYTER_DATA_DIR=str(data_dir),
        JUPYTER_RUNTIME_DIR=str(runtime_dir),
        IPYTHONDIR=str(ipython_dir),
        JUPYTER_PLATFORM_DIRS="1",
        PYTHONUNBUFFERED="1",
        **{RUN_MARKER_VAR: marker},
    )
    env.pop("JUPYTER_PATH", None)
    env.pop("JUPYTER_TOKEN", None)
    # The kernel inherits this, so `import nbstream` works from the source tree even
    # when the package is not installed into the venv.
    src = str(REPO_ROOT / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = ARTIFACTS / f"jupyter-{app}.log"
    log_path.write_bytes(b"")  # one log per test session

    last_error = ""
    for _attempt in range(attempts):
        port = free_port()
        cmd = [
            sys.executable,
            "-m",
            module,
            "--no-browser",
            "--allow-root",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            f"--{app_class}.user_settings_dir={settings_dir}",
            f"--{app_class}.workspaces_dir={workspaces_dir}",
            f"--{app_class}.expose_app_in_browser=True",
            "--ServerApp.terminals_enabled=False",
        ]
        t0 = time.monotonic()
        log = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        log.write(f"\n==== starting on port {port}: {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            cmd,
            cwd=str(root),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        server = LabServer(
            url=f"http://127.0.0.1:{port}/",
            token=token,
            root=root,
            base=base,
            log_path=log_path,
            proc=proc,
            marker=marker,
            app=app,
        )
        deadline = t0 + startup_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                last_error = f"server exited with {proc.returncode}"
                break
            try:
                server.api("api/status")
            except (OSError, urllib.error.URLError, ValueError):
                time.sleep(0.1)
                continue
            server.startup_seconds = time.monotonic() - t0
            return server
        else:
            last_error = f"server not ready within {startup_timeout}s"
        server.stop()
    tail = log_path.read_text(errors="replace")[-4000:]
    raise RuntimeError(f"{module} failed to start ({last_error}); log tail:\n{tail}")


# ----------------------------------------------------------------------------------------
# Notebook driver
# ----------------------------------------------------------------------------------------

_PROMPT_NUM = re.compile(r"\[\s*(\d+)\s*\]")


def write_notebook(path: Path, cells: list[str]) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


class NotebookPage:
    """Drives one notebook opened in a Playwright ``page``, in JupyterLab or Notebook 7
    (both render cells as ``.jp-Cell`` in a ``.jp-NotebookPanel``)."""

    def __init__(self, page: Any, lab: LabServer, name: str):
        self.page = page
        self.lab = lab
        self.name = name
        self.panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)").filter(
            has=page.locator(".jp-Notebook")
        )
        self.cells = self.panel.locator(".jp-Notebook .jp-Cell")
        self.open_seconds = 0.0  # goto -> kernel idle, set by open_notebook

    # -- locators ----------------------------------------------------------------------
    def cell(self, i: int) -> Any:
        return self.cells.nth(i)

    def output(self, i: int) -> Any:
        """Locator of cell ``i``'s output area."""
        return self.cell(i).locator(".jp-OutputArea").first

    def prompt_text(self, i: int) -> str:
        return self.cell(i).locator(".jp-InputArea-prompt").first.inner_text().strip()

    def wait_for_text(self, i: int, text: str, timeout: float = 30) -> str:
        """Wait until cell ``i``'s output text contains ``text``; returns the full text."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.output_text(i)
            if text in got:
                return got
            if time.monotonic() > deadline:
                raise TimeoutError(f"cell {i} output never contained {text!r}; got {got!r}")
            time.sleep(0.05)

    def output_text(self, i: int) -> str:
        """Visible text of cell ``i``'s outputs ('' if none)."""
        out = self.cell(i).locator(".jp-OutputArea")
        if out.count() == 0:
            return ""
        return out.first.inner_text()

    # -- kernel state ------------------------------------------------------------------
    def session(self) -> dict | None:
        return self.lab.session_for(self.name)

    def kernel_state(self) -> str | None:
        s = self.session()
        return s["kernel"].get("execution_state") if s and s.get("kernel") else None

    def ui_kernel_status(self) -> str | None:
        ind = self.panel.locator(".jp-Notebook-ExecutionIndicator").first
        if ind.count() == 0:
            return None
        return ind.get_attribute("data-status")

    def wait_kernel_ready(self, timeout: float = 60) -> None:
        """Wait for the server to report the kernel idle, then the page's indicator."""
        deadline = time.monotonic() + timeout
        while self.kernel_state() != "idle":
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"kernel for {self.name} not idle (state={self.kernel_state()!r})"
                )
            time.sleep(0.1)
        remaining_ms = max(1000, (deadline - time.monotonic()) * 1000)
        self.panel.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').first.wait_for(
            timeout=remaining_ms
        )

    def wait_for_idle(self, timeout: float = 60) -> None:
        """Wait until no cell is queued/running and the kernel is idle (server + UI)."""
        deadline = time.monotonic() + timeout
        while True:
            prompts = self.cells.locator(".jp-InputArea-prompt").all_inner_texts()
            busy = any("*" in p for p in prompts)
            if not busy and self.kernel_state() == "idle" and self.ui_kernel_status() == "idle":
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"notebook {self.name} not idle: prompts={prompts} "
                    f"kernel={self.kernel_state()!r} ui={self.ui_kernel_status()!r}"
                )
            time.sleep(0.1)

    def ensure_idle(self, timeout: float = 5) -> None:
        """Idle within ``timeout``, else interrupt the kernel and wait again (so one
        failed test does not leave a shared notebook busy for the next one)."""
        try:
            self.wait_for_idle(timeout=timeout)
        except TimeoutError:
            self.interrupt()
            self.wait_for_idle(timeout=20)

    # -- actions -----------------------------------------------------------------------
    def add_cell(self, source: str, timeout: float = 10) -> int:
        """Append a code cell with ``source`` (through the notebook model, no typing);
        returns its index once the cell is rendered."""
        index = self.page.evaluate(_ADD_CELL_JS, [self.name, source])
        deadline = time.monotonic() + timeout
        while self.cells.count() <= index:
            if time.monotonic() > deadline:
                raise TimeoutError(f"cell {index} added to {self.name} was not rendered")
            time.sleep(0.05)
        return index

    def select_cell(self, i: int) -> None:
        """Command mode with cell ``i`` active."""
        prompt = self.cell(i).locator(".jp-InputPrompt").first
        prompt.scroll_into_view_if_needed()
        prompt.click()
        self.page.keyboard.press("Escape")

    def run_cell(self, i: int, wait: bool = True, timeout: float = 60) -> None:
        """Run cell ``i`` (click its prompt, Escape, Ctrl+Enter).

        With ``wait=True`` blocks until the cell finished (its prompt shows a new
        execution count). With ``wait=False`` returns once the cell is queued/running,
        or already finished, so tests can watch streaming output.
        """
        before = self.prompt_text(i)
        self.select_cell(i)
        self.page.keyboard.press("Control+Enter")
        deadline = time.monotonic() + timeout
        while True:
            now = self.prompt_text(i)
            if "*" in now and not wait:
                return
            if now != before and _PROMPT_NUM.search(now):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"cell {i} did not run: prompt {before!r} -> {now!r}")
            time.sleep(0.05)

    def run_all(self, wait: bool = True, timeout: float = 120) -> None:
        """Run all cells via the menu bar: Run -> Run All Cells."""
        self.select_cell(0)
        self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        menu = self.page.locator(".lm-Menu:visible")
        menu.locator(".lm-Menu-item", has_text=re.compile(r"^Run All Cells")).first.click()
        if not wait:
            return
        n = self.cells.count()
        deadline = time.monotonic() + timeout
        while True:
            prompts = self.cells.locator(".jp-InputArea-prompt").all_inner_texts()
            if len(prompts) == n and all(_PROMPT_NUM.search(p) and "*" not in p for p in prompts):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"run_all did not finish: prompts={prompts}")
            time.sleep(0.1)
        self.wait_for_idle(timeout=max(1.0, deadline - time.monotonic()))

    def interrupt(self) -> None:
        """Interrupt the kernel the way a user does: command mode, then ``I, I``."""
        self.panel.locator(".jp-Notebook").first.focus()
        self.page.keyboard.press("Escape")
        self.page.keyboard.press("i")
        self.page.keyboard.press("i")

    def execute_command(self, command: str, args: dict | None = None) -> Any:
        """Run a JupyterLab command id through the exposed app (``window.jupyterapp``)."""
        return self.page.evaluate(
            "([c, a]) => window.jupyterapp.commands.execute(c, a)", [command, args or {}]
        )

    def cell_source(self, i: int) -> str:
        """The source of cell ``i`` as the notebook model holds it."""
        return self.page.evaluate(_CELL_SOURCE_JS, [self.name, i])

    def contents(self, content: bool = False) -> dict:
        q = urllib.parse.quote(self.name)
        return self.lab.api(f"api/contents/{q}?content={int(content)}")

    def save(self, timeout: float = 30) -> Any:
        """Ctrl+S and wait until the file's ``last_modified`` changes; returns the saved
        notebook as an ``nbformat.NotebookNode`` read from disk."""
        import nbformat

        before = self.contents()["last_modified"]
        # focus the notebook (command mode) so the shortcut reaches JupyterLab
        self.panel.locator(".jp-Notebook").first.focus()
        self.page.keyboard.press("Control+s")
        deadline = time.monotonic() + timeout
        while self.contents()["last_modified"] == before:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} was not saved within {timeout}s")
            time.sleep(0.1)
        # wait for the dirty marker to clear so the write is complete
        dirty = self.page.locator(".jp-mod-dirty")
        while dirty.count() and time.monotonic() < deadline:
            time.sleep(0.05)
        # The file can be caught mid-write on a busy machine (seen once under two suites at
        # once: an empty read): read until it parses, within the same deadline.
        path = str(self.lab.root / self.name)
        while True:
            try:
                return nbformat.read(path, as_version=4)
            except (nbformat.reader.NotJSONError, ValueError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def screenshot(self, path: str | Path) -> Path:
        """Full-page screenshot; relative paths go under ``test-artifacts/browser/``."""
        p = Path(path)
        if not p.is_absolute():
            p = ARTIFACTS / p
        p.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(p), full_page=True)
        return p

    # -- security spies ----------------------------------------------------------------
    def titles(self) -> list[str]:
        """Every value assigned to ``document.title`` since the page loaded."""
        return self.page.evaluate("() => window.__titles || []")

    def page_errors(self) -> list[str]:
        return self.page.evaluate("() => window.__pageErrors || []")


_ADD_CELL_JS = r"""
([path, source]) => {
  const app = window.jupyterapp;
  for (const w of app.shell.widgets('main')) {
    if (w.context && w.context.path === path && w.content && w.content.model) {
      const model = w.content.model;
      const index = model.cells.length;
      model.sharedModel.insertCell(index, { cell_type: 'code', source });
      return index;
    }
  }
  throw new Error('no open notebook panel for ' + path);
}
"""


_CELL_SOURCE_JS = r"""
([path, i]) => {
  for (const w of window.jupyterapp.shell.widgets('main')) {
    if (w.context && w.context.path === path && w.content && w.content.model) {
      const cells = w.content.model.cells;
      return i < cells.length ? cells.get(i).sharedModel.getSource() : null;
    }
  }
  throw new Error('no open notebook panel for ' + path);
}
"""


def new_page(browser: Any, viewport: dict | None = None) -> Any:
    """A page in a fresh browser context, with the document.title spy installed and
    console messages collected in ``page.console_log``. Close it with
    ``page.context.close()``."""
    context = browser.new_context(viewport=viewport or {"width": 1400, "height": 1000})
    context.add_init_script(TITLE_SPY_JS)
    pg = context.new_page()
    console: list[str] = []
    pg.on("console", lambda m: console.append(f"[{m.type}] {m.text}"))
    pg.on("pageerror", lambda e: console.append(f"[pageerror] {e}"))
    pg.console_log = console
    return pg


def dump_failure(page: Any, test_name: str, tag: str = "page") -> Path:
    """Save a screenshot and the console log of ``page`` under failures/<test_name>/."""
    out = ARTIFACTS / "failures" / test_name.replace("/", "_")
    out.mkdir(parents=True, exist_ok=True)
    console = getattr(page, "console_log", [])
    try:
        page.screenshot(path=str(out / f"{tag}.png"), full_page=True)
    except Exception as exc:  # page may be dead; keep the other artifacts
        console.append(f"[artifact] screenshot failed: {exc}")
    (out / f"{tag}-console.log").write_text("\n".join(console))
    return out


def reopen_notebook(page: Any, lab: LabServer, name: str, timeout: float = 60) -> NotebookPage:
    """Open the existing file ``name`` (not rewritten) in a fresh workspace; waits only
    until its cells are rendered, not for a kernel."""
    import nbformat

    n = len(nbformat.read(str(lab.root / name), as_version=4).cells)
    t0 = time.monotonic()
    page.goto(lab.notebook_url(name), timeout=timeout * 1000)
    nb = NotebookPage(page, lab, name)
    nb.cells.nth(max(n - 1, 0)).wait_for(timeout=timeout * 1000)
    nb.open_seconds = time.monotonic() - t0
    return nb


def open_notebook(
    page: Any, lab: LabServer, name: str, cells: list[str], timeout: float = 90
) -> NotebookPage:
    """Write ``name`` (nbformat v4, code ``cells``) into ``lab.root``, open it in a fresh
    workspace and wait until its kernel is idle (server API and page indicator)."""
    write_notebook(lab.root / name, cells)
    t0 = time.monotonic()
    page.goto(lab.notebook_url(name), timeout=timeout * 1000)
    nb = NotebookPage(page, lab, name)
    nb.cells.nth(len(cells) - 1 if cells else 0).wait_for(timeout=timeout * 1000)
    nb.wait_kernel_ready(timeout=timeout)
    nb.open_seconds = time.monotonic() - t0
    return nb
