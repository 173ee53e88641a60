"""The distribution installs one top-level import package, ``edgebench``, and the
README's install routes work (README, "Install").

A wheel built from this checkout goes into a fresh virtual environment.
``edgebench.agent`` must be found there and the old generic names (``agent``,
``controller``, ``schemas``, ``runner``) must not, so installing edgebench never
clobbers another distribution's packages. Then the README's routes for real: the
wheel ``make wheel`` builds, installed with its dependencies, runs ``agent`` and
``controller`` and names the version it was built at; and a checkout installs
with ``pip install <checkout>``.
"""

from __future__ import annotations

import json
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
    # every subpackage travels (a folder without __init__.py is skipped by find_packages)
    packages = {str(p.parent.relative_to(REPO)) for p in (REPO / "edgebench").rglob("*.py")}
    assert {p for p in packages if "__pycache__" not in p} <= {n.rsplit("/", 1)[0] for n in names}
    assert "edgebench/common/settings.py" in names and "edgebench/_version.py" in names


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
    found = json.loads(proc.stdout)
    assert found == {"edgebench.agent": True, "edgebench.controller": True, "edgebench.runner": True,
                     "edgebench.schemas": True, "agent": False, "controller": False, "schemas": False,
                     "runner": False}


def _venv(path: Path) -> Path:
    venv.create(path, with_pip=True)
    return path / "bin"


def test_the_built_wheel_installs_with_its_dependencies_and_runs(wheel: Path, tmp_path: Path) -> None:
    """The README's second route: `make wheel`, copy the file, `pip install edgebench-*.whl` (dependencies
    from the configured index), then the two commands run and name the version the wheel was built at."""
    bin_dir = _venv(tmp_path / "venv")
    proc = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "-q", str(wheel)], capture_output=True,
                          text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from edgebench.common.version import _CHECKOUT, _from_git

    built_at = wheel.name.split("-")[1]
    if (_CHECKOUT / ".git").exists():  # a checkout: the wheel names the commit it was built at
        assert built_at == _from_git(_CHECKOUT) or "+g" in built_at
    for cmd in ("agent", "controller"):
        out = subprocess.run([str(bin_dir / cmd), "--version"], capture_output=True, text=True, timeout=120,
                             cwd=tmp_path, check=True)
        assert out.stdout.strip() == f"{cmd} (edgebench) {built_at}"
    assert not built_at.startswith("0.0.0") and "unknown" not in built_at  # from git, not the fallback
    info = subprocess.run([str(bin_dir / "agent"), "datasets", "--json", "--dataset-root", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, check=True)
    assert any(d["dataset"] == "fashion_mnist" for d in json.loads(info.stdout))


def test_a_checkout_installs_with_pip(tmp_path: Path) -> None:
    """The README's first route: `pip install <checkout>` (here without dependencies: what lands is checked)."""
    bin_dir = _venv(tmp_path / "venv")
    proc = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "-q", "--no-deps", str(REPO)],
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    check = "import edgebench.common.version as v, edgebench._version as b; print(b.version)"
    out = subprocess.run([str(bin_dir / "python"), "-I", "-c", check], capture_output=True, text=True,
                         cwd=tmp_path, timeout=60, check=True)
    assert out.stdout.strip().startswith("0.") and "+g" in out.stdout  # from git, naming the commit
