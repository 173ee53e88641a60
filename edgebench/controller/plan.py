"""Turn CLI options or a sweep file into job specs (catalogue defaults filled in)."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgebench.controller.errors import ControllerUsageError
from edgebench.runner.catalogue import WINDOW_DEFAULTS, WORKLOADS, workload_fields
from edgebench.schemas import JobSpec
from edgebench.schemas.artifact import ModelArtifactRef
from edgebench.schemas.base import Identifier
from edgebench.schemas.inference import InferenceSettings
from edgebench.schemas.job import RUNTIME_BACKENDS


class PlanError(ControllerUsageError, ValueError):
    pass


# Job fields a sweep or the CLI may set besides the workload's own fields.
JOB_FIELDS = {"mode", "gpus", "precision", "data_format", "compile", "input", "memory_policy", "memory_fraction",
              "warmup_epochs", "repeats", "timeout_s", "step_timeout_s", "tags", "min_window_s", "min_batches"}
WORKLOAD_FIELDS = {"batch_size", "epochs", "optimizer", "learning_rate", "steps_per_epoch", "samples", "synthetic"}
# LoadGen scenario and runtime knobs (JobSpec.inference, docs/INFERENCE.md), flat in a case
INFERENCE_FIELDS = set(InferenceSettings.model_fields)
# "model": a registered model (name@version, name, sha256:<digest>) instead of a catalogue workload
MATRIX_KEYS = {"backend", "workload", "model", *JOB_FIELDS, *WORKLOAD_FIELDS, *INFERENCE_FIELDS}
# a registered model's workload before the case's own fields: the catalogue's usual training settings
USER_WORKLOAD = {"batch_size": 32, "epochs": 2, "optimizer": "adam", "learning_rate": 0.001}
# (registry reference, job id) -> (the job's artifact reference, the registered dataset or None)
ModelResolver = Callable[[str, str], tuple[ModelArtifactRef, str | None]]
_RUNTIMES = {b.value for b in RUNTIME_BACKENDS}


class Override(BaseModel):
    model_config = ConfigDict(extra="forbid")
    match: dict[str, Any]
    set: dict[str, Any]


class Targets(BaseModel):
    model_config = ConfigDict(extra="forbid")
    devices: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    all: bool = False


class SweepFile(BaseModel):
    """A Cartesian product of job settings, with per-case overrides and exclusions."""

    model_config = ConfigDict(extra="forbid")
    name: Identifier
    description: str = ""
    targets: Targets = Field(default_factory=Targets)
    matrix: dict[str, list[Any]] = Field(default_factory=dict)
    defaults: dict[str, Any] = Field(default_factory=dict)
    overrides: list[Override] = Field(default_factory=list)
    exclude: list[dict[str, Any]] = Field(default_factory=list)
    include: list[dict[str, Any]] = Field(
        default_factory=list, description="Extra cases outside the product (defaults applied)."
    )
    requeue_suspect: int = Field(
        default=0, ge=0, le=5, description="Rerun a job whose result's validity record is suspect, up to N "
        "times (controller/requeue.py)."
    )

    def cases(self) -> list[dict[str, Any]]:
        unknown = set(self.matrix) - MATRIX_KEYS
        unknown |= set(self.defaults) - MATRIX_KEYS
        for o in self.overrides:
            unknown |= (set(o.match) | set(o.set)) - MATRIX_KEYS
        for extra in self.include:
            unknown |= set(extra) - MATRIX_KEYS
        if unknown:
            raise PlanError(
                f"unknown sweep keys: {', '.join(sorted(unknown))} (allowed: {', '.join(sorted(MATRIX_KEYS))})"
            )
        keys = list(self.matrix)
        out: list[dict[str, Any]] = []
        combos = itertools.product(*(self.matrix[k] for k in keys)) if keys else iter(())
        for combo in combos:
            case = dict(self.defaults)
            case.update(dict(zip(keys, combo)))
            if any(all(case.get(k) == v for k, v in ex.items()) for ex in self.exclude):
                continue
            for o in self.overrides:
                if all(case.get(k) == v for k, v in o.match.items()):
                    case.update(o.set)
            out.append(case)
        for extra in self.include:
            out.append({**self.defaults, **extra})
        for case in out:
            if "backend" not in case:
                raise PlanError("a sweep case has no 'backend' (set it in matrix, defaults or include)")
            if ("workload" in case) == ("model" in case):
                raise PlanError("a sweep case needs a 'workload' or a registered 'model', not both")
        if not out:
            raise PlanError("the sweep has no cases")
        return out


def load_sweep(path: Path) -> SweepFile:
    try:
        data = yaml.safe_load(path.read_text())
        return SweepFile.model_validate(data)
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise PlanError(f"{path}: {exc}") from None


def new_id(prefix: str) -> str:
    return f"{prefix[:40]}-{uuid.uuid4().hex[:10]}"


def build_job(case: dict[str, Any], job_id: str, sweep_id: str | None = None,
              resolve_model: ModelResolver | None = None) -> JobSpec:
    """One job from a flat case: {'backend', 'workload' (catalogue name) or 'model' (registered), job and
    workload fields}."""
    case = dict(case)
    model_ref = case.pop("model", None)
    if model_ref is not None:
        if resolve_model is None:
            raise PlanError("a registered model needs the controller's model registry")
        artifact, dataset = resolve_model(str(model_ref), job_id)
        name = str(model_ref)
        workload: dict[str, Any] = {"model": "user", "dataset": dataset or "artifact-input", **USER_WORKLOAD}
        case["model_artifact"] = artifact.model_dump(mode="json")
    else:
        name = case.pop("workload")
        if name not in WORKLOADS:
            raise PlanError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}")
        workload = workload_fields(name)
    for key in list(case):
        if key in WORKLOAD_FIELDS:
            workload[key] = case.pop(key)
    inference = {key: case.pop(key) for key in list(case) if key in INFERENCE_FIELDS}
    if inference or case.get("backend") in _RUNTIMES:
        # a runtime only infers, and a scenario means inference: mode infer unless the case says otherwise
        case.setdefault("mode", "infer")
        if case["mode"] == "infer":
            case["inference"] = inference
    # LoadGen decides a runtime job's timing (its own minimums): the window defaults are for the epochs loop
    window = {} if "inference" in case else WINDOW_DEFAULTS
    doc = {"job_id": job_id, "sweep_id": sweep_id, "workload": workload, **window, **case}
    try:
        return JobSpec.model_validate(doc, strict=False)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise PlanError(f"{name} / {case.get('backend')}: {loc}: {err['msg']}") from None


def build_jobs(cases: list[dict[str, Any]], sweep_id: str | None,
               resolve_model: ModelResolver | None = None) -> list[JobSpec]:
    prefix = sweep_id or "job"
    return [build_job(case, f"{prefix}-{i:03d}-{uuid.uuid4().hex[:6]}"[:64], sweep_id, resolve_model)
            for i, case in enumerate(cases)]
