"""The images' constraints files (images/common/constraints/, written by scripts/lock_images.py):
every image that installs from PyPI builds with one, and each one still agrees with what the
image and pyproject.toml ask for, so a changed pin without a new lock fails here, not in a build."""

from __future__ import annotations

import re

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from edgebench.controller.images import catalogue
from tests.conftest import REPO

SPECS = catalogue(REPO)
LOCKS = REPO / "images" / "common" / "constraints"


def _lock(name: str, machine: str = "x86_64") -> dict[str, str]:
    """name -> version for one platform (a line with a platform_machine marker holds for that machine only)."""
    pins = {}
    for line in (LOCKS / f"{name}.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate({"platform_machine": machine}):
                continue
            (spec,) = req.specifier
            pins[canonicalize_name(req.name)] = spec.version
    return pins


def _constraint_arg(name: str) -> str | None:
    text = (REPO / SPECS[name].dockerfile).read_text()
    found = re.search(r"^ARG PIP_CONSTRAINT=(\S+)$", text, re.MULTILINE)
    return found.group(1) if found else None


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_pypi_image_builds_with_its_own_lock(name: str) -> None:
    spec = SPECS[name]
    arg = _constraint_arg(name)
    if spec.variant == "jetson":
        # NVIDIA's Jetson indexes are not reachable where the locks are made; built on the Jetson itself
        assert arg is None
        return
    assert arg == f"/usr/local/lib/edgebench/constraints/{name}.txt"
    assert (LOCKS / f"{name}.txt").is_file(), "run `make lock`"
    # the Dockerfile copies images/common/ to /usr/local/lib/edgebench/ before it installs
    assert "COPY images/common/ /usr/local/lib/edgebench/" in (REPO / spec.dockerfile).read_text()


@pytest.mark.parametrize("name", sorted(n for n in SPECS if (LOCKS / f"{n}.txt").is_file()))
def test_the_lock_agrees_with_the_images_pins(name: str) -> None:
    pins = _lock(name)
    for req in SPECS[name].pinned:
        r = Requirement(req)
        (pinned,) = [s.version for s in r.specifier]
        assert pins.get(canonicalize_name(r.name)) == pinned, f"{req}: lock has {pins.get(r.name)}; run `make lock`"


@pytest.mark.parametrize("name", sorted(n for n in SPECS if SPECS[n].args.get("TORCH_INDEX_URL")))
def test_a_cpu_torch_lock_pins_each_platforms_own_torch(name: str) -> None:
    """PyTorch's +cpu build on linux/amd64, PyPI's CPU build on linux/arm64 (FRAMEWORKS_ARM64), by markers; the
    CUDA runtime of PyPI's wheels (nvidia-*, cuda-*, triton) on neither."""
    spec = SPECS[name]
    for machine, platform in (("x86_64", "linux/amd64"), ("aarch64", "linux/arm64")):
        pins = _lock(name, machine)
        for req in spec.pins_for(platform):
            r = Requirement(req)
            (pinned,) = [s.version for s in r.specifier]
            assert pins.get(canonicalize_name(r.name)) == pinned, (machine, req, pins.get(r.name))
        assert not [n for n in pins if n.startswith(("nvidia-", "cuda-", "triton"))], pins


def test_the_agent_lock_satisfies_pyproject() -> None:
    doc = tomllib.loads((REPO / "pyproject.toml").read_text())
    pins = _lock("agent")
    for line in [*doc["project"]["dependencies"], *doc["project"]["optional-dependencies"]["docker"],
                 *doc["build-system"]["requires"]]:
        req = Requirement(line)
        version = pins.get(canonicalize_name(req.name))
        assert version is not None, f"{req.name} is not in the agent's lock; run `make lock`"
        assert req.specifier.contains(version, prereleases=True), f"{req}: lock has {version}; run `make lock`"
