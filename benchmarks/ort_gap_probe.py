"""What the moments between two ONNX Runtime calls do to the second one's latency.

benchmarks/inference_overhead.py finds edgebench's SingleStream p90 (LoadGen issuing each query) a few
microseconds above a bare back-to-back `session.run` loop on the same file, with LoadGen's own path (the
harness floor) at 2-4 us. This times the bare loop with four things between calls: nothing, a 20 us busy
wait, a 512 KB read (other work touching the caches), and a 100 us sleep (the core idles). Same model, same
session options as the bare loop of inference_overhead.py; 1 intra-op thread and ORT's default.

    python benchmarks/ort_gap_probe.py MODEL.onnx [--threads 1] [--seconds 4] [--rounds 3] [--out F.json]

MODEL.onnx: any ONNX file with one float32 input; inference_overhead.py leaves the catalogue CNN's export
in its temporary directory (cache/sha256/<digest>/model.onnx).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0: ORT's default)")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if args.threads:
        opts.intra_op_num_threads = args.threads
    sess = ort.InferenceSession(str(args.model), sess_options=opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [1 if not isinstance(d, int) else d for d in inp.shape]
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    feed = {inp.name: x}
    junk = np.ones(512 * 1024 // 8)

    def p90_ms(between: Callable[[], object]) -> float:
        for _ in range(50):
            sess.run(None, feed)
        times = []
        end = time.perf_counter() + args.seconds
        while time.perf_counter() < end:
            between()
            t0 = time.perf_counter()
            sess.run(None, feed)
            times.append(time.perf_counter() - t0)
        times.sort()
        return times[int(0.9 * (len(times) - 1))] * 1e3

    def busy(us: float) -> Callable[[], None]:
        def wait() -> None:
            end = time.perf_counter() + us * 1e-6
            while time.perf_counter() < end:
                pass
        return wait

    arms: dict[str, Callable[[], object]] = {
        "back to back": lambda: None, "20 us busy": busy(20), "512 KB read": junk.sum,
        "100 us sleep": lambda: time.sleep(1e-4)}
    figures: dict[str, list[float]] = {name: [] for name in arms}
    for rnd in range(args.rounds):
        for name, between in arms.items():
            figures[name].append(p90_ms(between))
        print(f"round {rnd + 1}: " + ", ".join(f"{n} {v[-1]:.4f}" for n, v in figures.items()) + " (p90, ms)")
    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "model": str(args.model),
              "threads": args.threads or "default", "onnxruntime": ort.__version__, "seconds": args.seconds,
              "p90_ms": figures, "median_p90_ms": {n: statistics.median(v) for n, v in figures.items()}}
    print(json.dumps(report["median_p90_ms"]))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
