"""``controller``: the workstation CLI. This module only registers commands;
each lives in controller/commands/<noun>.py and calls library code. Errors
become messages and exit codes in one place: edgebench/common/cli.py."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgebench.common.cli import EdgebenchGroup
from edgebench.common.version import edgebench_version
from edgebench.controller.commands import (
    broker,
    compare,
    demo,
    deploy,
    devices,
    dispatch,
    images,
    inference,
    jobs,
    models,
    pki,
    reconcile,
    report,
    results,
    schema,
    workloads,
)
from edgebench.controller.config import ControllerConfig

app = typer.Typer(cls=EdgebenchGroup, help="edgebench controller: dispatch benchmarks to a fleet and compare results.",
                  no_args_is_help=True, epilog="Exit codes: 0 success, 1 runtime failure, 2 usage error.")


def _version(value: bool) -> None:
    if value:
        print(f"controller (edgebench) {edgebench_version()}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option(
        "--config", help="YAML config [default: $EDGEBENCH_CONFIG, else controller.yaml in the user config dir].",
        show_default=False)] = None,
    broker: Annotated[str | None, typer.Option(
        "--broker", help="mqtt://host:port [default: $EDGEBENCH_BROKER_URL, else mqtt://127.0.0.1:1883].",
        show_default=False)] = None,
    fleet: Annotated[str | None, typer.Option(
        "--fleet", help="Fleet name [default: $EDGEBENCH_FLEET, else default].", show_default=False)] = None,
    store: Annotated[str | None, typer.Option(
        "--store", help="SQLAlchemy URL of the results store [default: $EDGEBENCH_STORE_URL, else "
        "~/.local/share/edgebench/results.db].", show_default=False)] = None,
    secrets_dir: Annotated[Path | None, typer.Option(
        "--secrets-dir", help="Directory of secret files (edgebench_password ...) [default: /run/secrets if present].",
        show_default=False)] = None,
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """Settings come from flags, EDGEBENCH_* variables, secret files and the YAML file, in that order."""
    ctx.obj = ControllerConfig.load(config, secrets_dir, broker_url=broker, fleet=fleet, store_url=store)


app.command(epilog="Example: controller devices --watch")(devices.devices)
app.command(epilog="Example: controller dispatch --all -b keras-jax -w fashion-mnist-mlp --batch-size 32 "
            "--batch-size 64")(dispatch.dispatch)
app.command(epilog="Example: controller jobs --json")(jobs.jobs)
app.command(epilog="Example: controller report --sweep demo-1a2b --baseline keras-jax --format md")(report.report)
app.command("compare", epilog="Example: controller compare nightly-0411 nightly-0412 --fail-on-regression 5")(
    compare.compare_cmd)
app.command(epilog="Example: controller workloads | grep resnet")(workloads.workloads)
app.command(epilog="Example: controller cancel job-1a2b3c4d5e6f -d press-line-3")(jobs.cancel)
app.command(epilog="Example: controller collect --shared-group site-a")(jobs.collect)
app.command(epilog="Example: controller reconcile --dry-run")(reconcile.reconcile)
app.command("dead-letters", epilog="Example: controller dead-letters --limit 20")(reconcile.dead_letters)
app.command(epilog="Example: controller demo -b keras-jax -b keras-tensorflow")(demo.demo)
app.command(epilog="Example: controller broker --port 1883")(broker.broker)
app.add_typer(results.app, name="results")
app.add_typer(schema.app, name="schema")
app.add_typer(images.app, name="images")
app.add_typer(pki.app, name="pki")
app.add_typer(models.app, name="models")
app.add_typer(inference.app, name="inference")
app.command("deploy", epilog="Example: controller deploy ssh://admin@box1 ssh://admin@box2 --pki pki")(
    deploy.deploy_cmd)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
