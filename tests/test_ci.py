""".ci/run and scripts/provision.sh, run for real on a copy of the repository whose
heavy steps (provisioning, make) are replaced by stubs on PATH: the step lines,
the final line (also when a step fails), the check that no provisioned group was
skipped, and the one line a non-root user gets."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO


def _exe(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/usr/bin/env bash\n" + text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / ".ci").mkdir(parents=True)
    shutil.copy(REPO / ".ci" / "run", root / ".ci" / "run")
    _exe(root / "scripts" / "provision.sh", "echo provisioned\n")
    _exe(root / "scripts" / "setup-qemu.sh", "echo qemu ready\n")
    return root


def _run(tree: Path, make_script: str) -> subprocess.CompletedProcess[str]:
    bin_dir = tree.parent / "bin"
    _exe(bin_dir / "make", make_script)
    return subprocess.run(["bash", str(tree / ".ci" / "run")], capture_output=True, text=True, timeout=120,
                          check=False, env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})


def test_a_passing_run_shows_step_durations_and_ends_with_the_outcome(tree: Path) -> None:
    proc = _run(tree, 'echo "{}" > "$EDGEBENCH_SKIP_SUMMARY"; echo "3 passed in 1.0s"\n')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "== provision: ok in " in proc.stdout and "== make test: ok in " in proc.stdout
    assert proc.stdout.rstrip().splitlines()[-1].startswith("== .ci/run: passed in ")


def test_a_failing_step_still_prints_the_final_line(tree: Path) -> None:
    proc = _run(tree, "echo '1 failed, 2 passed'; exit 2\n")
    assert proc.returncode == 1
    assert "== make test: FAILED (exit 2) in " in proc.stdout
    last = proc.stdout.rstrip().splitlines()[-1]
    assert last.startswith("== .ci/run: FAILED in ") and last.endswith("(exit 1)")


def test_a_skipped_provisioned_group_fails_the_run(tree: Path) -> None:
    skips = {"docker": {"count": 12, "reasons": ["no Docker engine"]}, "gpu": {"count": 1, "reasons": ["no GPU"]}}
    proc = _run(tree, f"echo '{json.dumps(skips)}' > \"$EDGEBENCH_SKIP_SUMMARY\"; echo '5 passed, 13 skipped'\n")
    assert proc.returncode == 1
    assert "docker: 12 test(s) skipped although .ci/run provisions it: no Docker engine" in proc.stdout
    assert "skipped, not provisioned here: gpu 1" in proc.stdout
    assert proc.stdout.rstrip().splitlines()[-1].startswith("== .ci/run: FAILED")


def test_a_non_root_user_gets_one_line_naming_the_command(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    shutil.copy2(REPO / "scripts" / "provision.sh", root / "scripts")
    _exe(root / "scripts" / "setup-legacy-venvs.sh", "echo 'venvs: up to date'\n")
    bin_dir = tmp_path / "bin"
    _exe(bin_dir / "id", "echo 1000\n")  # not root
    _exe(bin_dir / "dpkg", "exit 1\n")  # no docker.io
    empty = tmp_path / "empty"
    empty.mkdir()
    for tool in ("bash", "dirname", "ls", "grep", "head", "printf", "cat", "env"):
        found = shutil.which(tool)
        if found:
            (empty / tool).symlink_to(found)
    proc = subprocess.run(["bash", str(root / "scripts" / "provision.sh")], capture_output=True, text=True,
                          timeout=60, check=False, env={"PATH": f"{bin_dir}:{empty}", "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("make test: missing ") and "a Docker engine" in line
    assert "run 'sudo scripts/provision.sh' first" in line
