"""``controller images``: list, build and check the runner and agent images."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from edgebench.common.console import Column, markup
from edgebench.common.version import docker_tag
from edgebench.controller.commands._options import JsonOpt, out, output
from edgebench.controller.errors import ControllerError, ControllerUsageError
from edgebench.controller.image_build import BuildOptions, BuiltImage, build_images, engine_platform
from edgebench.controller.image_checks import check_wheels, lint
from edgebench.controller.images import catalogue, parse_platforms, select

app = typer.Typer(help="Runner and agent images (docs/IMAGES.md).", no_args_is_help=True)

BackendOpt = Annotated[list[str] | None, typer.Option(
    "--backend", "-b", help="A backend, an image name or 'agent' (repeatable; default: all).")]
VariantOpt = Annotated[str, typer.Option(help="gpu, cpu, jetson or all.")]
SourceOpt = Annotated[Path | None, typer.Option(help="edgebench source checkout (default: this one).")]


def _default_ca() -> Path | None:
    path = os.environ.get("PIP_CERT")
    return Path(path) if path and Path(path).is_file() else None


LIST_COLUMNS = (
    Column("image"), Column("backend"), Column("variant"), Column("platforms", fmt=" ".join),
    Column("cuda", "CUDA"), Column("python", "Python"),
    Column("frameworks", fmt=" ".join), Column("default_base", "default base"), Column("dockerfile", "Dockerfile"),
)
CHECK_COLUMNS = (Column("image"), Column("check"),
                 Column("ok", style=lambda v: {"yes": None, "not checked": "yellow"}.get(v, "red")),
                 Column("detail"))


@app.command("list", epilog="Example: controller images list --json")
def list_cmd(source: SourceOpt = None, as_json: JsonOpt = False) -> None:
    """The images the Dockerfiles define, with their bases and frameworks."""
    records = [{"image": f"edgebench/{spec.name}", "name": spec.name, "backend": spec.backend,
                "variant": spec.variant, "platforms": list(spec.platforms), "cuda": spec.cuda, "python": spec.python,
                "frameworks": list(spec.frameworks), "default_base": spec.default_base,
                "dockerfile": str(spec.dockerfile)} for spec in select(catalogue(source))]
    if as_json:
        output(True).json(records)
        return
    out.table(LIST_COLUMNS, records, title="edgebench images")


@app.command(epilog="Example: controller images build -b keras-jax --variant cpu --base-image local/debian:bookworm")
def build(
    backend: BackendOpt = None,
    variant: VariantOpt = "all",
    base_image: Annotated[str | None, typer.Option(
        help="Replace every image's BASE_IMAGE (a mirror, or a local base where Docker Hub is unreachable).")]
    = None,
    ca_bundle: Annotated[Path | None, typer.Option(
        help="CA bundle pip trusts inside the build (default: $PIP_CERT). Passed as a BuildKit secret.",
        exists=True, dir_okay=False)] = None,
    pip_conf: Annotated[Path | None, typer.Option(
        help="A pip.conf for the build (index mirror ...), passed as a BuildKit secret.",
        exists=True, dir_okay=False)] = None,
    wheelhouse: Annotated[Path | None, typer.Option(
        help="A directory of wheels served to the build as pip find-links.", exists=True, file_okay=False)]
    = None,
    build_arg: Annotated[list[str] | None, typer.Option(
        "--build-arg", help="KEY=VALUE passed to docker build (repeatable).")] = None,
    version: Annotated[str | None, typer.Option(help="Image tag (default: the edgebench version).")] = None,
    docker_host: Annotated[str | None, typer.Option(help="Build on this engine (default: DOCKER_HOST).")]
    = None,
    platform: Annotated[str | None, typer.Option(
        help="linux/amd64, linux/arm64 or both, comma-separated (default: the engine's own; arm64 on x86_64 "
        "needs QEMU: scripts/setup-qemu.sh). With several, images are tagged <version>-<arch>.")] = None,
    push: Annotated[str | None, typer.Option(
        help="Push to this registry (host:port); several platforms become one manifest list.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print the build output.")] = False,
    source: SourceOpt = None,
) -> None:
    """Build images, tagged edgebench/<name>:<version>, with OCI and edgebench labels."""
    args: dict[str, str] = {}
    for item in build_arg or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ControllerUsageError(f"--build-arg {item!r}: expected KEY=VALUE")
        args[key] = value
    # default: the building engine's own platform, so Jetson (arm64-only) images build on a
    # Jetson and are left out on an x86_64 builder unless --platform linux/arm64 asks for them
    platforms = parse_platforms(platform) or (engine_platform(docker_host),)
    specs = select(catalogue(source), backend or [], variant, platforms)
    opts = BuildOptions(version=version or docker_tag(), base_image=base_image, platforms=platforms,
                        ca_bundle=ca_bundle or _default_ca(), pip_conf=pip_conf, wheelhouse=wheelhouse,
                        build_args=args, docker_host=docker_host)

    def done(b: BuiltImage) -> None:
        out.print(f"built [bold]{markup(b.tag)}[/bold] {b.image_id[7:19]} in {b.seconds:.0f} s")

    out.print(f"building {len(specs)} image(s): {', '.join(s.name for s in specs)}")
    log = (lambda line: out.note(markup(line))) if verbose else None
    built = build_images(specs, opts, source, log=log, on_built=done)
    if push:
        from edgebench.controller.registry import push_images

        for pushed in push_images(built, push, opts.version, log=log):
            out.print(f"pushed [bold]{markup(pushed.reference)}[/bold] {' '.join(pushed.platforms)}")


@app.command(epilog="Example: controller images check -b keras-mxnet --variant gpu")
def check(
    backend: BackendOpt = None,
    variant: VariantOpt = "gpu",
    wheels: Annotated[bool, typer.Option(help="Check that each pinned wheel exists for the image.")] = True,
    ca_bundle: Annotated[Path | None, typer.Option(help="CA bundle for pip (default: $PIP_CERT).")] = None,
    source: SourceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Lint Dockerfiles with hadolint and check their pinned wheels on the index,
    without building (for images whose bases cannot be pulled here). Exits 1 when a check fails."""
    specs = select(catalogue(source), backend or [], variant)
    records = []
    for spec in specs:
        findings = lint(spec, source)
        records.append({"image": spec.name, "check": "hadolint", "ok": "no" if findings else "yes",
                        "detail": findings})
        if wheels and spec.backend != "agent":
            for result in check_wheels(spec, ca_bundle or _default_ca()):
                ok = {True: "yes", False: "no", None: "not checked"}[result.ok]
                records.append({"image": spec.name, "check": result.requirement, "ok": ok, "detail": result.detail})
    if as_json:
        output(True).json(records)
    else:
        out.table(CHECK_COLUMNS, records, title="image checks")
    failed = [r for r in records if r["ok"] == "no"]
    if failed:
        raise ControllerError(f"{len(failed)} of {len(records)} image check(s) failed")
