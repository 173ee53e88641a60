"""The framework's own ceiling for ResNet-50 inference on one GPU (issue 18): a bare timed loop of the module
edgebench's torch runtime runs (runner/torch_models.py, seed 0), samples resident on the device, bf16 autocast,
channels_last, with no LoadGen, no harness and no copy back to the host: eager, torch.compile and CUDA graphs
(mode reduce-overhead), at several batch sizes. Beside LoadGen's Offline figure for the same mode and batch,
the ratio says how much of the distance to MLPerf's figure is edgebench's and how much is PyTorch's without
TensorRT. Each case: build, compile, 20 warm-up calls, then REPEATS timed blocks of SECONDS each between device
syncs; prints one JSON line per case and writes $OUT/torch_ceiling.json.

  python benchmarks/gpu/torch_ceiling.py [--size 224] [--cases eager:256,reduce-overhead:256,...]
      [--seconds 3] [--repeats 3] [--budget-s 240]

A case whose compile cannot fit the time left is skipped and named.
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

COMPILE_S = 75  # a torch.compile of ResNet-50 on 16 cores, with margin (not measured per case)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--cases", default="eager:256,reduce-overhead:256,default:256,eager:1024,reduce-overhead:1024")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--budget-s", type=float, default=240)
    ap.add_argument("--precision", default="bf16", choices=("bf16", "fp16", "fp32"))
    a = ap.parse_args()
    t_start = time.monotonic()
    import torch

    from edgebench.runner import torch_models

    out_dir = os.environ.get("OUT", "/tmp")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[a.precision]
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda", 0)
    torch.manual_seed(0)
    module = torch_models.build("resnet50", (a.size, a.size, 3), 1000).eval().to(dev)
    module = module.to(memory_format=torch.channels_last)
    report = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "size": a.size,
              "precision": a.precision, "seconds": a.seconds, "repeats": a.repeats, "cases": [], "skipped": []}
    for case in a.cases.split(","):
        mode, bs = case.split(":")
        bs = int(bs)
        left = a.budget_s - (time.monotonic() - t_start)
        need = a.repeats * a.seconds + 10 + (COMPILE_S if mode != "eager" else 5)
        if left < need:
            report["skipped"].append("%s: %.0f s left, needs ~%.0f s" % (case, left, need))
            continue
        torch._dynamo.reset()
        net = module if mode == "eager" else torch.compile(module, mode=None if mode == "default" else mode,
                                                           dynamic=False)
        x = torch.rand(bs, 3, a.size, a.size, device=dev).contiguous(memory_format=torch.channels_last)

        def call(net=net, x=x):
            with torch.inference_mode():
                if dtype is None:
                    return net(x)
                with torch.autocast("cuda", dtype=dtype):
                    return net(x)

        t0 = time.monotonic()
        for _ in range(20):
            call()
        torch.cuda.synchronize()
        warm_s = time.monotonic() - t0
        rates = []
        for _ in range(a.repeats):
            n = 0
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < a.seconds:
                call()
                n += 1
            torch.cuda.synchronize()
            rates.append(n * bs / (time.perf_counter() - t0))
        row = {"mode": mode, "batch_size": bs, "img_per_s": rates, "median_img_per_s": statistics.median(rates),
               "warmup_and_compile_s": round(warm_s, 1)}
        report["cases"].append(row)
        print(json.dumps(row), flush=True)
        with open(os.path.join(out_dir, "torch_ceiling.json"), "w") as fh:
            json.dump(report, fh, indent=2)
    with open(os.path.join(out_dir, "torch_ceiling.json"), "w") as fh:
        json.dump(report, fh, indent=2)
    for s in report["skipped"]:
        print("skipped", s, flush=True)


if __name__ == "__main__":
    main()
