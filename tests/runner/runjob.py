"""Run `python -m runner` on a job spec, as the agent does, and read its protocol lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
_RUNNER_HOME: Path | None = None


def runner_home() -> Path:
    """A private copy of the runner package, made the way the agent makes it
    (agent.executors.install_runner_code): ``python -m runner`` then imports the
    runner alone, as a top-level package, exactly as on an edge box."""
    global _RUNNER_HOME
    if _RUNNER_HOME is None:
        import tempfile

        from edgebench.agent.executors import install_runner_code

        _RUNNER_HOME = install_runner_code(Path(tempfile.mkdtemp(prefix="edgebench-runner-code-")))
    return _RUNNER_HOME


def job(backend: str, model: str, dataset: str, **overrides: Any) -> dict[str, Any]:
    """A wire-level job spec (what the agent writes to JOB.json); workload keys go in `workload`."""
    workload = {
        "model": model,
        "dataset": dataset,
        "batch_size": 2,
        "epochs": 2,
        "optimizer": "adam",
        "learning_rate": 0.001,
    }
    workload.update(overrides.pop("workload", {}))
    spec = {"job_id": "t-%s-%s" % (backend, model), "backend": backend, "mode": "train",
            "workload": workload, "warmup_epochs": 1, "repeats": 1}
    spec.update(overrides)
    return spec


def run_job(spec: dict[str, Any], tmp_path: Path, dataset_root: Path | None = None,
            timeout_s: float = 300) -> tuple[int, list[dict[str, Any]], str]:
    """Return (exit status, protocol messages, stderr)."""
    path = tmp_path / ("%s.json" % spec["job_id"])
    path.write_text(json.dumps(spec))
    env = dict(os.environ, PYTHONPATH=str(runner_home()))
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "--job", str(path), "--dataset-root", str(dataset_root or tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
    messages = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return proc.returncode, messages, proc.stderr


def of_type(messages: list[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    return [m for m in messages if m["type"] == type_]


def write_tiny_imagenet(root: Path, classes: int = 3, per_class: int = 3) -> Path:
    """An ILSVRC-style train folder of real JPEG files (random pixels, mixed sizes and modes)."""
    from PIL import Image

    rng = np.random.RandomState(0)
    sizes = [(300, 200), (180, 260), (224, 224), (500, 375)]
    for c in range(classes):
        folder = root / "imagenet" / "train" / ("n%08d" % (1440764 + c))
        folder.mkdir(parents=True)
        for i in range(per_class):
            w, h = sizes[(c + i) % len(sizes)]
            pixels = rng.randint(0, 256, (h, w, 3), dtype=np.uint8)
            img = Image.fromarray(pixels)
            if (c + i) % 4 == 3:
                img = img.convert("L")  # ILSVRC has greyscale JPEGs too
            img.save(folder / ("%s_%d.JPEG" % (folder.name, i)), quality=85)
    return root
