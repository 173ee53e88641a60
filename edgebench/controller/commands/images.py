"""``controller images``: list, build and check the runner and agent images."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from edgebench.controller.commands._options import console, err_console, fail
from edgebench.controller.images import (
    BuildError,
    BuildOptions,
    BuiltImage,
    ImagesError,
    build_images,
    catalogue,
    check_wheels,
    lint,
    select,
)

app = typer.Typer(help="Runner and agent images (docs/IMAGES.md).", no_args_is_help=True)

BackendOpt = Annotated[list[str] | None, typer.Option(
    "--backend", "-b", help="A backend, an image name or 'agent' (repeatable; default: all).")]
VariantOpt = Annotated[str, typer.Option(help="gpu, cpu or all.")]
SourceOpt = Annotated[Path | None, typer.Option(help="edgebench source checkout (default: this one).")]


def _default_ca() -> Path | None:
    path = os.environ.get("PIP_CERT")
    return Path(path) if path and Path(path).is_file() else None


def _version() -> str:
    from edgebench.agent.fingerprint import agent_version

    return agent_version()


@app.command("list")
def list_cmd(source: SourceOpt = None) -> None:
    """The images the Dockerfiles define, with their bases and frameworks."""
    try:
        specs = catalogue(source)
    except ImagesError as exc:
        raise fail(str(exc)) from None
    table = Table(title="edgebench images")
    for col in ("image", "backend", "variant", "CUDA", "Python", "frameworks", "default base", "Dockerfile"):
        table.add_column(col)
    for spec in select(specs):
        table.add_row(f"edgebench/{spec.name}", spec.backend, spec.variant, spec.cuda, spec.python,
                      escape(" ".join(spec.frameworks)), spec.default_base, str(spec.dockerfile))
    console.print(table)


@app.command()
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
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print the build output.")] = False,
    source: SourceOpt = None,
) -> None:
    """Build images, tagged edgebench/<name>:<version>, with OCI and edgebench labels."""
    args: dict[str, str] = {}
    for item in build_arg or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise fail(f"--build-arg {item!r}: expected KEY=VALUE")
        args[key] = value
    try:
        specs = select(catalogue(source), backend or [], variant)
    except ImagesError as exc:
        raise fail(str(exc)) from None
    opts = BuildOptions(version=version or _version(), base_image=base_image,
                        ca_bundle=ca_bundle or _default_ca(), pip_conf=pip_conf, wheelhouse=wheelhouse,
                        build_args=args, docker_host=docker_host)

    def done(b: BuiltImage) -> None:
        console.print(f"built [bold]{b.tag}[/bold] {b.image_id[7:19]} in {b.seconds:.0f} s", highlight=False)

    console.print(f"building {len(specs)} image(s): {', '.join(s.name for s in specs)}", highlight=False)
    try:
        build_images(specs, opts, source, log=err_console.print if verbose else None, on_built=done)
    except BuildError as exc:
        raise fail(str(exc), code=1) from None
    except ImagesError as exc:
        raise fail(str(exc)) from None


@app.command()
def check(
    backend: BackendOpt = None,
    variant: VariantOpt = "gpu",
    wheels: Annotated[bool, typer.Option(help="Check that each pinned wheel exists for the image.")] = True,
    ca_bundle: Annotated[Path | None, typer.Option(help="CA bundle for pip (default: $PIP_CERT).")] = None,
    source: SourceOpt = None,
) -> None:
    """Lint Dockerfiles with hadolint and check their pinned wheels on the index,
    without building (for images whose bases cannot be pulled here)."""
    try:
        specs = select(catalogue(source), backend or [], variant)
    except ImagesError as exc:
        raise fail(str(exc)) from None
    table = Table(title="image checks")
    for col in ("image", "check", "ok", "detail"):
        table.add_column(col)
    failed = False
    for spec in specs:
        try:
            findings = lint(spec, source)
        except ImagesError as exc:
            raise fail(str(exc)) from None
        failed |= bool(findings)
        table.add_row(spec.name, "hadolint", "[red]no[/red]" if findings else "yes", escape(findings))
        if wheels and spec.backend != "agent":
            for result in check_wheels(spec, ca_bundle or _default_ca()):
                failed |= not result.ok
                table.add_row(spec.name, escape(result.requirement), "yes" if result.ok else "[red]no[/red]",
                              escape(result.detail))
    console.print(table)
    if failed:
        raise typer.Exit(1)
