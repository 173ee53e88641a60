"""docs/ARCHITECTURE.md lists every module of the package (scripts/module_index.py), and its pictures and
import rules are there."""

from __future__ import annotations

import importlib.util

from tests.conftest import REPO


def _module_index():
    spec = importlib.util.spec_from_file_location("module_index", REPO / "scripts" / "module_index.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_module_is_listed_and_none_that_is_gone() -> None:
    mi = _module_index()
    text = (REPO / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    assert mi.current(text) == text, "run: python scripts/module_index.py --write"
    for path in mi.modules():
        assert f"| `{path.relative_to(REPO / 'edgebench')}` |" in text


def test_the_index_notices_a_new_module(tmp_path) -> None:
    mi = _module_index()
    pkg = tmp_path / "edgebench"
    (pkg / "agent").mkdir(parents=True)
    (pkg / "agent" / "new_thing.py").write_text('"""A new concern. More words."""\n')
    index = mi.index(pkg)
    assert "| `agent/new_thing.py` | A new concern. |" in index


def test_the_layers_the_path_and_the_rules_are_documented() -> None:
    text = (REPO / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    for heading in ("## Layers", "## One job's path", "## Import rules", "## Every module"):
        assert heading in text
