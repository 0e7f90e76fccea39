"""The table of options, generated from nbstream.settings (one declaration of each option).

    python scripts/options_table.py            # print the table
    python scripts/options_table.py --check    # exit 1 if a hand-written copy exists

The documentation site puts it into ``docs/reference/options.md`` at build time (the hook in
``scripts/docs_hooks.py`` replaces the page's ``<!-- options table -->`` marker), so no page
holds a copy that could drift; ``--check`` (run by the tests) verifies exactly that.
"""

from __future__ import annotations

import sys
from pathlib import Path

from nbstream import settings

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "reference" / "options.md"
MARKER = "<!-- options table -->"
HEADER = "| flag | `ask()` / `%config LLMMagics.` |"


def table() -> str:
    rows = ["| flag | `ask()` / `%config LLMMagics.` | default | meaning |", "|---|---|---|---|"]
    for name, field in settings.Settings.model_fields.items():
        extra = field.json_schema_extra
        assert isinstance(extra, dict)
        flags = ", ".join(f"`{f}`" for f in extra["flags"])
        metavar = f" {extra['metavar']}" if extra["metavar"] else ""
        default = "—" if field.default in (None, False) else f"`{field.default}`"
        help_text = (field.description or "").replace("|", "\\|")
        rows.append(f"| {flags}{metavar} | `{name}` | {default} | {help_text} |")
    return "\n".join(rows)


def hand_written_copies() -> list[str]:
    """Files that hold the table's header line: a copy made by hand, bound to drift."""
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return [str(f.relative_to(ROOT)) for f in files if HEADER in f.read_text(encoding="utf-8")]


def main() -> int:
    if "--check" in sys.argv:
        if MARKER not in PAGE.read_text(encoding="utf-8"):
            print(f"{PAGE.relative_to(ROOT)} lost its {MARKER} marker")
            return 1
        copies = hand_written_copies()
        if copies:
            print(f"a hand-written options table in {', '.join(copies)}: use {MARKER}")
            return 1
        return 0
    print(table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
