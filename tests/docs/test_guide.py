"""The documentation site: it builds in strict mode (broken links and references fail), its
options page is generated from the declarations, and every code example of the guide runs.

Each guide page runs in a real kernel (jupyter_client) with nbstream loaded and every SDK
pointed at the scriptable server on 127.0.0.1: its ``python`` and ``ipython`` blocks, in
order, as notebook cells. "Runs" means the cell raises nothing (an answer the fake server
cannot satisfy, e.g. a schema, is a Response that says so: that is the product working).
The names the guide takes as given (``df``, ``reviews``, ``email_text`` …) come from
:data:`GIVEN`, run before the page.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fake_llm_fixture import GEMINI_KEY
from kernel_harness import KernelSession

ROOT = Path(__file__).resolve().parents[2]
GUIDE = sorted((ROOT / "docs" / "guide").glob("*.md"))
FENCE = re.compile(r"^```(?P<lang>[\w-]*)[^\n]*\n(?P<code>.*?)^```", re.M | re.S)
RUN = {"python", "ipython"}

GIVEN = """
import dataclasses, os, pandas as pd
from pydantic import BaseModel
df = pd.DataFrame({"review": ["Great product", "Broke in a day"], "stars": [5, 1]})
reviews = df
topic = "entropy"
email_text = "Invoice 17: 120.50 EUR. Invoice 18: 99.00 EUR."
class Sentiment(BaseModel):
    label: str
    score: float
async def my_async_generator(request):
    yield "hello"
    yield nbstream.Final("stop")
gen = my_async_generator
"""
"""What the guide's examples assume exists (a reader's data, a provider function)."""


def examples(page: Path) -> list[str]:
    """The runnable blocks of ``page`` (``python`` / ``ipython``), in order."""
    text = page.read_text(encoding="utf-8")
    return [m["code"] for m in FENCE.finditer(text) if m["lang"] in RUN]


def test_every_guide_page_has_a_runnable_example():
    assert GUIDE, "docs/guide is empty"
    missing = [p.name for p in GUIDE if not examples(p)]
    assert not missing, f"guide pages without a python/ipython example: {missing}"


@pytest.mark.kernel
@pytest.mark.parametrize("page", GUIDE, ids=lambda p: p.stem)
def test_the_guide_examples_run(page, fake_llm, tmp_path):
    env = {
        "OPENAI_API_KEY": "sk-guide-openai-0123456789",
        "OPENAI_BASE_URL": fake_llm.openai_base_url,
        "ANTHROPIC_API_KEY": "sk-ant-guide-0123456789",
        "ANTHROPIC_BASE_URL": fake_llm.anthropic_base_url,
        "GEMINI_API_KEY": GEMINI_KEY,
        "GOOGLE_GEMINI_BASE_URL": fake_llm.gemini_base_url,
        "NBSTREAM_HISTORY": str(tmp_path / "history.sqlite"),
        "NBSTREAM_CACHE_DIR": str(tmp_path / "cache"),
        "NBSTREAM_DISPLAY": "none",
    }
    with KernelSession(env=env) as kernel:
        kernel.run_ok(f"import os; os.chdir({str(tmp_path)!r})")
        kernel.run_ok("%load_ext nbstream\nimport nbstream")
        kernel.run_ok(GIVEN)
        for i, code in enumerate(examples(page)):
            ran = kernel.run(code, timeout=120)
            assert ran.status == "ok", (
                f"{page.name}, example {i + 1}:\n{code}\n→ {ran.error}\n{ran.stderr}"
            )


def test_the_options_page_is_generated_from_the_declarations():
    """The page holds the marker, never a copy: the hook puts the table there at build time."""
    page = (ROOT / "docs" / "reference" / "options.md").read_text(encoding="utf-8")
    assert "<!-- options table -->" in page and "| flag |" not in page
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "options_table.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_site_builds_in_strict_mode(tmp_path):
    mkdocs = shutil.which("mkdocs", path=os.path.dirname(sys.executable))
    if mkdocs is None:
        pytest.skip("mkdocs is not installed (pip install 'nbstream[test]')")
    result = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    api = (tmp_path / "site" / "reference" / "api" / "index.html").read_text(encoding="utf-8")
    assert "nbstream.api.ask" in api and "register_provider" in api  # generated, not empty
