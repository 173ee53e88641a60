"""The module index of docs/ARCHITECTURE.md: every module of the edgebench package with the first sentence
of its docstring, between the index markers. ``python scripts/module_index.py`` prints it, ``--write``
puts it into the document, ``--check`` exits 1 when the document is not current (tests/test_architecture_doc.py
runs the check, so a new module is listed the day it lands)."""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "ARCHITECTURE.md"
BEGIN = "<!-- module-index:begin (scripts/module_index.py --write) -->"
END = "<!-- module-index:end -->"
PACKAGE_ORDER = ("schemas", "runner", "common", "agent", "controller")
SUMMARY_MAX = 160
GENERATED = {"_version.py"}  # written by setuptools-scm at install time, git-ignored


def summary(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    first = doc.strip().split("\n\n")[0].replace("\n", " ")
    first = re.split(r"(?<=\.)\s", first, maxsplit=1)[0].strip()
    first = first.replace("|", "\\|")
    if not first:
        return "(package marker)" if path.name == "__init__.py" else "(no docstring)"
    return first if len(first) <= SUMMARY_MAX else first[: SUMMARY_MAX - 1].rstrip() + "…"


def modules(root: Path = REPO / "edgebench") -> list[Path]:
    found = [p for p in root.rglob("*.py")
             if "__pycache__" not in p.parts and str(p.relative_to(root)) not in GENERATED]

    def key(p: Path) -> tuple[int, str]:
        rel = p.relative_to(root)
        top = rel.parts[0] if len(rel.parts) > 1 else ""
        rank = PACKAGE_ORDER.index(top) + 1 if top in PACKAGE_ORDER else 0
        return rank, str(rel)

    return sorted(found, key=key)


def index(root: Path = REPO / "edgebench") -> str:
    lines = [BEGIN, "", "| module | what it is |", "|---|---|"]
    for path in modules(root):
        lines.append(f"| `{path.relative_to(root)}` | {summary(path)} |")
    lines += ["", END]
    return "\n".join(lines)


def current(text: str, root: Path = REPO / "edgebench") -> str:
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + index(root) + text[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    text = DOC.read_text(encoding="utf-8")
    want = current(text)
    if args.check:
        if want != text:
            print("docs/ARCHITECTURE.md's module index is not current: run python scripts/module_index.py --write")
            return 1
        return 0
    if args.write:
        DOC.write_text(want, encoding="utf-8")
        return 0
    print(index())
    return 0


if __name__ == "__main__":
    sys.exit(main())
