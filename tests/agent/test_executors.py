"""The executors package: no import circle, capabilities with defaults, and
protocol lines read with a bounded buffer (a runner cannot make the agent
hold an endless line in memory)."""

from __future__ import annotations

import ast
import io
import sys
from pathlib import Path

import edgebench.agent.executors as executors_pkg
from edgebench.agent.config import LocalBackend
from edgebench.agent.executors import ContainerRef, LocalExecutor, install_runner_code, make_executor
from edgebench.agent.executors.base import bounded_chunk_lines, bounded_text_lines

PKG = Path(executors_pkg.__file__).parent


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_no_import_circle_in_the_package() -> None:
    allowed = {"base": set(), "local": {"base"}, "docker_rules": {"base"}, "docker": {"base", "docker_rules"}}
    for name, may in allowed.items():
        ours = {m for m in _imports(PKG / f"{name}.py") if m.startswith("edgebench.agent.executors")}
        assert ours <= {f"edgebench.agent.executors.{m}" for m in may}, (name, ours)
    assert "edgebench.agent.daemon" not in _imports(PKG / "base.py")


def test_local_executor_defaults(tmp_path: Path) -> None:
    ex = make_executor(LocalBackend(python=sys.executable), install_runner_code(tmp_path), [])
    assert isinstance(ex, LocalExecutor)
    assert ex.remove_stale_runners() == 0  # nothing of a container to sweep


def test_container_ref_is_a_value() -> None:
    assert ContainerRef("edgebench/torch:1", "sha256:ab") == ContainerRef("edgebench/torch:1", "sha256:ab")


def test_text_lines_are_bounded() -> None:
    text = "a\n" + "x" * 100 + "\n" + "b\n" + "y" * 25 + "z\n" + "tail"
    lines = list(bounded_text_lines(io.StringIO(text).readline, max_chars=10))
    assert lines == ["a\n", "x" * 11, "b\n", "y" * 11, "tail"]


def test_chunk_lines_are_bounded_and_rejoined() -> None:
    chunks = [b"hel", b"lo\nwor", b"ld\n", b"z" * 30, b"z" * 30, b"\nok\n", b"end"]
    lines = list(bounded_chunk_lines(chunks, max_chars=20))
    assert lines[:2] == ["hello\n", "world\n"]
    assert len(lines[2]) == 21 and set(lines[2]) == {"z"}  # cut, then refused by the parser
    assert lines[3:] == ["ok\n", "end"]
