"""MkDocs hooks: pages that are generated from the code, never copied by hand.

The home page is the README (one text for GitHub and the site), its links made relative to
the site. ``<!-- options table -->`` in a page becomes the table of options generated from
:mod:`nbstream.settings` (the one declaration of every option: flag, keyword, ``%config``
trait, environment variable, default, help).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

MARKER = "<!-- options table -->"
README_MARKER = "<!-- the README"
ROOT = Path(__file__).resolve().parent.parent


def _options_table() -> str:
    path = Path(__file__).with_name("options_table.py")
    spec = importlib.util.spec_from_file_location("options_table", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.table())


def _readme() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    text = re.sub(r"\]\(docs/\)", "](index.md)", text)
    text = re.sub(r"\]\(docs/", "](", text)
    return text.replace("](CONTRIBUTING.md)", "](contributing.md)").replace(
        "](CHANGELOG.md)", "](changelog.md)"
    )


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if markdown.lstrip().startswith(README_MARKER):
        return _readme()
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, _options_table())
    return markdown
