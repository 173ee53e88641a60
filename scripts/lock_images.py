"""Write images/common/constraints/<image>.txt: every package each image installs, pinned.

    .venv/bin/python scripts/lock_images.py [IMAGE ...]      (make lock)

Each image's Dockerfile sets ``ARG PIP_CONSTRAINT`` to its file, so pip in the build
installs exactly these versions: two builds of one tag get the same packages even
when a dependency released in between. The resolution is pip's own, for the image's
Python and platform (``pip install --dry-run --report`` with ``--python-version`` and
``--platform``: nothing is installed, and wheels are not downloaded where the index
serves their metadata), against PyPI with this machine's pip configuration set aside
(its local wheel folders and constraints must not decide what a public build gets).

A lock must hold on every base an image is built on: the Dockerfile's default (Python 3.12
for the current stacks) and the local Debian 12 base the tests and CI build on (Python 3.11).
So the current stacks are resolved for Python 3.11 and then checked on 3.12 (a release that
drops 3.11, numpy 2.5, must not be picked); the 2019 stacks only ever run on 3.6.

The CPU torch images take torch from PyTorch's own index, which cannot be reached where the
locks are made: their torch pin is the image's own (``torch==2.13.0+cpu`` on linux/amd64, PyPI's
CPU ``torch==2.9.1`` on linux/arm64), and the rest is resolved on PyPI with torch's requirements
as PyPI's wheel of the same version states them, evaluated for each platform, less the CUDA
runtime that only the PyPI build carries (``nvidia-*``, ``cuda-*``, ``triton``). Pins that differ
between the two platforms carry a ``platform_machine`` marker (:func:`resolve_torch_cpu`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edgebench.controller.image_checks import manylinux_platforms  # noqa: E402
from edgebench.controller.images import ImageSpec, catalogue, platform_arch  # noqa: E402

OUT = REPO / "images" / "common" / "constraints"


def requirements(spec: ImageSpec, platform: str | None = None) -> list[str]:
    if spec.backend == "agent":
        sys.path.insert(0, str(REPO / "images" / "agent"))
        import tomllib

        doc = tomllib.loads((REPO / "pyproject.toml").read_text())
        return [*doc["build-system"]["requires"], *doc["project"]["dependencies"],
                *doc["project"]["optional-dependencies"]["docker"]]
    return spec.pins_for(platform) if platform else spec.pinned


# the oldest Python each image's Python is built with somewhere (the tests' Debian 12 base has 3.11)
OLDEST_PYTHON = {"3.12": "3.11"}


def _report(spec: ImageSpec, python: str, platform: str | None, reqs: list[str], extra: list[str],
            index_url: str | None) -> list[dict]:
    """pip's dry-run install report (its ``install`` list) for reqs on the image's Python and platform."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
               "--report", str(report), "--only-binary=:all:", "--python-version", python,
               "--implementation", "cp", "--target", str(Path(tmp) / "target"), "--timeout", "30", "--retries", "1",
               *extra]
        for plat in manylinux_platforms(spec, platform):
            cmd += ["--platform", plat]
        if index_url:
            cmd += ["--extra-index-url", index_url]
        env = {**os.environ, "PIP_CONFIG_FILE": os.devnull}
        env.pop("PIP_FIND_LINKS", None)
        env.pop("PIP_CONSTRAINT", None)
        proc = subprocess.run([*cmd, *reqs], capture_output=True, text=True, env=env, timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "pip failed")
        installed: list[dict] = json.loads(report.read_text())["install"]
    return installed


# the CUDA runtime of PyPI's torch wheels; PyTorch's CPU builds depend on none of it
_CUDA_ONLY = ("nvidia-", "cuda-", "triton")
_MACHINE = {"amd64": "x86_64", "arm64": "aarch64"}  # platform_machine of linux/<arch>


def torch_requirements(spec: ImageSpec, version: str, platform: str, python: str) -> list[str]:
    """torch's requirements at ``version`` (public part) for ``platform``, as PyPI's wheel states them, markers
    evaluated for that platform (pip evaluates them for the machine it runs on), CUDA runtime left out."""
    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    [meta] = [i["metadata"] for i in _report(spec, python, platform, [f"torch=={version}"], ["--no-deps"], None)]
    env = {k: str(v) for k, v in default_environment().items()}
    env.update(platform_machine=_MACHINE[platform_arch(platform)], platform_system="Linux", sys_platform="linux",
               python_version=python, python_full_version=f"{python}.0", extra="")
    out = []
    for line in meta.get("requires_dist") or []:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        if req.name.lower().startswith(_CUDA_ONLY):
            continue
        req.marker = None
        out.append(str(req))
    return out


def resolve_torch_cpu(spec: ImageSpec) -> list[str]:
    """The lock of a CPU torch image, one file for both platforms (see the module's docstring)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    per_platform: dict[str, dict[str, str]] = {}
    for platform in spec.platforms:
        reqs = requirements(spec, platform)
        [torch] = [Requirement(r) for r in reqs if canonicalize_name(Requirement(r).name) == "torch"]
        (version,) = [s.version for s in torch.specifier]
        others = [r for r in reqs if canonicalize_name(Requirement(r).name) != "torch"]
        pins: dict[str, str] = {"torch": version}
        # every Python the image is built on (a requirement can hold on one only: setuptools on >= 3.12)
        # the oldest first; the newer one under its pins (a release that drops the oldest must not be picked)
        for py in pythons(spec):
            deps = torch_requirements(spec, version.split("+")[0], platform, py)
            with tempfile.NamedTemporaryFile("w", suffix=".txt") as held:
                held.write("".join(f"{n}=={v}\n" for n, v in pins.items() if n != "torch"))
                held.flush()
                installed = _report(spec, py, platform, [*others, *deps], ["-c", held.name], None)
            for item in installed:
                name, got = item["metadata"]["name"].lower(), item["metadata"]["version"]
                if pins.setdefault(name, got) != got:
                    raise RuntimeError(f"{name}: {pins[name]} on one Python, {got} on another ({platform})")
        per_platform[platform] = pins
    names = sorted(set().union(*per_platform.values()))
    lines = []
    for name in names:
        versions = {p: pins.get(name) for p, pins in per_platform.items()}
        if len(set(versions.values())) == 1:
            lines.append(f"{name}=={next(iter(versions.values()))}")
            continue
        for platform, pinned in versions.items():
            if pinned is not None:
                lines.append(f'{name}=={pinned}; platform_machine == "{_MACHINE[platform_arch(platform)]}"')
    return lines


def resolve(spec: ImageSpec, python: str | None = None, constraints: Path | None = None,
            platform: str | None = None) -> list[str]:
    """name==version for every distribution pip would install into the image (under ``constraints``),
    on ``platform`` (default: the image's first, linux/amd64 for the multi-arch ones)."""
    python = python or OLDEST_PYTHON.get(spec.python, spec.python)
    extra = ["-c", str(constraints)] if constraints is not None else []
    installed = _report(spec, python, platform, requirements(spec, platform), extra, spec.args.get("TORCH_INDEX_URL"))
    return sorted(f"{i['metadata']['name'].lower()}=={i['metadata']['version']}" for i in installed)


def resolve_with_interpreter(spec: ImageSpec) -> list[str]:
    """For an image whose dependencies include sdists (the Python 3.6 stacks: termcolor 1.1.0 has no
    wheel), which pip cannot resolve for another interpreter: the image's own Python version from
    pyenv, the image's pip, and ``pip download`` (this does download the wheels, hundreds of MB)."""
    import shutil

    from packaging.utils import parse_sdist_filename, parse_wheel_filename

    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    pythons = sorted((pyenv / "versions").glob(f"{spec.python}.*/bin/python"))
    if not pythons:
        raise RuntimeError(f"no Python {spec.python} under {pyenv}/versions (pyenv install it)")
    pip_pin = "pip==21.3.1" if spec.python == "3.6" else "pip"
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PIP_CONFIG_FILE": os.devnull}
        env.pop("PIP_FIND_LINKS", None)
        env.pop("PIP_CONSTRAINT", None)
        venv_python = Path(tmp) / "venv" / "bin" / "python"
        subprocess.run([str(pythons[-1]), "-m", "venv", str(Path(tmp) / "venv")], check=True, timeout=300)
        subprocess.run([str(venv_python), "-m", "pip", "install", "-q", pip_pin], check=True, env=env, timeout=300)
        dest = Path(tmp) / "dl"
        proc = subprocess.run([str(venv_python), "-m", "pip", "download", "-q", "--prefer-binary", "-d", str(dest),
                               *requirements(spec)], capture_output=True, text=True, env=env, timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "pip failed")
        pins = []
        for f in sorted(dest.iterdir()):
            name, version = (parse_wheel_filename(f.name)[:2] if f.suffix == ".whl"
                             else parse_sdist_filename(f.name))
            pins.append(f"{name}=={version}")
        shutil.rmtree(dest)
    return sorted(pins)


def pythons(spec: ImageSpec) -> list[str]:
    oldest = OLDEST_PYTHON.get(spec.python)
    return [oldest, spec.python] if oldest else [spec.python]


def write(spec: ImageSpec, pins: list[str]) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{spec.name}.txt"
    path.write_text(
        f"# edgebench/{spec.name}: pip constraints (ARG PIP_CONSTRAINT in {spec.dockerfile}).\n"
        f"# Generated by scripts/lock_images.py (make lock) on {datetime.now(timezone.utc):%Y-%m-%d} for "
        f"Python {' and '.join(pythons(spec))}, {manylinux_platforms(spec)[0]}; do not edit by hand.\n"
        + "\n".join(pins) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="*", help="image names (default: all)")
    args = parser.parse_args(argv)
    specs = catalogue(REPO)
    failed = 0
    for name in args.images or sorted(specs):
        spec = specs[name]
        if spec.variant == "jetson":  # NVIDIA's indexes, arm64 only: built and pinned on the Jetson itself
            print(f"{name}: not locked (Jetson wheels come from {spec.args.get('JETSON_INDEX_URL') or 'a URL'})")
            continue
        if spec.args.get("TORCH_INDEX_URL"):  # torch from PyTorch's own index (the module's docstring)
            try:
                path = write(spec, resolve_torch_cpu(spec))
            except (RuntimeError, subprocess.SubprocessError) as exc:
                print(f"{name}: not locked ({exc}); {OUT / (name + '.txt')} left as it was", file=sys.stderr)
                failed += 1
                continue
            print(f"{name}: {len(path.read_text().splitlines()) - 2} pins -> {path.relative_to(REPO)}")
            continue
        try:
            try:
                pins = resolve(spec)
            except RuntimeError as exc:
                if "No matching distribution" not in str(exc) or spec.args.get("TORCH_INDEX_URL"):
                    raise
                pins = resolve_with_interpreter(spec)  # an sdist among the dependencies
        except (RuntimeError, subprocess.SubprocessError) as exc:
            print(f"{name}: not locked ({exc}); {OUT / (name + '.txt')} left as it was", file=sys.stderr)
            failed += 1
            continue
        path = write(spec, pins)
        for python in pythons(spec)[1:]:  # the same pins must install on the newer Python too
            try:
                again = resolve(spec, python, constraints=path)
            except RuntimeError as exc:
                print(f"{name}: the lock does not install on Python {python}: {exc}", file=sys.stderr)
                failed += 1
                break
            if again != pins:
                print(f"{name}: Python {python} adds or drops packages: {sorted(set(again) ^ set(pins))}",
                      file=sys.stderr)
        if "linux/arm64" in spec.platforms:  # one lock for both platforms of a multi-arch image
            try:
                arm = resolve(spec, constraints=path, platform="linux/arm64")
                extra = sorted(set(arm) - set(pins))
                if extra:
                    print(f"{name}: on linux/arm64 also {extra} (FRAMEWORKS_ARM64)")
            except RuntimeError as exc:
                print(f"{name}: the lock does not install on linux/arm64: {exc}", file=sys.stderr)
                failed += 1
        print(f"{name}: {len(pins)} packages -> {path.relative_to(REPO)}")
    return 1 if failed and not args.images else 0


if __name__ == "__main__":
    sys.exit(main())
