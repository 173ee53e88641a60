"""Native PyTorch against Keras 3 (JAX, PyTorch), each job a `python -m runner` process.

    python benchmarks/native_vs_keras.py cpu [--rounds 3] [--out DIR]
    python benchmarks/native_vs_keras.py gpu [--out DIR]      # on a CUDA machine

cpu: MLP and CNN at bs32 on synthetic Fashion-MNIST shapes, epoch 1 warm-up,
epoch 2 measured; backends interleaved round by round so that a busy machine
slows all of them alike; median of the rounds. gpu: a smoke-and-speed set for
the native runner's CUDA paths (channels_last vs channels_first, bf16, fp16 +
GradScaler, torch.compile, memory policies, a typed OOM, inference latency, the
ImageNet stream with pinned batches) plus keras-jax on the stream.

Writes one JSON line per job to OUT/<suite>.jsonl (summary + every protocol
message) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def job(name: str, backend: str, model: str, dataset: str, workload: dict[str, Any] | None = None,
        **fields: Any) -> dict[str, Any]:
    wl = {"model": model, "dataset": dataset, "batch_size": 32, "epochs": 2, "optimizer": "adam",
          "learning_rate": 0.001, "synthetic": True}
    wl.update(workload or {})
    spec = {"job_id": name, "backend": backend, "mode": "train", "workload": wl, "warmup_epochs": 1,
            "repeats": 1, "gpus": 0}
    spec.update(fields)
    return spec


def run_job(spec: dict[str, Any], out: Path, suite: str, root: str = "/tmp", timeout_s: float = 600,
            env: dict[str, str] | None = None) -> dict[str, Any]:
    path = Path(tempfile.gettempdir()) / ("edgebench-%s.job.json" % spec["job_id"])
    path.write_text(json.dumps(spec))
    full_env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false", **(env or {}))
    t0 = time.time()
    load = os.getloadavg()[0]
    try:
        proc = subprocess.run([sys.executable, "-m", "edgebench.runner", "--job", str(path), "--dataset-root", root],
                              cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout_s,
                              check=False)
    except subprocess.TimeoutExpired:
        timed_out = {"job": spec["job_id"], "rc": None, "error": "timeout after %ss" % timeout_s}
        print(json.dumps(timed_out), flush=True)
        return timed_out
    messages = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    last = messages[-1] if messages else {}
    summary: dict[str, Any] = {"job": spec["job_id"], "backend": spec["backend"], "rc": proc.returncode,
                               "wall_s": round(time.time() - t0, 1), "load1_before": load}
    if last.get("type") == "result":
        run = last["runs"][0]
        summary.update(
            window_img_per_s=run["throughput"]["window_img_per_s"],
            median_batch_img_per_s=run["throughput"]["median_img_per_s"],
            epochs=[{k: e[k] for k in ("epoch", "warmup", "seconds", "img_per_s", "loss")} for e in run["epochs"]],
            latency=run["latency"], knobs=last["knobs"], libraries=messages[0].get("libraries"))
    else:
        summary.update(error=last, stderr_tail=proc.stderr[-3000:])
    print(json.dumps(summary), flush=True)
    with open(out / ("%s.jsonl" % suite), "a") as fh:
        fh.write(json.dumps({"summary": summary, "messages": messages}) + "\n")
    return summary


# (label, backend, extra environment, samples per model): enough samples that the
# measured epoch lasts seconds on two cores. The torch-based backends are run
# twice: with their default thread count (one per core) and with one thread,
# because their OpenMP threads collapse when other processes share the cores.
CPU_CONFIGS = [
    ("torch", "torch", {}, {"mlp": 16000, "cnn": 2000}),
    ("torch 1 thread", "torch", {"OMP_NUM_THREADS": "1"}, {"mlp": 60000, "cnn": 4000}),
    ("keras-torch", "keras-torch", {}, {"mlp": 8000, "cnn": 2000}),
    ("keras-torch 1 thread", "keras-torch", {"OMP_NUM_THREADS": "1"}, {"mlp": 60000, "cnn": 4000}),
    ("keras-jax", "keras-jax", {}, {"mlp": 120000, "cnn": 4000}),
]


def suite_cpu(out: Path, rounds: int) -> None:
    base_env = {"CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"}
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for model in ("mlp", "cnn"):
        for r in range(rounds):
            for label, backend, env, samples in CPU_CONFIGS:
                name = "%s-%s-%d" % (label.replace(" ", "-"), model, r)
                spec = job(name, backend, model, "fashion_mnist", {"samples": samples[model]})
                results.setdefault((label, model), []).append(
                    run_job(spec, out, "cpu", env=dict(base_env, **env)))
    print("\n| configuration | model | samples | img/s, median of %d | per round | median per-batch img/s "
          "| load1 before each |" % rounds)
    print("|---|---|---|---|---|---|---|")
    for (label, model), runs in results.items():
        n_samples = dict((c[0], c[3]) for c in CPU_CONFIGS)[label][model]
        ok = [s for s in runs if "window_img_per_s" in s]
        if not ok:
            print("| %s | %s | %d | failed | | | |" % (label, model, n_samples))
            continue
        windows = [s["window_img_per_s"] for s in ok]
        batches = [s["median_batch_img_per_s"] for s in ok]
        print("| %s | %s | %d | %.0f | %s | %.0f | %s |" % (
            label, model, n_samples, statistics.median(windows), ", ".join("%.0f" % w for w in windows),
            statistics.median(batches), ", ".join("%.1f" % s["load1_before"] for s in ok)))


def tiny_imagenet(root: Path, classes: int = 10, per_class: int = 32) -> str:
    import numpy as np
    from PIL import Image

    rng = np.random.RandomState(0)
    for c in range(classes):
        folder = root / "imagenet" / "train" / ("n%08d" % c)
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.randint(0, 256, (375, 500, 3), dtype=np.uint8)).save(
                folder / ("%d.JPEG" % i), quality=90)
    return str(root)


def suite_gpu(out: Path) -> None:
    t = "torch"
    big = {"batch_size": 256, "samples": 2560, "epochs": 3}
    jobs = [
        job("r50-256px-bs32-fp32", t, "resnet50", "synthetic_imagenet", {"epochs": 3}, gpus=1,
            optimizer="rmsprop"),
        job("r50-224px-bs256-bf16-cl", t, "resnet50", "imagenet", big, gpus=1, precision="bf16"),
        job("r50-224px-bs256-bf16-cf", t, "resnet50", "imagenet", big, gpus=1, precision="bf16",
            data_format="channels_first"),
        job("r56-bs128-fp16", t, "resnet56", "cifar10", {"batch_size": 128, "samples": 5120}, gpus=1,
            precision="fp16"),
        job("r50-infer-bs32-bf16", t, "resnet50", "synthetic_imagenet", {"samples": 320, "epochs": 3},
            gpus=1, mode="infer", precision="bf16"),
        job("mlp-fraction", t, "mlp", "fashion_mnist", {"samples": 3200}, gpus=1,
            memory_policy="fraction", memory_fraction=0.5),
        job("mlp-preallocate", t, "mlp", "fashion_mnist", {"samples": 3200}, gpus=1,
            memory_policy="preallocate", memory_fraction=0.3),
        job("r50-oom-expected", t, "resnet50", "synthetic_imagenet", {"batch_size": 1024, "samples": 1024},
            gpus=1, memory_policy="fraction", memory_fraction=0.05),
    ]
    for spec in jobs:
        run_job(spec, out, "gpu")
    root = tiny_imagenet(Path(tempfile.mkdtemp(prefix="tiny-imagenet-")))
    stream = {"synthetic": False, "steps_per_epoch": 10}
    run_job(job("r50-stream-bs32-bf16", t, "resnet50", "imagenet", stream, gpus=1, precision="bf16"),
            out, "gpu", root=root)
    run_job(job("kjax-r50-stream-bs32", "keras-jax", "resnet50", "imagenet", stream, gpus=1),
            out, "gpu", root=root)
    run_job(job("r50-224px-bs256-bf16-compile", t, "resnet50", "imagenet", big, gpus=1, precision="bf16",
                compile=True), out, "gpu")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("suite", choices=["cpu", "gpu"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=os.environ.get("OUT", "/tmp/native_vs_keras"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.suite == "cpu":
        suite_cpu(out, args.rounds)
    else:
        suite_gpu(out)


if __name__ == "__main__":
    main()
