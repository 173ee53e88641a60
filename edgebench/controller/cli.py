"""``controller``: the workstation CLI. This module only registers commands;
each lives in controller/commands/<noun>.py and calls library code."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgebench.controller.commands import (
    broker,
    demo,
    deploy,
    devices,
    dispatch,
    images,
    inference,
    jobs,
    models,
    reconcile,
    report,
    results,
    schema,
    workloads,
)
from edgebench.controller.commands._options import fail
from edgebench.controller.config import ControllerConfig

app = typer.Typer(help="edgebench controller: dispatch benchmarks to a fleet and compare results.",
                  no_args_is_help=True, add_completion=False)


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option("--config", help="YAML config (default: user config dir).")] = None,
    broker: Annotated[str | None, typer.Option("--broker", help="mqtt://host:port (env EDGEBENCH_BROKER).")] = None,
    fleet: Annotated[str | None, typer.Option("--fleet", help="Fleet name (env EDGEBENCH_FLEET).")] = None,
    store: Annotated[str | None, typer.Option("--store", help="SQLAlchemy URL (env EDGEBENCH_STORE).")] = None,
) -> None:
    try:
        ctx.obj = ControllerConfig.load(config, broker_url=broker, fleet=fleet, store_url=store)
    except Exception as exc:  # ValidationError, YAML or file errors
        raise fail(f"invalid controller configuration: {exc}") from None


app.command()(devices.devices)
app.command()(dispatch.dispatch)
app.command()(report.report)
app.command()(workloads.workloads)
app.command()(jobs.cancel)
app.command()(jobs.collect)
app.command()(reconcile.reconcile)
app.command("dead-letters")(reconcile.dead_letters)
app.command()(demo.demo)
app.command()(broker.broker)
app.add_typer(results.app, name="results")
app.add_typer(schema.app, name="schema")
app.add_typer(images.app, name="images")
app.add_typer(models.app, name="models")
app.add_typer(inference.app, name="inference")
app.command("deploy")(deploy.deploy_cmd)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
