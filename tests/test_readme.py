"""The README states what the code declares: the options table is generated from
:mod:`nbstream.settings` (``scripts/options_table.py``) into the documentation site, never
copied by hand (checked here); the README is the front page."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_options_table_is_generated_never_copied():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "options_table.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_readme_is_a_front_page():
    """What it is, a screenshot, the two commands, a tour, links: at most ~150 lines."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 150
    assert "bash scripts/demo.sh" in text and "bash scripts/test.sh" in text
    assert "![" in text and "docs/guide/" in text and "nest-asyncio" in text


def test_the_readme_cites_the_projects_own_design_notes():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "NOTES §" not in text and "docs/design.md" in text
    for path in (ROOT / "src").rglob("*.py"):
        assert "NOTES §" not in path.read_text(encoding="utf-8"), path


def test_binder_installs_every_dependency():
    """binder/postBuild installs nbstream with --no-deps: its requirements must list them."""
    import re

    import pytest

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["local"]
    names = {re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].lower() for d in wanted}
    text = (ROOT / "binder" / "requirements.txt").read_text(encoding="utf-8").lower()
    listed = {re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0] for line in text.splitlines()}
    assert names <= listed, names - listed


def test_the_version_lives_in_one_place():
    """pyproject.toml takes it from the package (hatch's dynamic version); the changelog
    says what it added."""
    import importlib.metadata

    import nbstream

    assert importlib.metadata.version("nbstream") == nbstream.__version__
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'dynamic = ["version"]' in pyproject and "\nversion =" not in pyproject
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## {nbstream.__version__} " in changelog
