"""``agent``: the edge-box daemon's command line (thin: logic lives in agent.*)."""

from __future__ import annotations

import json
import logging
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from edgebench.agent.config import AgentConfig

app = typer.Typer(help="edgebench agent: runs benchmark jobs on this box.", no_args_is_help=True,
                  add_completion=False)
console = Console()

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file.", exists=True)]
BrokerOpt = Annotated[str | None, typer.Option("--broker", help="mqtt://host:port or mqtts://...")]
DeviceOpt = Annotated[str | None, typer.Option("--device-id", help="This box's id (letters, digits, . _ -).")]
FleetOpt = Annotated[str | None, typer.Option("--fleet", help="Fleet name.")]
StateOpt = Annotated[Path | None, typer.Option("--state-dir", help="Where the agent keeps its store.")]
DataOpt = Annotated[Path | None, typer.Option("--dataset-root", help="Where datasets are looked up.")]


def _config(config: Path | None, **overrides: object) -> AgentConfig:
    try:
        return AgentConfig.load(config, **overrides)
    except Exception as exc:  # pydantic ValidationError, YAML errors, missing device id
        console.print(f"[red]invalid agent configuration:[/red] {exc}")
        raise typer.Exit(2) from None


@app.command()
def run(
    config: ConfigOpt = None,
    broker: BrokerOpt = None,
    device_id: DeviceOpt = None,
    fleet: FleetOpt = None,
    tags: Annotated[list[str] | None, typer.Option("--tag", "--tags", help="Group tags (repeatable).")] = None,
    state_dir: StateOpt = None,
    dataset_root: DataOpt = None,
    metrics_port: Annotated[int | None, typer.Option(help="Serve Prometheus metrics on this port.")] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING")] = "INFO",
) -> None:
    """Run the agent daemon until SIGINT/SIGTERM."""
    from edgebench.agent.daemon import Agent

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = _config(config, broker_url=broker, device_id=device_id, fleet=fleet, tags=tags or None,
                  state_dir=state_dir, dataset_root=dataset_root, metrics_port=metrics_port)
    agent = Agent(cfg)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    console.print(f"agent [bold]{cfg.device_id}[/bold] in fleet {cfg.fleet} -> {cfg.broker_url}", highlight=False)
    agent.run(stop)


@app.command()
def info(
    config: ConfigOpt = None,
    device_id: DeviceOpt = None,
    state_dir: StateOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print the capabilities and fingerprint this agent would announce."""
    from edgebench.agent.daemon import Agent

    cfg = _config(config, device_id=device_id or "this-box", state_dir=state_dir)
    agent = Agent(cfg)
    agent.probe()
    status = agent.status()
    fingerprint = agent.fingerprint({})
    if as_json:
        print(json.dumps({"status": status.model_dump(mode="json"),
                          "fingerprint": fingerprint.model_dump(mode="json")}, indent=2))
        return
    table = Table(title=f"backends on {cfg.device_id}")
    for col in ("backend", "available", "executor", "versions", "providers", "detail"):
        table.add_column(col)
    for b in status.backends:
        table.add_row(b.backend, "yes" if b.available else "[red]no[/red]", b.executor,
                      ", ".join(f"{k} {v}" for k, v in b.versions.items()), ", ".join(b.providers), b.detail)
    console.print(table)
    console.print_json(fingerprint.model_dump_json())


@app.command()
def datasets(
    config: ConfigOpt = None,
    dataset_root: DataOpt = None,
) -> None:
    """Show which datasets are present and where the agent looks for them."""
    from edgebench.runner.datasets import describe

    cfg = _config(config, device_id="this-box", dataset_root=dataset_root)
    table = Table(title=f"datasets under {cfg.dataset_root}")
    for col in ("dataset", "present", "expected paths", "description"):
        table.add_column(col)
    for entry in describe(str(cfg.dataset_root)):
        present = "synthetic only" if entry["always_synthetic"] else ("yes" if entry["present"] else "[red]no[/red]")
        table.add_row(entry["dataset"], present, "\n".join(entry["paths"]), entry["description"])
    console.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
