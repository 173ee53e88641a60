"""``controller workloads``: the catalogue."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from edgebench.controller.commands._options import console
from edgebench.runner.catalogue import DATASETS, WORKLOADS


def workloads() -> None:
    """List the workload catalogue and its defaults (all overridable per job)."""
    table = Table(title="workload catalogue")
    for col in ("name", "model", "dataset (input)", "batch", "epochs", "optimiser, lr", "steps/epoch", "description"):
        table.add_column(col)
    catalogue: dict[str, dict[str, Any]] = WORKLOADS
    datasets: dict[str, dict[str, Any]] = DATASETS
    for name, w in catalogue.items():
        ds = datasets[w["dataset"]]
        shape = "x".join(str(d) for d in ds["shape"])
        table.add_row(name, w["model"], f"{w['dataset']} ({shape}, {ds['classes']} classes)",
                      str(w["batch_size"]), str(w["epochs"]), f"{w['optimizer']} {w['learning_rate']:g}",
                      str(w.get("steps_per_epoch") or "all"), w["description"])
    console.print(table)
