"""Shared fixtures: the scriptable LLM server and a real kernel wired to it."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

# Every answer is recorded in a history file (nbstream.store): never the developer's own.
# Kernels and notebooks started by the tests inherit this.
os.environ["NBSTREAM_HISTORY"] = str(
    Path(tempfile.mkdtemp(prefix="nbstream-test-history-")) / "history.sqlite"
)

from fake_llm_fixture import fake_llm  # noqa: F401
from fake_llm_server import FakeLLMServer
from kernel_harness import KernelSession


def kernel_pythons() -> list[str]:
    """The Python of this venv, plus NBSTREAM_TEST_KERNEL_PYTHON_EXTRA (e.g. ipykernel 6.29)."""
    pythons = [sys.executable]
    extra = os.environ.get("NBSTREAM_TEST_KERNEL_PYTHON_EXTRA")
    if extra:
        pythons.append(extra)
    return pythons


@pytest.fixture(scope="module", params=kernel_pythons(), ids=lambda p: _kernel_label(p))
def llm_kernel(
    request: pytest.FixtureRequest,
    fake_llm: FakeLLMServer,  # noqa: F811
) -> Iterator[KernelSession]:
    """A real ipykernel with nbstream loaded and both SDKs pointed at the fake server."""
    env = {
        "OPENAI_API_KEY": "sk-test-secret-openai-0123456789",
        "OPENAI_BASE_URL": fake_llm.openai_base_url,
        "ANTHROPIC_API_KEY": "sk-ant-test-secret-0123456789",
        "ANTHROPIC_BASE_URL": fake_llm.anthropic_base_url,
    }
    with KernelSession(python=request.param, env=env) as kernel:
        kernel.run_ok("%load_ext nbstream")
        yield kernel


def _kernel_label(python: str) -> str:
    import subprocess

    out = subprocess.run(
        [python, "-c", "import ipykernel; print(ipykernel.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    return f"ipykernel-{out.stdout.strip() or 'unknown'}"


@pytest.fixture
def ip() -> Iterator[object]:
    """The test process's IPython shell (one per process) with nbstream loaded."""
    from IPython import get_ipython
    from IPython.testing.globalipapp import start_ipython

    shell = start_ipython() or get_ipython()
    shell.run_line_magic("load_ext", "nbstream")
    yield shell
    shell.run_line_magic("unload_ext", "nbstream")
