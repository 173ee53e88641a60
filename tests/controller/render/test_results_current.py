"""docs/results/ holds only reports that scripts/render_results.py makes from the committed stores, and
they are current: re-rendering gives the committed text (charts aside: an SVG's bytes depend on the
matplotlib version, so the HTML is compared with every <svg> replaced by a marker, and the count kept).
Run ``.venv/bin/python scripts/render_results.py`` after changing a report or a store."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SVG = re.compile(r"<svg\b.*?</svg>", re.S)


def _script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("render_results", REPO / "scripts" / "render_results.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    return _script().render_all()  # type: ignore[no-any-return]


def _normal(path: str, text: str) -> str:
    return SVG.sub("<svg/>", text) if path.endswith(".html") else text


def test_every_committed_report_is_current(rendered: dict[str, str]) -> None:
    stale = [path for path, text in rendered.items()
             if _normal(path, (REPO / path).read_text(encoding="utf-8")) != _normal(path, text)]
    assert not stale, f"re-run scripts/render_results.py: {stale}"


def test_no_report_without_a_recipe(rendered: dict[str, str]) -> None:
    committed = {str(p.relative_to(REPO)) for p in (REPO / "docs" / "results").rglob("*")
                 if p.suffix in (".md", ".html") and p.name != "README.md"}
    assert committed == set(rendered), committed ^ set(rendered)
    pages = [p for p in committed if p.endswith(".html")]
    assert pages == ["docs/results/fleet-example/report.html"]  # one page: the CSS is not copied around
