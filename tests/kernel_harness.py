"""A real ipykernel driven through jupyter_client, with every iopub message recorded.

Nothing is mocked: the kernel is a separate process started from a kernelspec that points
at a chosen Python (``NBSTREAM_TEST_KERNEL_PYTHON`` lets CI run the same tests against an
older ipykernel in a second virtual environment).
"""

from __future__ import annotations

import json
import os
import queue
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager


@dataclass
class Execution:
    msg_id: str
    reply: dict[str, Any] | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> str | None:
        return None if self.reply is None else self.reply["content"]["status"]

    def stdout(self) -> str:
        return self._stream("stdout")

    def stderr(self) -> str:
        return self._stream("stderr")

    def _stream(self, name: str) -> str:
        return "".join(
            m["content"]["text"]
            for m in self.messages
            if m["msg_type"] == "stream" and m["content"]["name"] == name
        )

    def error(self) -> dict[str, Any] | None:
        for m in self.messages:
            if m["msg_type"] == "error":
                return m["content"]
        return None


class KernelSession:
    """Start a kernel, run code, watch widget traffic, click widget buttons."""

    def __init__(self, python: str | None = None, env: dict[str, str] | None = None) -> None:
        self.python = python or os.environ.get("NBSTREAM_TEST_KERNEL_PYTHON") or sys.executable
        self.env = env or {}
        self._tmp = tempfile.TemporaryDirectory(prefix="nbstream-kernel-")
        self.iopub: list[dict[str, Any]] = []  # every iopub message, with "_t" receive time
        self._lock = threading.Lock()
        # ZMQ sockets are not thread-safe: the shell socket is read by the pump thread and
        # written by the test thread (execute requests, widget clicks), so both hold this.
        self._shell_socket = threading.Lock()
        self._stop = threading.Event()
        self._executions: dict[str, Execution] = {}
        self._replies: queue.Queue[dict[str, Any]] = queue.Queue()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> KernelSession:
        kernels = Path(self._tmp.name) / "kernels"
        spec_dir = kernels / "nbstream-test"
        spec_dir.mkdir(parents=True)
        spec = {
            "argv": [self.python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "nbstream test",
            "language": "python",
        }
        (spec_dir / "kernel.json").write_text(json.dumps(spec))
        ksm = KernelSpecManager(kernel_dirs=[str(kernels)])
        self.km = KernelManager(kernel_name="nbstream-test", kernel_spec_manager=ksm)
        env = {**os.environ, **self.env, "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
        env.pop("NBSTREAM_MODEL", None)
        env.update(self.env)
        self.km.start_kernel(env=env)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)
        self._threads = [
            threading.Thread(target=self._pump_iopub, daemon=True),
            threading.Thread(target=self._pump_shell, daemon=True),
        ]
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        try:
            self.kc.stop_channels()
        finally:
            self.km.shutdown_kernel(now=True)
            self._tmp.cleanup()

    def __enter__(self) -> KernelSession:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- message pumps -----------------------------------------------------------------------

    def _pump_iopub(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self.kc.get_iopub_msg(timeout=0.05)
            except queue.Empty:
                continue
            except Exception:
                if self._stop.is_set():
                    return
                continue
            msg["_t"] = time.monotonic()
            with self._lock:
                self.iopub.append(msg)
                parent = msg.get("parent_header", {}).get("msg_id")
                if parent in self._executions:
                    self._executions[parent].messages.append(msg)

    def _pump_shell(self) -> None:
        while not self._stop.is_set():
            try:
                with self._shell_socket:
                    msg = self.kc.get_shell_msg(timeout=0.01)
            except queue.Empty:
                time.sleep(0.002)  # let a sender take the socket
                continue
            except Exception:
                if self._stop.is_set():
                    return
                continue
            msg["_t"] = time.monotonic()
            parent = msg.get("parent_header", {}).get("msg_id")
            with self._lock:
                if parent in self._executions:
                    self._executions[parent].reply = msg

    # -- running code ------------------------------------------------------------------------

    def submit(self, code: str, metadata: dict[str, Any] | None = None) -> Execution:
        """Send an execute_request and return at once (the kernel queues it). ``metadata``:
        the request's metadata, as JupyterLab sends it (e.g. ``{"cellId": …}``)."""
        with self._lock, self._shell_socket:
            if metadata is None:
                msg_id = self.kc.execute(code, store_history=True)
            else:
                content = {
                    "code": code,
                    "silent": False,
                    "store_history": True,
                    "user_expressions": {},
                    "allow_stdin": False,
                    "stop_on_error": True,
                }
                msg = self.kc.session.msg("execute_request", content, metadata=metadata)
                self.kc.shell_channel.send(msg)
                msg_id = msg["header"]["msg_id"]
            execution = Execution(msg_id)
            self._executions[msg_id] = execution
        return execution

    def wait(self, execution: Execution, timeout: float = 60) -> Execution:
        """Wait for the reply *and* the kernel's idle status for that request."""
        self.wait_until(
            lambda: (
                execution.reply is not None
                and any(
                    m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
                    for m in execution.messages
                )
            ),
            timeout,
            f"no reply to {execution.msg_id}",
        )
        return execution

    def run(self, code: str, timeout: float = 60) -> Execution:
        return self.wait(self.submit(code), timeout)

    def run_ok(self, code: str, timeout: float = 60) -> Execution:
        execution = self.run(code, timeout)
        if execution.status != "ok":
            raise AssertionError(f"cell failed: {execution.error()}\n{execution.stdout()}")
        return execution

    def interrupt(self) -> None:
        self.km.interrupt_kernel()

    @staticmethod
    def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s: {what}")
            time.sleep(0.005)

    # -- widgets -----------------------------------------------------------------------------

    def comm_opens(self, model_name: str = "AnyModel") -> list[dict[str, Any]]:
        with self._lock:
            return [
                m
                for m in self.iopub
                if m["msg_type"] == "comm_open"
                and m["content"]["data"].get("state", {}).get("_model_name") == model_name
            ]

    def custom_messages(self, comm_id: str) -> list[dict[str, Any]]:
        """The ``msg:custom`` payloads the kernel sent to one widget, with receive times."""
        with self._lock:
            return [
                {**m["content"]["data"]["content"], "_t": m["_t"]}
                for m in self.iopub
                if m["msg_type"] == "comm_msg"
                and m["content"]["comm_id"] == comm_id
                and m["content"]["data"].get("method") == "custom"
            ]

    def send_custom(self, comm_id: str, content: dict[str, Any]) -> float:
        """Send a widget custom message as the browser would (e.g. the Stop click)."""
        msg = self.kc.session.msg(
            "comm_msg", {"comm_id": comm_id, "data": {"method": "custom", "content": content}}
        )
        with self._shell_socket:
            sent = time.monotonic()
            self.kc.shell_channel.send(msg)
        return sent

    def outputs(self, execution: Execution) -> list[dict[str, Any]]:
        """The cell's outputs as a notebook would save them (display updates applied)."""
        outputs: list[dict[str, Any]] = []
        by_display: dict[str, int] = {}
        for m in execution.messages:
            kind, content = m["msg_type"], m["content"]
            if kind in ("display_data", "execute_result"):
                outputs.append({"output_type": kind, "data": content["data"]})
                display_id = content.get("transient", {}).get("display_id")
                if display_id:
                    by_display[display_id] = len(outputs) - 1
            elif kind == "update_display_data":
                display_id = content.get("transient", {}).get("display_id")
                if display_id in by_display:
                    outputs[by_display[display_id]]["data"] = content["data"]
            elif kind == "stream":
                outputs.append({"output_type": "stream", "text": content["text"]})
            elif kind == "error":
                outputs.append({"output_type": "error", "ename": content["ename"]})
        return outputs
