"""The runner package must parse, byte-compile and import on Python 3.6.

The 2019 stacks (keras-mxnet 2.2.4.1 / MXNet 1.4.0, Keras 2.2.4 / TensorFlow
1.13.1) exist only for Python 3.6, and the agent starts the runner with that
interpreter. The real 3.6 interpreter checks every file: a newer Python
parsing with ``feature_version`` would miss runtime-only gaps (``from __future__
import annotations``, newer stdlib names).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# relative to edgebench/, so that the runner imports as the top-level package
# `runner`, as it does in the agent's private copy and in the runner images
PACKAGE_ROOT = REPO / "edgebench"
RUNNER_FILES = sorted(p.relative_to(PACKAGE_ROOT).as_posix() for p in (PACKAGE_ROOT / "runner").rglob("*.py"))


def python36() -> Path | None:
    root = os.environ.get("PYENV_ROOT")
    if not root and shutil.which("pyenv"):
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip()
    root = root or os.path.expanduser("~/.pyenv")
    exe = Path(root) / "versions" / "3.6.15" / "bin" / "python"
    return exe if exe.exists() else None


# Runs under Python 3.6: compile() in memory (no __pycache__ written into the
# tree), then a bare import, which also proves that no module imports numpy or
# a framework at module level (the bare interpreter has neither).
_CHECK = r"""
import ast, json, sys
sys.path.insert(0, sys.argv[1])
out = {}
for rel in sys.argv[2:]:
    try:
        with open(rel, encoding="utf-8") as fh:
            src = fh.read()
        ast.parse(src, rel)
        compile(src, rel, "exec", dont_inherit=True)
        out[rel] = None
    except SyntaxError as exc:
        out[rel] = "SyntaxError: %s (line %s)" % (exc.msg, exc.lineno)
imports = {}
for rel in sys.argv[2:]:
    mod = rel[:-3].replace("/", ".")
    if mod.endswith(".__init__"):
        mod = mod[: -len(".__init__")]
    try:
        __import__(mod)
        imports[rel] = None
    except Exception as exc:
        imports[rel] = "%s: %s" % (type(exc).__name__, exc)
print(json.dumps({"compile": out, "import": imports, "version": sys.version.split()[0]}))
"""


@cache
def _report() -> dict:
    exe = python36()
    if exe is None:
        pytest.skip("Python 3.6.15 not found under $(pyenv root)/versions (pyenv install 3.6.15)")
    proc = subprocess.run(
        [str(exe), "-I", "-B", "-c", _CHECK, str(PACKAGE_ROOT), *RUNNER_FILES],
        cwd=PACKAGE_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_interpreter_is_36() -> None:
    assert _report()["version"].startswith("3.6.")


@pytest.mark.parametrize("rel", RUNNER_FILES)
def test_compiles_on_py36(rel: str) -> None:
    assert _report()["compile"][rel] is None, _report()["compile"][rel]


@pytest.mark.parametrize("rel", RUNNER_FILES)
def test_imports_on_bare_py36(rel: str) -> None:
    """No numpy, no framework, no agent dependency at module level."""
    assert _report()["import"][rel] is None, _report()["import"][rel]
