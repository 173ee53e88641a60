"""The runner and agent images: the catalogue, read from the Dockerfiles.

The Dockerfiles under images/ are the single source of truth: the catalogue
is read from them (their ARG defaults and LABELs), and so is each build's
context (exactly the paths their COPY instructions name). Builds are
:mod:`edgebench.controller.image_build`, checks without building
:mod:`edgebench.controller.image_checks`, pushes and manifest lists
:mod:`edgebench.controller.registry`.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edgebench.controller.errors import ControllerUsageError

REGISTRY_PREFIX = "edgebench"
VARIANTS = ("gpu", "cpu", "jetson")
# Dockerfile suffix -> variant: images/<backend>/Dockerfile, Dockerfile.cpu, Dockerfile.jetson
_SUFFIX_VARIANT = {"": "gpu", ".cpu": "cpu", ".jetson": "jetson"}
PLATFORMS = ("linux/amd64", "linux/arm64")
DEFAULT_PLATFORMS = ("linux/amd64",)  # a Dockerfile without an edgebench.platforms label


class ImagesError(ControllerUsageError):
    """An image request that cannot be met: unknown backend or variant, no source checkout, no tool."""


# -- the catalogue ---------------------------------------------------------------------
@dataclass(frozen=True)
class ImageSpec:
    """One Dockerfile: images/<backend>/Dockerfile (gpu) or Dockerfile.cpu."""

    name: str  # the image name after "edgebench/": keras-jax, keras-jax-cpu, agent
    backend: str  # a runner backend, or "agent"
    variant: str  # gpu | cpu | jetson
    dockerfile: Path  # relative to the source root
    args: dict[str, str] = field(default_factory=dict)  # ARG defaults
    labels: dict[str, str] = field(default_factory=dict)  # LABELs with ARG defaults substituted
    copies: tuple[str, ...] = ()  # COPY sources: the build context

    @property
    def default_base(self) -> str:
        return self.args.get("BASE_IMAGE", "")

    @property
    def frameworks(self) -> list[str]:
        """What the edgebench.frameworks label reports (the default platform's pins)."""
        return self.labels.get("edgebench.frameworks", self.args.get("FRAMEWORKS", "")).split()

    @property
    def platforms(self) -> tuple[str, ...]:
        """The platforms this Dockerfile builds for (its edgebench.platforms label)."""
        return tuple(self.labels.get("edgebench.platforms", "").split()) or DEFAULT_PLATFORMS

    def platform_args(self, platform: str | None) -> dict[str, str]:
        """Build arguments a platform needs beyond the defaults: ``FRAMEWORKS_ARM64``
        replaces ``FRAMEWORKS`` on linux/arm64 where the pins differ there (torch
        2.13's aarch64 wheel on PyPI is a CUDA build, 2.9.1 the last CPU one)."""
        arch = platform_arch(platform) if platform else None
        override = self.args.get(f"FRAMEWORKS_{arch.upper()}") if arch else None
        return {"FRAMEWORKS": override} if override else {}

    def pins_for(self, platform: str | None = None) -> list[str]:
        """Requirements pip installs from PyPI on that platform (frameworks and support)."""
        frameworks = self.platform_args(platform).get("FRAMEWORKS", self.args.get("FRAMEWORKS", ""))
        return frameworks.split() + self.args.get("SUPPORT", "").split()

    @property
    def pinned(self) -> list[str]:
        """Every requirement that pip installs by name, on the default platform: the
        frameworks and support pins, and on Jetson images the wheels that come from
        NVIDIA's or a project's own index (``JETSON_WHEELS``)."""
        return self.args.get("JETSON_WHEELS", "").split() + self.pins_for()

    @property
    def python(self) -> str:
        return self.labels.get("edgebench.python", "")

    @property
    def cuda(self) -> str:
        return self.labels.get("edgebench.cuda", "none")

    def tag(self, version: str) -> str:
        return f"{REGISTRY_PREFIX}/{self.name}:{version}"


def platform_arch(platform: str) -> str:
    """linux/arm64 -> arm64; refuses anything but the platforms edgebench builds."""
    if platform not in PLATFORMS:
        raise ImagesError(f"unknown platform {platform!r}; known: {', '.join(PLATFORMS)}")
    return platform.split("/", 1)[1]


def parse_platforms(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """'linux/amd64,linux/arm64' (or a list of such) -> validated, de-duplicated platforms."""
    if not text:
        return ()
    items = [text] if isinstance(text, str) else list(text)
    out = [p.strip() for item in items for p in item.split(",") if p.strip()]
    for p in out:
        platform_arch(p)
    return tuple(dict.fromkeys(out))


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
        if path.suffix not in _SUFFIX_VARIANT:
            continue
        args, labels, copies = parse_dockerfile(path.read_text())
        backend = labels.get("edgebench.backend", path.parent.name)
        variant = labels.get("edgebench.variant", _SUFFIX_VARIANT[path.suffix])
        name = labels.get("org.opencontainers.image.title", "").removeprefix(f"{REGISTRY_PREFIX}/") or (
            path.parent.name + path.suffix.replace(".", "-"))
        specs[name] = ImageSpec(name, backend, variant, path.relative_to(source), args, labels, copies)
    return specs


def select(specs: dict[str, ImageSpec], backends: Sequence[str] = (), variant: str = "all",
           platforms: Sequence[str] = ()) -> list[ImageSpec]:
    """Images for the given backends (or image names), variant and platforms; all when empty.

    With platforms, only images whose Dockerfile builds for every one of them
    are chosen; an image asked for by name that does not is an error."""
    if variant not in (*VARIANTS, "all"):
        raise ImagesError(f"unknown variant {variant!r} ({', '.join(VARIANTS)} or all)")
    known = {s.backend for s in specs.values()} | set(specs)
    unknown = [b for b in backends if b not in known]
    if unknown:
        raise ImagesError(f"unknown backend or image {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    chosen = [s for s in specs.values()
              if (not backends or s.backend in backends or s.name in backends)
              and (variant == "all" or s.variant == variant or s.backend == "agent")]
    if platforms:
        named = [s for s in chosen if s.name in backends and not set(platforms) <= set(s.platforms)]
        if named:
            raise ImagesError("; ".join(f"{s.name} builds for {' '.join(s.platforms)} only" for s in named))
        chosen = [s for s in chosen if set(platforms) <= set(s.platforms)]
    return sorted(chosen, key=lambda s: (s.backend != "agent", s.name))


