"""Issue 21/23 on one GPU, in one bounded run (benchmarks/gpu/keras_fidelity.sh starts it):

1. Keras-JAX, input host against input device, each through the agent (controller -> broker -> agent
   -> runner, NVML sampler on) and as a bare ``fit()`` (benchmarks/bare_loop.py) on the same job file,
   ROUNDS rounds with the arm order reversed every other round.
2. Native JAX (backend jax) once, the runner alone.
3. The 1-GPU point of Keras-JAX DataParallel and of native JAX's Mesh (EDGEBENCH_DATA_PARALLEL_ONE=1:
   the data-parallel code path on one device), the runner alone.
4. Native torch, torch.compile, channels_last, once, if the budget allows.

Every phase after the first is skipped, and says so, when the time left cannot hold it. Settings from
the environment (the defaults are the H200 case; the CPU dry run shrinks them):

    EB_WORKLOAD=imagenet-resnet50 EB_BATCH=256 EB_SAMPLES=2560 EB_EPOCHS=11 EB_ROUNDS=3 EB_PRECISION=bf16
    EB_GPUS=1 EB_BUDGET_S=430 EB_PHASE_S=60 (a single run's allowance) EB_TORCH=1
    EB_XLA_DUMP=1 (the train step's HLO per arm and round in $OUT/xla/), EB_JAX_CACHE=0 (in the .sh: no
    persistent compilation cache, each process compiles and autotunes its own step)

Writes $OUT/keras_fidelity.json and $OUT/keras_fidelity.md.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))

import harness_overhead as ho  # noqa: E402


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def main() -> None:
    # `timeout` ends this with SIGTERM: unwind, so that the agent and any runner are stopped too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(124))
    t_start = time.monotonic()
    out = Path(os.environ.get("OUT", "/tmp/edgebench-out"))
    out.mkdir(parents=True, exist_ok=True)
    gpus = env_int("EB_GPUS", 1)
    budget_s = env_int("EB_BUDGET_S", 430)
    phase_s = env_int("EB_PHASE_S", 60)
    rounds = env_int("EB_ROUNDS", 3)
    case: dict[str, Any] = {
        "backend": "keras-jax", "workload": os.environ.get("EB_WORKLOAD", "imagenet-resnet50"),
        "batch_size": env_int("EB_BATCH", 256), "epochs": env_int("EB_EPOCHS", 11), "synthetic": True,
        "samples": env_int("EB_SAMPLES", 2560), "precision": os.environ.get("EB_PRECISION", "bf16"),
        "gpus": gpus, "steps_per_epoch": None, "timeout_s": 900,
        # the bare loop runs exactly workload.epochs: the runner must not extend its window beyond them
        "min_batches": 0, "min_window_s": 0,
    }
    gpu_index = 0 if gpus else None
    tmp = Path(tempfile.mkdtemp(prefix="fidelity-"))
    env = ho.bare_env(ho.runner_env(), gpus, gpu_index)

    def arm_env(arm: str, rnd: int) -> dict[str, str]:
        """EB_XLA_DUMP=1: the train step's HLO before and after XLA's passes, per arm and round, in
        $OUT/xla/ARM-ROUND (the chosen convolution algorithms are in the optimised module)."""
        if os.environ.get("EB_XLA_DUMP") != "1":
            return env
        dump = out / "xla" / f"{arm}-{rnd}"
        flags = f"--xla_dump_to={dump} --xla_dump_hlo_as_text --xla_dump_hlo_module_re=.*train_step.*"
        if gpus:
            flags += f" --xla_gpu_dump_autotune_results_to={dump}/autotune.textproto"
        return {**env, "XLA_FLAGS": f"{env.get('XLA_FLAGS', '')} {flags}".strip()}
    report: dict[str, Any] = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                              "machine": platform.node(), "case": case, "rounds": rounds, "skipped": [],
                              "arms": {}, "single": {}}
    # EB_ARMS: which arms run each round (the runner arm splits the agent's cost from the runner's)
    arms = tuple(os.environ.get("EB_ARMS", "agent-device,runner-device,bare-device,agent-host,bare-host").split(","))
    rates: dict[str, list[float]] = {a: [] for a in arms}
    epochs: dict[str, list[list[float]]] = {a: [] for a in arms}  # per round: every epoch's img/s

    def left() -> float:
        return budget_s - (time.monotonic() - t_start)

    def save() -> None:
        report["elapsed_s"] = time.monotonic() - t_start
        report["arms"] = {a: {"img_per_s": v, "median": statistics.median(v) if v else None,
                              "epoch_img_per_s": epochs[a]} for a, v in rates.items()}
        (out / "keras_fidelity.json").write_text(json.dumps(report, indent=2))
        (out / "keras_fidelity.md").write_text(markdown(report))

    # EB_AGENT_TELEMETRY=none: the agent arm without its sampler (is the gap the sampler's?)
    report["agent_telemetry"] = os.environ.get("EB_AGENT_TELEMETRY") or "auto"
    with ho.AgentFleet(tmp, ["keras-jax", "jax", "torch"], gpu_index,
                       telemetry=os.environ.get("EB_AGENT_TELEMETRY") or None) as fleet:
        last_round_s = 0.0
        for rnd in range(rounds):
            # a round after the first costs what the previous one did (the first also compiled)
            if rnd > 0 and left() < 1.1 * last_round_s:
                report["skipped"].append(f"rounds {rnd + 1}-{rounds}: {left():.0f} s left, a round took "
                                         f"{last_round_s:.0f} s")
                break
            t_round = time.monotonic()
            order = arms if rnd % 2 == 0 else tuple(reversed(arms))
            jobs = {i: ho.round_jobs(dict(case, input=i), rnd) for i in ("device", "host")}
            for arm in order:
                where, input_ = arm.split("-")
                # a job id per arm and input: the agent answers a repeated id with the stored result
                job = jobs[input_]["bare" if where == "bare" else where].model_copy(
                    update={"job_id": f"fidelity-{rnd}-{arm}"})
                if where == "agent":
                    rate = fleet.run(job, timeout_s=900)
                    [row] = fleet.store.results(job_id=job.job_id)
                    per_epoch = [e["img_per_s"] for e in json.loads(row.result_json or "{}")["runs"][0]["epochs"]]
                elif where == "runner":
                    result = ho.runner_result(ho.write_job_file(job, tmp), arm_env(arm, rnd), tmp,
                                              stderr_to=tmp / f"{arm}-{rnd}.stderr")
                    rate = float(result["runs"][0]["throughput"]["window_img_per_s"])
                    per_epoch = [e["img_per_s"] for e in result["runs"][0]["epochs"]]
                else:
                    bare = ho.run_bare(ho.write_job_file(job, tmp), arm_env(arm, rnd),
                                       stderr_to=tmp / f"{arm}-{rnd}.stderr")
                    rate, per_epoch = bare["window_img_per_s"], bare["epoch_img_per_s"]
                rates[arm].append(rate)
                epochs[arm].append([round(r, 1) for r in per_epoch])
                print(f"round {rnd + 1} {arm:12s} {rate:10.1f} img/s ({left():.0f} s left)", flush=True)
                save()
            last_round_s = time.monotonic() - t_round

    one = {"EDGEBENCH_DATA_PARALLEL_ONE": "1"}
    if not gpus:  # the CPU dry run: the data-parallel path over one virtual CPU device
        one["EDGEBENCH_VIRTUAL_CPU_DEVICES"] = "1"
    singles: list[tuple[str, dict[str, Any], dict[str, str]]] = [
        ("jax-native", dict(case, backend="jax", input="device"), {}),
        ("keras-jax-dataparallel-1", dict(case, input="device", gpus=max(gpus, 1)), one),
    ]
    if os.environ.get("EB_TORCH", "1") == "1":
        singles.append(("torch-compiled", dict(case, backend="torch", compile=True, data_format="channels_last",
                                                input=None), {}))
    singles.append(("jax-native-mesh-1", dict(case, backend="jax", input="device", gpus=max(gpus, 1)), one))
    for name, single, extra in singles:
        allowance = phase_s * (2 if name == "torch-compiled" else 1)
        if left() < allowance:
            report["skipped"].append(f"{name}: {left():.0f} s left, needs ~{allowance} s")
            continue
        job = ho.round_jobs({k: v for k, v in single.items() if v is not None}, 0)["runner"]
        job = job.model_copy(update={"job_id": f"fidelity-{name}"})
        try:
            # its own limit inside the call's, so that a run that hangs is named and its stderr kept (the
            # 2026-12-03 H200 call lost native JAX to the outer timeout with nothing to say why)
            result = ho.runner_result(ho.write_job_file(job, tmp), dict(env, **extra), tmp,
                                      stderr_to=tmp / f"{name}.stderr", timeout_s=max(30.0, left() - 15))
        except SystemExit as exc:  # one failed reference must not lose the headline figures
            report["single"][name] = {"error": str(exc)[-1500:]}
            print(f"{name}: FAILED {str(exc)[-300:]}", flush=True)
            save()
            continue
        run = result["runs"][0]
        t = run["throughput"]
        report["single"][name] = {"window_img_per_s": t["window_img_per_s"], "n_batches": t["n_batches"],
                                  "block_img_per_s": t["block_img_per_s"], "knobs": result["knobs"]}
        print(f"{name:26s} {t['window_img_per_s']:10.1f} img/s, {t['n_batches']} batches "
              f"({left():.0f} s left)", flush=True)
        save()
    save()
    print(markdown(report))


def markdown(report: dict[str, Any]) -> str:
    case = report["case"]
    lines = [f"## Keras fidelity, {case['workload']} bs{case['batch_size']} {case['precision']} "
             f"({report['machine']}, {report['date']})", "",
             "| arm | img/s per round | median |", "|---|---|---:|"]
    for arm, v in report["arms"].items():
        med = v["median"]
        lines.append(f"| {arm} | {', '.join(f'{r:,.0f}' for r in v['img_per_s'])} | "
                     f"{'' if med is None else f'{med:,.0f}'} |")
    arms = report["arms"]
    for input_ in ("device", "host"):
        for where in ("agent", "runner"):
            a = (arms.get(f"{where}-{input_}") or {}).get("median")
            b = (arms.get(f"bare-{input_}") or {}).get("median")
            if a and b:
                lines.append(f"\n{where} / bare, input {input_}: **{a / b:.3f}**")
    for arm, v in arms.items():
        for rnd, per_epoch in enumerate(v.get("epoch_img_per_s") or []):
            lines.append(f"\n{arm} round {rnd + 1} epochs: {', '.join(f'{r:,.0f}' for r in per_epoch)}")
    if (arms.get("agent-device") or {}).get("median") and (arms.get("agent-host") or {}).get("median"):
        lines.append(f"\ndevice / host input through the agent: "
                     f"{arms['agent-device']['median'] / arms['agent-host']['median']:.3f}")
    lines += ["", "| single run (runner alone) | img/s | batches |", "|---|---:|---:|"]
    for name, s in report["single"].items():
        if "error" in s:
            lines.append(f"| {name} | failed | |")
        else:
            lines.append(f"| {name} | {s['window_img_per_s']:,.0f} | {s['n_batches']} |")
    if report["skipped"]:
        lines += ["", "Skipped: " + "; ".join(report["skipped"])]
    lines.append(f"\nelapsed {report.get('elapsed_s', 0):.0f} s")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
