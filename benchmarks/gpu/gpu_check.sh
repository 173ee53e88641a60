#!/usr/bin/env bash
# Issue 16 item 1 on a real GPU: the runner alone (no agent, no carried wheels: torch and JAX are on the
# H200 machine) as the agent starts it, `python -m runner` from a private copy.
#   OUT=/tmp/out benchmarks/gpu/gpu_check.sh
# 1. probe --ask for torch and jax: the accelerators each framework sees;
# 2. torch ResNet-50 synthetic bs256 bf16, gpus=1: must train on cuda:0, devices_used says so;
# 3. torch gpus=<seen+1>: Unsupported, naming what torch saw;
# 4. torch gpus=1 with CUDA_VISIBLE_DEVICES= (the GPU hidden): Unsupported, not a CPU run stored as GPU.
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/edgebench-out}
W=$(mktemp -d)
mkdir -p "$OUT" "$W/home"
cp -r edgebench/runner "$W/home/runner"
export PYTHONPATH=$W/home PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
MODEL=${MODEL:-resnet50} BATCH=${BATCH:-256} SAMPLES=${SAMPLES:-5120} PREC=${PREC:-bf16}
job() {  # name gpus extra-json
  cat >"$W/$1.json" <<JSON
{"job_id": "$1", "backend": "torch", "mode": "train", "gpus": $2, "precision": "$PREC", "warmup_epochs": 1,
 "repeats": 1, "workload": {"model": "$MODEL", "dataset": "imagenet", "batch_size": $BATCH, "epochs": 3,
 "optimizer": "sgd", "learning_rate": 0.01, "samples": $SAMPLES, "synthetic": true}$3}
JSON
}
run() {  # name [env...]
  local name=$1; shift
  echo "== $name"
  (cd "$W" && env "$@" "$PY" -m runner --job "$W/$name.json" --dataset-root "$W") >"$OUT/$name.jsonl" 2>"$W/$name.err"
  echo "exit $?"
  python3 - "$OUT/$name.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("type") in ("hello", "error", "result"):
        keep = {k: m[k] for k in ("type", "versions", "error_type", "message", "devices_used") if k in m}
        if m.get("type") == "result":
            runs = m.get("runs") or [m]
            keep["img_per_s"] = [r.get("throughput", {}).get("window_img_per_s") for r in runs]
            keep["n_batches"] = [r.get("throughput", {}).get("n_batches") for r in runs]
        print(json.dumps(keep)[:600])
PY
  tail -3 "$W/$name.err"
}
PY=${PY:-python3}
for b in torch; do echo "== probe $b"; (cd "$W" && "$PY" -m runner.probe $b --ask) | tee "$OUT/probe-$b.json"; echo; done
SEEN=$("$PY" -c "import json;print(json.load(open('$OUT/probe-torch.json')).get('accelerators') or 0)")
job gpu1 1 ""
job over $((SEEN + 1)) ""
job hidden 1 ""
run gpu1
run over
run hidden CUDA_VISIBLE_DEVICES=
