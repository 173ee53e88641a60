"""``agent``: the edge-box daemon's command line (thin: logic lives in agent.*).

Errors become one line and an exit code in edgebench/common/cli.py."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from edgebench.agent.config import AgentConfig
from edgebench.common.cli import EdgebenchGroup, one_line
from edgebench.common.console import Column, Output, markup
from edgebench.common.errors import UsageError
from edgebench.common.version import edgebench_version

app = typer.Typer(cls=EdgebenchGroup, help="edgebench agent: runs benchmark jobs on this box.", no_args_is_help=True,
                  epilog="Settings come from flags, EDGEBENCH_* variables, secret files (/run/secrets/edgebench_*) "
                  "and the YAML file, in that order. Exit codes: 0 success, 1 runtime failure, 2 usage error.")
out = Output()

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", "-c", help="YAML config file [default: $EDGEBENCH_CONFIG].", show_default=False)]
BrokerOpt = Annotated[str | None, typer.Option(
    "--broker", help="mqtt://host:port or mqtts://... [default: $EDGEBENCH_BROKER_URL, else mqtt://127.0.0.1:1883].",
    show_default=False)]
DeviceOpt = Annotated[str | None, typer.Option(
    "--device-id", help="This box's id (letters, digits, . _ -) [default: $EDGEBENCH_DEVICE_ID].",
    show_default=False)]
FleetOpt = Annotated[str | None, typer.Option("--fleet", help="Fleet name [default: default].", show_default=False)]
StateOpt = Annotated[Path | None, typer.Option(
    "--state-dir", help="Where the agent keeps its store [default: the user data dir].", show_default=False)]
DataOpt = Annotated[Path | None, typer.Option(
    "--dataset-root", help="Where datasets are looked up [default: ~/edgebench-data].", show_default=False)]
SecretsOpt = Annotated[Path | None, typer.Option(
    "--secrets-dir", help="Directory of secret files (edgebench_password ...) [default: /run/secrets if present].",
    show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


def _version(value: bool) -> None:
    if value:
        print(f"agent (edgebench) {edgebench_version()}")
        raise typer.Exit()


@app.callback()
def root(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False) -> None:
    """edgebench agent: runs benchmark jobs on this box."""


def load_config(config: Path | None, secrets_dir: Path | None = None, fallback_device_id: str | None = None,
                **flags: object) -> AgentConfig:
    """The agent's configuration; an invalid one is a one-line usage error naming the fields.

    ``fallback_device_id``: the id when no source sets one (``agent info`` needs no real id)."""
    try:
        return AgentConfig.load(config, secrets_dir, **flags)
    except ValidationError as exc:
        missing_id = any(e["loc"] == ("device_id",) and e["type"] == "missing" for e in exc.errors())
        if missing_id and fallback_device_id:
            return load_config(config, secrets_dir, None, **{**flags, "device_id": fallback_device_id})
        if missing_id:
            raise UsageError("no device id: give --device-id, set EDGEBENCH_DEVICE_ID, or device_id in the "
                             "YAML file") from None
        raise UsageError(f"invalid agent configuration: {one_line(exc)}") from None


@app.command(epilog="Example: agent run --broker mqtt://broker.plant:1883 --device-id press-line-3 --tag line3")
def run(
    config: ConfigOpt = None,
    broker: BrokerOpt = None,
    device_id: DeviceOpt = None,
    fleet: FleetOpt = None,
    tags: Annotated[list[str] | None, typer.Option(
        "--tag", "--tags", help="Group tags (repeatable) [default: none].", show_default=False)] = None,
    state_dir: StateOpt = None,
    dataset_root: DataOpt = None,
    metrics_port: Annotated[int | None, typer.Option(
        help="Serve Prometheus metrics on this port [default: off].", show_default=False)] = None,
    log_level: Annotated[str, typer.Option(help=f"One of {', '.join(LOG_LEVELS)}.")] = "INFO",
    secrets_dir: SecretsOpt = None,
) -> None:
    """Run the agent daemon until SIGINT/SIGTERM."""
    level = log_level.upper()
    if level not in LOG_LEVELS:
        raise UsageError(f"unknown --log-level {log_level!r}: one of {', '.join(LOG_LEVELS)}")
    cfg = load_config(config, secrets_dir, broker_url=broker, device_id=device_id, fleet=fleet, tags=tags or None,
                      state_dir=state_dir, dataset_root=dataset_root, metrics_port=metrics_port)
    from edgebench.agent.daemon import Agent

    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    agent = Agent(cfg)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    out.print(f"agent [bold]{markup(cfg.device_id)}[/bold] {edgebench_version()} in fleet {markup(cfg.fleet)} -> "
              f"{markup(cfg.broker_url)}")
    agent.run(stop)


BACKEND_COLUMNS = (
    Column("backend"), Column("available", fmt=lambda v: "yes" if v else "no", style=lambda v: None if v else "red"),
    Column("executor"), Column("versions", fmt=lambda v: ", ".join(f"{k} {x}" for k, x in (v or {}).items())),
    Column("providers"),
    Column("accelerators", "GPUs the framework sees", fmt=lambda v: "not probed" if v is None else str(v),
           style=lambda v: "yellow" if v == 0 else None),
    Column("accelerator_detail", "device detail"), Column("detail"),
)


def telemetry_report(cfg: AgentConfig, source: str) -> dict[str, Any]:
    """Which telemetry source the agent uses, and why NVML is not it when it is not."""
    doc: dict[str, Any] = {"configured": cfg.telemetry, "source": source, "nvml_unavailable": None}
    if source != "nvml":
        from edgebench.agent.telemetry import TelemetryUnavailable
        from edgebench.agent.telemetry.nvml import NvmlTelemetry

        try:
            NvmlTelemetry(plan=cfg.nvml_read_plan).close()
        except TelemetryUnavailable as exc:
            doc["nvml_unavailable"] = str(exc)
        else:
            doc["nvml_unavailable"] = (f"NVML works, but telemetry is set to {cfg.telemetry!r}" if cfg.telemetry
                                       != "auto" else "NVML works, but a Jetson's tegrastats came first")
    return doc


@app.command(epilog="Example: agent info --json | jq '.status.backends[] | {backend, accelerators}'")
def info(
    config: ConfigOpt = None,
    device_id: DeviceOpt = None,
    state_dir: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the capabilities and fingerprint this agent would announce: per backend whether the framework sees a
    GPU, and which telemetry source it reads (and why not NVML)."""
    from edgebench.agent.daemon import Agent

    cfg = load_config(config, fallback_device_id="this-box", device_id=device_id, state_dir=state_dir)
    agent = Agent(cfg)
    agent.probe()
    status = agent.status()
    fingerprint = agent.fingerprint({})
    telemetry = telemetry_report(cfg, agent.telemetry.source)
    if as_json:
        out.json({"version": edgebench_version(), "telemetry": telemetry, "status": status.model_dump(mode="json"),
                  "fingerprint": fingerprint.model_dump(mode="json")})
        return
    out.table(BACKEND_COLUMNS, [b.model_dump(mode="json") for b in status.backends],
              title=f"backends on {cfg.device_id}")
    line = f"telemetry: {telemetry['source']} (configured: {telemetry['configured']})"
    if telemetry["nvml_unavailable"]:
        line += f"; NVML: {telemetry['nvml_unavailable']}"
    out.print(markup(line))
    out.print(f"agent {edgebench_version()}")
    out.console.print_json(fingerprint.model_dump_json())


DATASET_COLUMNS = (
    Column("dataset"),
    Column("state", "present", style=lambda v: "red" if v == "no" else None),
    Column("paths", "expected paths", fmt=lambda v: " ".join(v)),
    Column("description"),
)


@app.command(epilog="Example: agent datasets --dataset-root /data --json")
def datasets(
    config: ConfigOpt = None,
    dataset_root: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show which datasets are present and where the agent looks for them."""
    from edgebench.runner.datasets import describe

    cfg = load_config(config, fallback_device_id="this-box", dataset_root=dataset_root)
    entries = describe(str(cfg.dataset_root))
    if as_json:
        out.json(entries)
        return
    for e in entries:
        e["state"] = "synthetic only" if e["always_synthetic"] else ("yes" if e["present"] else "no")
    out.table(DATASET_COLUMNS, entries, title=f"datasets under {cfg.dataset_root}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
