"""edgebench's inference figures against each runtime's own tool, same model, same box:

- ONNX Runtime SingleStream p90: edgebench (runner + LoadGen) vs a bare ``session.run`` loop
  at batch 1 (what ``onnxruntime_perf_test -r N`` times; the C++ tool is not in the PyPI wheel);
- OpenVINO Offline samples/s: edgebench vs ``benchmark_app`` (ships with the openvino wheel),
  both with PERFORMANCE_HINT throughput, f32 inference precision, the same static batch;
- torch SingleStream p90: edgebench vs a bare timed ``module(x)`` loop at batch 1;
- Keras 3 SingleStream p90 on each backend (``--only keras-jax,keras-torch,keras-tensorflow``): edgebench vs a
  bare loop of the same call its adapter makes (jitted ``stateless_call``, the call under ``torch.no_grad``, a
  ``tf.function``), in a child process per backend (KERAS_BACKEND is read once), and beside it Keras's own
  ``predict_on_batch`` (what a user's first loop calls);
- the harness floor: edgebench's SUT under LoadGen with a runtime that computes nothing
  (SingleStream p90 of LoadGen's issue -> Python callback -> QuerySamplesComplete). A bare loop
  does not pay it and MLPerf's own harnesses do, so the table also gives each SingleStream
  ratio with the floor taken off edgebench's side.

    python benchmarks/inference_overhead.py --workload fashion-mnist-cnn --seconds 10 --rounds 2 --out o.json

Target (docs/PERFORMANCE.md): within 3 %. edgebench runs as the agent would run it
(``python -m runner`` on a job file, model from the digest-keyed cache); rounds alternate
A/B order. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgebench.agent.executors import install_runner_code  # noqa: E402
from edgebench.controller.plan import build_job  # noqa: E402
from edgebench.runner.catalogue import WORKLOADS  # noqa: E402
from edgebench.runner.inference.artifacts import Cache  # noqa: E402
from edgebench.runner.inference.export import ensure, reference_inputs  # noqa: E402


def edgebench_run(backend: str, workload: str, scenario: str, seconds: float, batch_size: int,
                  cache: str, home: Path, work: Path, threads: int | None = None) -> dict:
    case = {"backend": backend, "workload": workload, "scenario": scenario, "batch_size": batch_size,
            "rules": "quick", "min_duration_ms": int(seconds * 1000), "synthetic": True}
    if threads:
        case["threads"] = threads
    job = build_job(case, f"ovh-{backend}-{int(time.time() * 1000) % 10**8}")
    path = work / f"{job.job_id}.json"
    path.write_text(job.model_dump_json())
    env = dict(os.environ, PYTHONPATH=str(home), EDGEBENCH_MODEL_CACHE=cache)
    proc = subprocess.run([sys.executable, "-m", "runner", "--job", str(path), "--dataset-root", str(work)],
                          cwd=work, env=env, capture_output=True, text=True, check=False)
    result = [json.loads(line) for line in proc.stdout.splitlines() if '"type": "result"' in line]
    if not result:
        raise SystemExit(f"edgebench {backend} failed:\n{proc.stderr[-3000:]}")
    lg = result[0]["runs"][0]["inference"]["loadgen"]
    return {"p90_ms": lg["latency_ns"]["p90"] / 1e6, "samples_per_s": lg["samples_per_s"], "valid": lg["valid"],
            "queries": lg["query_count"]}


def harness_floor_p90(x, seconds: float) -> float:
    """SingleStream p90 (ms) of edgebench's LoadGen path alone: harness.SystemUnderTest answering every
    query with a runtime that computes nothing, in this process, with the runner's quick rules."""
    import numpy as np

    from edgebench.runner.inference import harness

    class Null:
        static_batch = False

        def predict(self, batch):  # type: ignore[no-untyped-def]
            return batch

        def predict_many(self, batches, done):  # type: ignore[no-untyped-def]
            for k in range(len(batches)):
                done(k)

    samples = np.repeat(x, 64, axis=0)
    with tempfile.TemporaryDirectory() as out:
        summary = harness.run(Null(), samples, "floor", "single-stream",
                              {"rules": "quick", "min_duration_ms": int(seconds * 1000)}, 1, out + "/lg", {})
    return float(summary["latency_ns"]["p90"]) / 1e6


def bare_latency_p90(predict, x, seconds: float) -> float:
    for _ in range(20):
        predict(x)
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        predict(x)
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[int(0.9 * (len(times) - 1))] * 1e3


def ort_bare(model_path: str, x, seconds: float, threads: int | None = None, spinning: bool = True) -> float:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
    if not spinning:  # the pool's threads sleep between calls instead of spinning (ORT's default: spin)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(model_path, sess_options=opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return bare_latency_p90(lambda a: sess.run(None, {name: a}), x, seconds)


def torch_bare(model: str, dataset: str, x, seconds: float, threads: int | None = None) -> float:
    import torch

    from edgebench.runner import torch_models
    from edgebench.runner.catalogue import DATASETS

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    info = DATASETS[dataset]
    net = torch_models.build(model, info["shape"], info["classes"]).eval()

    def predict(a):
        with torch.inference_mode():
            return net(torch.from_numpy(a)).float().numpy()

    return bare_latency_p90(predict, x, seconds)


KERAS_BARE = r"""
import os, sys, time, json
os.environ["KERAS_BACKEND"] = sys.argv[1]
import keras, numpy
sys.path.insert(0, sys.argv[5])
from edgebench.runner import keras_models
from edgebench.runner.catalogue import DATASETS
from edgebench.runner.inference.export import reference_inputs
model_name, dataset, seconds = sys.argv[2], sys.argv[3], float(sys.argv[4])
info = DATASETS[dataset]
keras.utils.set_random_seed(0)
with keras.device("cpu"):
    model = keras_models.build(keras, model_name, info["shape"], info["classes"], "channels_last")
x = reference_inputs(dataset, 1, "NHWC")
backend = sys.argv[1]
if backend == "jax":
    import jax
    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]
    fn = jax.jit(lambda t, n, a: model.stateless_call(t, n, a, training=False)[0])
    call = lambda a: numpy.asarray(fn(tv, ntv, a))
elif backend == "torch":
    import torch
    def call(a):
        with torch.no_grad(), keras.device("cpu"):
            return model(torch.from_numpy(a), training=False).float().cpu().numpy()
else:
    import tensorflow as tf
    fn = tf.function(lambda a: model(a, training=False))
    call = lambda a: fn(a).numpy()
def p90(f):
    for _ in range(20):
        f(x)
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter(); f(x); times.append(time.perf_counter() - t0)
    times.sort()
    return times[int(0.9 * (len(times) - 1))] * 1e3
print(json.dumps({"same_call_p90_ms": p90(call), "predict_on_batch_p90_ms": p90(model.predict_on_batch)}))
"""


def keras_bare(backend: str, model: str, dataset: str, seconds: float) -> dict:
    """(p90 of the adapter's own call, p90 of predict_on_batch) at batch 1, in a child process."""
    proc = subprocess.run([sys.executable, "-c", KERAS_BARE, backend.split("-", 1)[1], model, dataset, str(seconds),
                           str(REPO)], capture_output=True, text=True, check=False,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        raise SystemExit(f"bare {backend} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def benchmark_app(model_path: str, shape: list[int], seconds: float) -> float:
    exe = Path(sys.executable).parent / "benchmark_app"
    cmd = [str(exe), "-m", model_path, "-d", "CPU", "-hint", "throughput", "-infer_precision", "f32",
           "-shape", "[" + ",".join(str(d) for d in shape) + "]", "-t", str(int(seconds))]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
    m = re.search(r"Throughput:\s+([0-9.]+)\s+FPS", out)
    if not m:
        raise SystemExit(f"benchmark_app printed no throughput:\n{out[-3000:]}")
    return float(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", default="fashion-mnist-cnn")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8, help="Offline's batch (OpenVINO)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--threads", type=int, default=None,
                    help="Intra-op threads on both sides (ORT intra_op_num_threads, torch.set_num_threads, "
                         "OpenVINO INFERENCE_NUM_THREADS via the job); default: each runtime's own.")
    ap.add_argument("--ort-spin-probe", action="store_true",
                    help="Also time the bare ONNX Runtime loop with its intra-op pool not spinning between "
                         "calls (session.intra_op.allow_spinning=0): does the bare loop's back-to-back rhythm, "
                         "which keeps the pool hot, explain its lead over LoadGen's queries?")
    ap.add_argument("--only", default="ort,openvino,torch",
                    help="Comma-separated subset of ort, openvino, torch, keras-jax, keras-torch, keras-tensorflow "
                         "(a box without OpenVINO: ort,torch).")
    args = ap.parse_args()
    only = set(args.only.split(","))
    wl = WORKLOADS[args.workload]
    work = Path(tempfile.mkdtemp(prefix="edgebench-inference-overhead-"))
    cache = str(work / "cache")
    home = install_runner_code(work / "runner-home")
    onnx, _ = ensure(wl["model"], wl["dataset"], "onnx", "fp32", cache=Cache(cache))
    x1 = reference_inputs(wl["dataset"], 1, "NCHW")
    meta_shape = onnx.meta["input"]["shape"]
    rows: dict[str, dict[str, list[float]]] = {name: {"edgebench": [], "tool": []} for name, key in (
        ("ort_p90_ms", "ort"), ("openvino_offline_sps", "openvino"), ("torch_p90_ms", "torch")) if key in only}
    keras = [b for b in ("keras-jax", "keras-torch", "keras-tensorflow") if b in only]
    for b in keras:
        rows[f"{b}_p90_ms"] = {"edgebench": [], "tool": []}
    predict_on_batch: dict[str, list[float]] = {b: [] for b in keras}
    floor: list[float] = []
    if args.ort_spin_probe and "ort_p90_ms" in rows:
        rows["ort_p90_ms"]["tool_no_spinning"] = []
    for rnd in range(args.rounds):
        order = ("edgebench", "tool") if rnd % 2 == 0 else ("tool", "edgebench")
        if "ort_p90_ms" in rows or "torch_p90_ms" in rows:
            floor.append(harness_floor_p90(x1, args.seconds))
        for side in order:
            if side == "edgebench":
                if "ort_p90_ms" in rows:
                    rows["ort_p90_ms"]["edgebench"].append(edgebench_run(
                        "onnxruntime", args.workload, "single-stream", args.seconds, 1, cache, home, work,
                        args.threads)["p90_ms"])
                if "openvino_offline_sps" in rows:
                    rows["openvino_offline_sps"]["edgebench"].append(edgebench_run(
                        "openvino", args.workload, "offline", args.seconds, args.batch_size, cache, home,
                        work)["samples_per_s"])
                if "torch_p90_ms" in rows:
                    rows["torch_p90_ms"]["edgebench"].append(edgebench_run(
                        "torch", args.workload, "single-stream", args.seconds, 1, cache, home, work,
                        args.threads)["p90_ms"])
                for b in keras:
                    rows[f"{b}_p90_ms"]["edgebench"].append(edgebench_run(
                        b, args.workload, "single-stream", args.seconds, 1, cache, home, work)["p90_ms"])
            else:
                for b in keras:
                    bare = keras_bare(b, str(wl["model"]), str(wl["dataset"]), args.seconds)
                    rows[f"{b}_p90_ms"]["tool"].append(bare["same_call_p90_ms"])
                    predict_on_batch[b].append(bare["predict_on_batch_p90_ms"])
                if "ort_p90_ms" in rows:
                    rows["ort_p90_ms"]["tool"].append(ort_bare(onnx.path, x1, args.seconds, args.threads))
                    if "tool_no_spinning" in rows["ort_p90_ms"]:
                        rows["ort_p90_ms"]["tool_no_spinning"].append(
                            ort_bare(onnx.path, x1, args.seconds, args.threads, spinning=False))
                if "openvino_offline_sps" in rows:
                    rows["openvino_offline_sps"]["tool"].append(
                        benchmark_app(onnx.path, [args.batch_size, *meta_shape[1:]], args.seconds))
                if "torch_p90_ms" in rows:
                    rows["torch_p90_ms"]["tool"].append(
                        torch_bare(str(wl["model"]), str(wl["dataset"]), x1, args.seconds, args.threads))
    report = {"workload": args.workload, "seconds": args.seconds, "rounds": args.rounds, "threads": args.threads,
              "machine": f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "figures": {}}
    floor_ms = statistics.median(floor) if floor else None
    report["harness_floor_p90_ms"] = {"rounds": floor, "median": floor_ms}
    print(f"{'figure':<24} {'edgebench':>12} {'tool':>12} {'ratio':>8} {'ratio, floor off':>17}")
    for name, sides in rows.items():
        e, t = statistics.median(sides["edgebench"]), statistics.median(sides["tool"])
        ratio = e / t if t else float("nan")
        doc: dict[str, object] = {"edgebench": sides["edgebench"], "tool": sides["tool"], "ratio_of_medians": ratio}
        off = ""
        if name.endswith("_p90_ms") and floor_ms is not None and t:
            doc["ratio_harness_floor_off"] = (e - floor_ms) / t
            off = f"{(e - floor_ms) / t:>17.3f}"
        if sides.get("tool_no_spinning"):
            nospin = statistics.median(sides["tool_no_spinning"])
            doc["tool_no_spinning"] = sides["tool_no_spinning"]
            doc["ratio_to_tool_no_spinning"] = e / nospin
            off += f"   (bare, pool not spinning: {nospin:.4g}, edgebench / that {e / nospin:.3f})"
        report["figures"][name] = doc
        print(f"{name:<24} {e:>12.4g} {t:>12.4g} {ratio:>8.3f} {off}")
    for b, values in predict_on_batch.items():
        report["figures"][f"{b}_p90_ms"]["keras_predict_on_batch"] = values
        print(f"{b}: Keras's own predict_on_batch p90 {statistics.median(values):.4g} ms (bare, batch 1)")
    if floor_ms is not None:
        print(f"harness floor (LoadGen + edgebench's SUT, a runtime computing nothing): p90 {floor_ms:.4f} ms")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
