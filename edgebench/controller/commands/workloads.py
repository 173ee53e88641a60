"""``controller workloads``: the catalogue."""

from __future__ import annotations

from typing import Any

from edgebench.common.console import Column
from edgebench.controller.commands._options import JsonOpt, output
from edgebench.runner.catalogue import DATASETS, WORKLOADS

COLUMNS = (
    Column("name"), Column("model"), Column("input", "dataset (input)"), Column("batch_size", "batch"),
    Column("epochs"), Column("optimiser", "optimiser, lr"),
    Column("steps_per_epoch", "steps/epoch", fmt=lambda v: str(v or "all")), Column("description"),
)


def catalogue_records() -> list[dict[str, Any]]:
    catalogue: dict[str, dict[str, Any]] = WORKLOADS
    datasets: dict[str, dict[str, Any]] = DATASETS
    rows = []
    for name, w in catalogue.items():
        ds = datasets[w["dataset"]]
        shape = "x".join(str(d) for d in ds["shape"])
        rows.append({"name": name, **w, "input": f"{w['dataset']} ({shape}, {ds['classes']} classes)",
                     "optimiser": f"{w['optimizer']} {w['learning_rate']:g}",
                     "dataset_shape": list(ds["shape"]), "classes": ds["classes"]})
    return rows


def workloads(as_json: JsonOpt = False) -> None:
    """List the workload catalogue and its defaults (all overridable per job)."""
    out = output(as_json)
    if as_json:
        out.json(catalogue_records())
        return
    out.table(COLUMNS, catalogue_records(), title="workload catalogue")
