"""The distribution installs one top-level import package, ``edgebench``.

A wheel built from this checkout goes into a fresh virtual environment (no
dependencies: only where things land is checked). ``edgebench.agent`` must be
found there and the old generic names (``agent``, ``controller``, ``schemas``,
``runner``) must not, so installing edgebench never clobbers another
distribution's packages.
"""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
        capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = out.glob("edgebench-*.whl")
    return path


def test_wheel_has_one_top_level_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert tops == {"edgebench"}, tops
    assert "edgebench/schemas/json/job.schema.json" in names  # package data travels
    assert "edgebench/runner/__main__.py" in names


def test_fresh_venv_imports_edgebench_only(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    # find_spec imports only the parent package (edgebench/__init__.py, which has no dependencies)
    check = ("import importlib.util as u, json; "
             "print(json.dumps({m: u.find_spec(m) is not None for m in "
             "('edgebench.agent', 'edgebench.controller', 'edgebench.runner', 'edgebench.schemas', "
             "'agent', 'controller', 'schemas', 'runner')}))")
    proc = subprocess.run([str(python), "-I", "-c", check], capture_output=True, text=True, cwd=tmp_path,
                          timeout=60, check=True)
    import json

    found = json.loads(proc.stdout)
    assert found == {"edgebench.agent": True, "edgebench.controller": True, "edgebench.runner": True,
                     "edgebench.schemas": True, "agent": False, "controller": False, "schemas": False,
                     "runner": False}
