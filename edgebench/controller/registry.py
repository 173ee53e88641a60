"""Push built images to a registry and join per-platform builds into one
manifest list, so that ``docker pull REGISTRY/edgebench/agent:V`` gives an
x86_64 box and a Jetson each its own build.

Pushes go through the Docker SDK (the engine does the upload, with its own
credentials and its insecure-registry rules: 127.0.0.0/8 is plain HTTP by
default). The manifest list goes through the docker CLI's ``docker manifest``,
which reads the per-platform manifests back from the registry and writes the
list (an engine's image store cannot hold one), with the CLI's credential
store for real registries.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from edgebench.controller.errors import ControllerError
from edgebench.controller.image_build import BuiltImage, find_build_cli
from edgebench.controller.images import platform_arch


class PushError(ControllerError):
    """A push or the manifest list failed (a runtime failure, exit code 1)."""


@dataclass(frozen=True)
class PushedImage:
    reference: str  # REGISTRY/edgebench/<name>:<version>, a manifest list when several platforms
    platforms: tuple[str, ...]
    per_platform: tuple[str, ...]  # the per-architecture references the list points at


def _insecure(registry: str) -> bool:
    host = registry.split("/", 1)[0].rsplit(":", 1)[0]
    return host in ("localhost", "::1") or host.startswith("127.")


def _push(client: Any, reference: str, log: Callable[[str], None] | None) -> None:
    repo, _, tag = reference.rpartition(":")
    for line in client.images.push(repo, tag=tag, stream=True, decode=True):
        if "error" in line:
            raise PushError(f"pushing {reference} failed: {line.get('error')}")
        if log is not None and line.get("status"):
            log(f"{reference}: {line['status']} {line.get('progress', '')}".rstrip())


def _cli(args: Sequence[str], timeout: float = 300) -> str:
    cli = find_build_cli().path
    out = subprocess.run([cli, *args], capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise PushError(f"docker {' '.join(args[:2])} failed: {(out.stderr or out.stdout).strip()}")
    return out.stdout


def push_images(built: Sequence[BuiltImage], registry: str, version: str, client: Any | None = None,
                log: Callable[[str], None] | None = None) -> list[PushedImage]:
    """Push every build to REGISTRY/edgebench/<name>:<version>.

    An image built for one platform (or for the engine's own) is pushed under
    that name. An image built for several is pushed per architecture as
    ``...:<version>-<arch>``, then a manifest list named ``...:<version>``
    points at them."""
    import docker

    registry = registry.rstrip("/")
    own = client is None
    client = client or docker.from_env(timeout=600)
    by_name: dict[str, list[BuiltImage]] = {}
    for b in built:
        by_name.setdefault(b.spec.name, []).append(b)
    pushed: list[PushedImage] = []
    try:
        for name, builds in by_name.items():
            target = f"{registry}/{builds[0].spec.tag(version)}"
            if len(builds) == 1:
                client.images.get(builds[0].tag).tag(*target.rsplit(":", 1))
                _push(client, target, log)
                plats = (builds[0].platform,) if builds[0].platform else ()
                pushed.append(PushedImage(target, plats, (target,)))
                continue
            refs = []
            for b in builds:
                if b.platform is None:
                    raise PushError(f"{name}: a manifest list needs every build's platform")
                ref = f"{target}-{platform_arch(b.platform)}"
                client.images.get(b.tag).tag(*ref.rsplit(":", 1))
                _push(client, ref, log)
                refs.append(ref)
            create_manifest_list(target, refs)
            pushed.append(PushedImage(target, tuple(b.platform or "" for b in builds), tuple(refs)))
            if log is not None:
                log(f"{target}: manifest list of {', '.join(refs)}")
    finally:
        if own:
            client.close()
    return pushed


def create_manifest_list(target: str, refs: Sequence[str]) -> None:
    """``docker manifest create`` + ``push``: TARGET lists REFS, each already in the
    registry; the platform of each entry comes from its image config."""
    insecure = ["--insecure"] if _insecure(target) else []
    # The CLI keeps a local draft of a list it created (push --purge deletes it);
    # a draft left by a failed run would make create refuse: drop it first.
    subprocess.run([find_build_cli().path, "manifest", "rm", target], capture_output=True, timeout=30)
    _cli(["manifest", "create", *insecure, target, *refs])
    _cli(["manifest", "push", "--purge", *insecure, target])


def manifest_platforms(target: str) -> list[str]:
    """os/architecture of every entry of the manifest list TARGET, read from the registry."""
    insecure = ["--insecure"] if _insecure(target) else []
    doc = json.loads(_cli(["manifest", "inspect", *insecure, target], timeout=60))
    return sorted(f"{m['platform']['os']}/{m['platform']['architecture']}" for m in doc.get("manifests", []))
