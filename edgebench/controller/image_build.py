"""Building the images (the catalogue is :mod:`edgebench.controller.images`).

Builds go through the docker CLI with BuildKit, not the Docker SDK: the SDK
speaks the engine's legacy /build endpoint, which has no BuildKit secrets,
and the images take site settings (a proxy's CA bundle, a pip.conf for an
index mirror or a wheelhouse) as optional secrets, so that those never land
in a layer, in the image history, or in a layer's cache key. Everything
after the build (ids, labels, running, deploying) uses the SDK.

Several platforms (``linux/amd64`` and ``linux/arm64``, the latter under QEMU
on an x86_64 builder) are built one after the other, each image tagged with
its architecture; :mod:`edgebench.controller.registry` pushes them and joins
them into one manifest list. One build per platform, rather than one
multi-platform build, because an engine's own image store (the docker.io
client's built-in BuildKit, without buildx) holds one platform per tag.
"""

from __future__ import annotations

import configparser
import contextlib
import functools
import http.server
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from edgebench.controller.errors import ControllerError
from edgebench.controller.images import PLATFORMS, ImagesError, ImageSpec, default_source, platform_arch


class BuildError(ControllerError):
    """docker build failed (a runtime failure, exit code 1)."""

    def __init__(self, tag: str, tail: str):
        super().__init__(f"building {tag} failed:\n{tail}")
        self.tag = tag
        self.tail = tail


# `docker info` Architecture -> platform
_ENGINE_ARCH = {"x86_64": "linux/amd64", "amd64": "linux/amd64", "aarch64": "linux/arm64", "arm64": "linux/arm64"}


def engine_platform(docker_host: str | None = None) -> str:
    """The platform of the Docker engine that builds (linux/amd64 on x86_64, linux/arm64 on a Jetson)."""
    import docker

    try:
        client = docker.DockerClient(base_url=docker_host) if docker_host else docker.from_env()
        try:
            machine = str(client.info().get("Architecture", ""))
        finally:
            client.close()
    except docker.errors.DockerException as exc:
        raise ImagesError(f"no Docker engine to build on ({exc}); DOCKER_HOST or --docker-host names one") from exc
    platform = _ENGINE_ARCH.get(machine)
    if platform is None:
        raise ImagesError(f"the engine runs on {machine!r}; edgebench builds for {', '.join(PLATFORMS)}")
    return platform



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
    # replaces every image's BASE_IMAGE; "{arch}" in it becomes amd64/arm64 per platform
    # (local bases are per architecture: local/debian:bookworm-{arch})
    base_image: str | None = None
    # build for these platforms (--platform); empty: the engine's own, tagged as before.
    # With several, each image is tagged <tag>-<arch> (registry.push_images joins them).
    platforms: tuple[str, ...] = ()
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
    platform: str | None = None  # None: the engine's own, no --platform given


def build_tag(spec: ImageSpec, version: str, platform: str | None, several: bool) -> str:
    """edgebench/<name>:<version>, or ...:<version>-<arch> when several platforms are built."""
    tag = spec.tag(version)
    return f"{tag}-{platform_arch(platform)}" if several and platform else tag


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


def base_for(base_image: str | None, platform: str | None) -> str | None:
    """The BASE_IMAGE to build on: ``{arch}`` filled in for the platform."""
    if base_image is None or "{arch}" not in base_image:
        return base_image
    if platform is None:
        raise ImagesError(f"--base-image {base_image} names an architecture: give --platform too")
    return base_image.replace("{arch}", platform_arch(platform))


def build_command(cli: BuildCli, spec: ImageSpec, context: Path, opts: BuildOptions,
                  secrets: dict[str, Path], platform: str | None = None, tag: str | None = None,
                  builder: str | None = None) -> list[str]:
    """The docker build command line; ``builder`` is the engine's own platform.

    A Dockerfile with a ``BYTECODE`` argument byte-compiles its packages in a
    stage of the builder's platform when the target is another one (an arm64
    image under QEMU), from ``BUILD_BASE_IMAGE``: the base for the builder's
    platform (``{arch}`` filled in with the builder's)."""
    created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    cmd = [*cli.command(), "--progress=plain", "--network", opts.network,
           "-f", str(context / spec.dockerfile), "-t", tag or spec.tag(opts.version),
           "--build-arg", f"EDGEBENCH_VERSION={opts.version}",
           # labels given here change only the image config, never a layer's cache key
           "--label", f"org.opencontainers.image.created={created}"]
    if platform:
        cmd += ["--platform", platform]
    if opts.revision:
        cmd += ["--label", f"org.opencontainers.image.revision={opts.revision}"]
    base = base_for(opts.base_image, platform)
    if base:
        cmd += ["--build-arg", f"BASE_IMAGE={base}"]
    derived: dict[str, str] = {}
    if "BYTECODE" in spec.args and platform and builder and platform != builder:
        derived["BYTECODE"] = "cross"
    if "BUILD_BASE_IMAGE" in spec.args and opts.base_image:
        derived["BUILD_BASE_IMAGE"] = base_for(opts.base_image, builder or platform) or opts.base_image
    # the platform's own pins, unless the caller set them
    args = {**spec.platform_args(platform), **derived, **opts.build_args}
    for key, value in args.items():
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
    builder = _ENGINE_ARCH.get(str(client.info().get("Architecture", "")))
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
        several = len(opts.platforms) > 1
        for spec in specs:
            missing = [p for p in opts.platforms if p not in spec.platforms]
            if missing:
                raise ImagesError(f"{spec.dockerfile} does not build for {', '.join(missing)} "
                                  f"(its platforms: {' '.join(spec.platforms)})")
            context = stage_context(spec, source, tmp / spec.name)
            for platform in opts.platforms or (None,):
                tag = build_tag(spec, opts.version, platform, several)
                cmd = build_command(cli, spec, context, opts, secrets, platform, tag, builder)
                t0 = time.monotonic()
                _run_build(cmd, env, tag, log)
                image = client.images.get(tag)
                result = BuiltImage(spec, tag, str(image.id), time.monotonic() - t0, platform)
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
