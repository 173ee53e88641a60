#!/usr/bin/env bash
# edgebench on a GPU machine, through edgebench itself: embedded broker, a real
# agent (NVML telemetry, Prometheus), controller dispatch of a shipped sweep,
# results in SQLite. One phase per call (each fits in 10 minutes):
#
#   benchmarks/gpu/run.sh study     # telemetry check vs nvidia-smi + sweeps/study-2019-gpu.yaml
#   EB_BACKENDS=keras-jax,torch benchmarks/gpu/run.sh study-1gpu  # the study sweep on GPU 0 alone, for
#                                   # the named backends (a 1-GPU machine: the study phase needs two GPUs)
#   benchmarks/gpu/run.sh keras-torch-compile  # one GPU: sweeps/keras-torch-compile-1gpu.yaml (issue 21 item 4)
#   benchmarks/gpu/run.sh knobs     # sweeps/knobs-resnet50-gpu.yaml + harness overhead (agent vs bare)
#   benchmarks/gpu/run.sh scaling   # sweeps/scaling-resnet50.yaml (1, 2, 4 GPUs)
#   benchmarks/gpu/run.sh keras-knobs  # one GPU: sweeps/knobs-keras-resnet50-1gpu.yaml (issue 21)
#   benchmarks/gpu/run.sh telemetry # NVML call costs (benchmarks/nvml_call_cost.py), telemetry check per read plan
#   benchmarks/gpu/run.sh jaxdp-telemetry  # Keras-JAX DataParallel at 1, 2, all GPUs, then telemetry
#
# Writes to $OUT (default /tmp/edgebench-out): results-<phase>.db, extras-<phase>.tgz
# (logs, reports, JSON), and in the study phase the NVML trace. Python packages
# missing on the machine travel as wheels in .whl/ (see docs/PERFORMANCE.md).
set -u
cd "$(dirname "$0")/../.."
PHASE=${1:?phase: study, knobs or scaling}
OUT=${OUT:-/tmp/edgebench-out}
W=/tmp/eb-$PHASE
mkdir -p "$OUT" "$W/extras"
export COLUMNS=160 PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
if [ -d .whl ] && [ -z "${EDGEBENCH_SKIP_WHEELS:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    >"$W/pip.log" 2>&1 || { cat "$W/pip.log"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD
  SITE=/tmp/site   # the runner's interpreter needs the carried packages too (keras)
else
  export PYTHONPATH=$PWD
  SITE=""
fi
NGPU=$(nvidia-smi -L 2>/dev/null | wc -l)
LAST=$((NGPU - 1))
nvidia-smi -L 2>&1 | tee "$W/extras/nvidia-smi-L.txt"
nvidia-smi -q > "$W/extras/nvidia-smi-q.txt" 2>&1
BROKER="mqtt://127.0.0.1:1883?protocol=311"
python3 -m edgebench.controller.cli broker --port 1883 >"$W/broker.log" 2>&1 &
sleep 2
CTL=(python3 -m edgebench.controller.cli --broker "$BROKER" --fleet gpu --store "sqlite:///$OUT/results-$PHASE.db")

start_agent() {  # device_id, "0,1,2", concurrent(true/false), metrics port
  cat >"$W/$1.yaml" <<CFG
device_id: $1
fleet: gpu
tags: [h200]
telemetry: nvml
sample_interval_s: 0.1
concurrent_per_gpu: $3
gpu_indices: [$2]
state_dir: $W/$1
dataset_root: $W/data
metrics_port: $4
backends:
  keras-jax: {env: {PYTHONPATH: "$SITE"}}
  keras-torch: {env: {PYTHONPATH: "$SITE"}}
  torch: {env: {PYTHONPATH: "$SITE"}}
  sleep: {}
CFG
  python3 -m edgebench.agent.cli run --config "$W/$1.yaml" --broker "$BROKER" --log-level INFO >"$W/$1.log" 2>&1 &
}

gpus_below_last() { seq -s, 0 $((LAST - 1)); }

case "$PHASE" in
  cpu-smoke)  # the same plumbing on a machine without a GPU (checks this script)
    start_agent smoke "" false 9400
    timeout 300 "${CTL[@]}" dispatch --device smoke -b sleep -w fashion-mnist-mlp --synthetic --steps-per-epoch 20 \
      --sweep-id smoke --wait-timeout 120 >"$W/extras/dispatch.txt" 2>&1
    python3 -c "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:9400/metrics').read().decode()[:300])"
    ;;
  study)
    # 1. telemetry against nvidia-smi, on the last GPU, beside the sweep on the others
    CUDA_DEVICE_ORDER=PCI_BUS_ID CUDA_VISIBLE_DEVICES=$LAST timeout 300 python3 benchmarks/gpu_telemetry_check.py \
      --out "$W/tel" --gpu "$LAST" >"$W/extras/telemetry_check.txt" 2>&1 &
    TEL=$!
    start_agent h200 "$(gpus_below_last)" true 9400
    ( sleep 90; python3 -c "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:9400/metrics').read().decode())" \
        >"$W/extras/prometheus_scrape.txt" 2>&1 ) &
    timeout 500 "${CTL[@]}" dispatch --device h200 --sweep sweeps/study-2019-gpu.yaml --sweep-id h200-study-2019 \
      --wait-timeout 470 >"$W/extras/dispatch.txt" 2>&1
    wait $TEL
    cp "$W"/tel/*.jsonl "$OUT/" 2>/dev/null
    cp "$W"/tel/*.json "$W/extras/" 2>/dev/null
    ;;
  study-1gpu)  # the study's cells one at a time on GPU 0 (no telemetry check beside them)
    python3 - "$W/study.yaml" <<'PY' || exit 1
import os, sys, yaml
doc = yaml.safe_load(open("sweeps/study-2019-gpu.yaml"))
keep = os.environ.get("EB_BACKENDS", ",".join(doc["matrix"]["backend"])).split(",")
doc["matrix"]["backend"] = [b for b in doc["matrix"]["backend"] if b in keep]
doc["include"] = [c for c in doc.get("include", []) if c["backend"] in keep]
yaml.safe_dump(doc, open(sys.argv[1], "w"), sort_keys=False)
PY
    start_agent h200 0 false 9400
    timeout 560 "${CTL[@]}" dispatch --device h200 --sweep "$W/study.yaml" --sweep-id "h200-study-2019-1gpu" \
      --wait-timeout 540 >"$W/extras/dispatch.txt" 2>&1
    ;;
  keras-torch-compile)
    TORCH_LOGS=recompiles start_agent h200 0 false 9400
    timeout 560 "${CTL[@]}" dispatch --device h200 --sweep "${EB_SWEEP:-sweeps/keras-torch-compile-1gpu.yaml}" \
      --sweep-id h200-keras-torch-compile --wait-timeout 540 >"$W/extras/dispatch.txt" 2>&1
    ;;
  all)
    # study + knobs on all GPUs but the last (one job per GPU at a time); on the
    # last GPU: the telemetry check, then the harness overhead (agent vs bare)
    start_agent h200 "$(gpus_below_last)" true 9400
    ( sleep 120; python3 -c "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:9400/metrics').read().decode())" \
        >"$W/extras/prometheus_scrape.txt" 2>&1 ) &
    ( CUDA_DEVICE_ORDER=PCI_BUS_ID CUDA_VISIBLE_DEVICES=$LAST timeout 120 python3 benchmarks/gpu_telemetry_check.py \
        --out "$W/tel" --gpu "$LAST" >"$W/extras/telemetry_check.txt" 2>&1
      timeout 200 python3 benchmarks/harness_overhead.py --backend torch --workload imagenet-resnet50 --batch-size 256 \
        --samples 2560 --epochs 6 --precision bf16 --gpus 1 --gpu-index "$LAST" --rounds 2 --out "$W/extras/overhead_torch.json"
      timeout 140 python3 benchmarks/harness_overhead.py --backend keras-jax --workload imagenet-resnet50 --batch-size 256 \
        --samples 2560 --epochs 6 --precision bf16 --gpus 1 --gpu-index "$LAST" --rounds 1 --out "$W/extras/overhead_keras_jax.json"
    ) >"$W/extras/overhead.txt" 2>&1 &
    SIDE=$!
    timeout 500 "${CTL[@]}" dispatch --device h200 --sweep sweeps/study-2019-gpu.yaml --sweep-id h200-study-2019 \
      --wait-timeout 480 >"$W/extras/dispatch.txt" 2>&1 &
    D1=$!
    sleep 5
    timeout 500 "${CTL[@]}" dispatch --device h200 --sweep sweeps/knobs-resnet50-gpu.yaml --sweep-id h200-knobs-resnet50 \
      --wait-timeout 480 >"$W/extras/dispatch_knobs.txt" 2>&1
    wait $D1 $SIDE
    cp "$W"/tel/*.jsonl "$OUT/" 2>/dev/null
    cp "$W"/tel/*.json "$W/extras/" 2>/dev/null
    tail -25 "$W/extras/dispatch_knobs.txt"
    ;;
  knobs)
    start_agent h200 "$(gpus_below_last)" true 9400
    ( timeout 520 python3 benchmarks/harness_overhead.py --backend torch --workload imagenet-resnet50 --batch-size 256 \
        --samples 2560 --epochs 6 --precision bf16 --gpus 1 --gpu-index "$LAST" --rounds 2 --out "$W/extras/overhead_torch.json"
      timeout 300 python3 benchmarks/harness_overhead.py --backend keras-jax --workload imagenet-resnet50 --batch-size 256 \
        --samples 2560 --epochs 6 --precision bf16 --gpus 1 --gpu-index "$LAST" --rounds 1 --out "$W/extras/overhead_keras_jax.json"
    ) >"$W/extras/overhead.txt" 2>&1 &
    OVH=$!
    timeout 520 "${CTL[@]}" dispatch --device h200 --sweep sweeps/knobs-resnet50-gpu.yaml --sweep-id h200-knobs-resnet50 \
      --wait-timeout 500 >"$W/extras/dispatch.txt" 2>&1
    wait $OVH
    ;;
  jaxdp)
    start_agent "h200x$NGPU" "$(seq -s, 0 $LAST)" false 9400
    timeout 400 "${CTL[@]}" dispatch --device "h200x$NGPU" --sweep sweeps/scaling-resnet50-keras-jax.yaml \
      --sweep-id "h200x$NGPU-keras-jax-dp" --wait-timeout 380 >"$W/extras/dispatch.txt" 2>&1
    ;;
  telemetry)  # NVML call costs, telemetry check vs nvidia-smi, sampler cost per read plan and with no NVML
    CUDA_DEVICE_ORDER=PCI_BUS_ID timeout 200 python3 benchmarks/nvml_call_cost.py --out "$W/extras" --gpu "$LAST" \
      >"$W/extras/nvml_call_cost.txt" 2>&1
    CUDA_DEVICE_ORDER=PCI_BUS_ID CUDA_VISIBLE_DEVICES=$LAST timeout 240 python3 benchmarks/gpu_telemetry_check.py \
      --out "$W/tel" --gpu "$LAST" --trace-name nvml_trace_h200_lean.jsonl >"$W/extras/telemetry_check.txt" 2>&1
    CUDA_DEVICE_ORDER=PCI_BUS_ID CUDA_VISIBLE_DEVICES=$LAST timeout 100 python3 benchmarks/gpu_telemetry_check.py \
      --out "$W/tel-none" --telemetry none --workload torch >"$W/extras/telemetry_check_none.txt" 2>&1
    cp "$W"/tel-none/gpu_telemetry_check.json "$W/extras/gpu_telemetry_check_none.json" 2>/dev/null
    cp "$W"/tel/*.jsonl "$OUT/" 2>/dev/null
    cp "$W"/tel/*.json "$W/extras/" 2>/dev/null
    cat "$W/extras/nvml_call_cost.txt"
    tail -3 "$W/extras/telemetry_check_none.txt"
    ;;
  keras-async)  # after the async-safe timer callback: Keras harness overheads, then Keras-JAX DataParallel
    timeout 300 python3 benchmarks/harness_overhead.py --backend keras-jax --workload imagenet-resnet50 --batch-size 256 \
      --samples 2560 --epochs 6 --precision bf16 --gpus 1 --gpu-index 0 --rounds 1 \
      --out "$W/extras/overhead_keras_jax.json" >"$W/extras/overhead.txt" 2>&1 &
    O1=$!
    timeout 300 python3 benchmarks/harness_overhead.py --backend keras-torch --workload imagenet-resnet50 --batch-size 256 \
      --samples 2560 --epochs 4 --precision bf16 --gpus 1 --gpu-index 1 --rounds 1 \
      --out "$W/extras/overhead_keras_torch.json" >"$W/extras/overhead_torch.txt" 2>&1 &
    O2=$!
    wait $O1 $O2
    grep -h "ratio" "$W/extras/overhead.txt" "$W/extras/overhead_torch.txt"
    start_agent "h200x$NGPU" "$(seq -s, 0 $LAST)" false 9400
    timeout 330 "${CTL[@]}" dispatch --device "h200x$NGPU" --sweep sweeps/scaling-resnet50-keras-jax.yaml \
      --sweep-id "h200x$NGPU-keras-jax-dp-async" --wait-timeout 320 >"$W/extras/dispatch.txt" 2>&1
    ;;
  keras-knobs)  # issue 21 on one GPU: the Keras knob cells after the bf16 fix, 3 repeats, through the agent
    start_agent h200 0 false 9400
    timeout 540 "${CTL[@]}" dispatch --device h200 --sweep sweeps/knobs-keras-resnet50-1gpu.yaml \
      --sweep-id h200-keras-knobs --wait-timeout 520 >"$W/extras/dispatch.txt" 2>&1
    ;;
  keras-overhead)  # Keras-JAX then Keras-torch harness overhead on GPU 0, same window definition both sides
    for b in keras-jax keras-torch; do
      timeout 250 python3 benchmarks/harness_overhead.py --backend $b --workload imagenet-resnet50 --batch-size 256 \
        --samples 2560 --epochs 5 --precision bf16 --gpus 1 --gpu-index 0 --rounds 1 \
        --out "$W/extras/overhead_$b.json" >"$W/extras/overhead_$b.txt" 2>&1
      grep -h "ratio" "$W/extras/overhead_$b.txt"
    done
    ;;
  jaxdp-telemetry)  # Keras-JAX DataParallel at 1, 2 and every GPU, then the telemetry phase
    start_agent "h200x$NGPU" "$(seq -s, 0 $LAST)" false 9400
    timeout 330 "${CTL[@]}" dispatch --device "h200x$NGPU" --sweep sweeps/scaling-resnet50-keras-jax.yaml \
      --sweep-id "h200x$NGPU-keras-jax-dp" --wait-timeout 320 >"$W/extras/dispatch.txt" 2>&1
    pkill -f "agent.cli run" ; sleep 2
    bash "$0" telemetry
    ;;
  scaling)
    start_agent "h200x$NGPU" "$(seq -s, 0 $LAST)" false 9400
    timeout 540 "${CTL[@]}" dispatch --device "h200x$NGPU" --sweep sweeps/scaling-resnet50.yaml \
      --sweep-id "h200x$NGPU-scaling" --wait-timeout 520 >"$W/extras/dispatch.txt" 2>&1
    ;;
esac
"${CTL[@]}" results --limit 100 >"$W/extras/results.txt" 2>&1
"${CTL[@]}" report >"$W/extras/report.txt" 2>&1
cp "$W"/*.log "$W"/*.yaml "$W/extras/" 2>/dev/null
find "$W" -name stderr.log -path '*jobs*' | while read -r f; do cp "$f" "$W/extras/$(basename "$(dirname "$f")")-stderr.log"; done
tar -C "$W" -czf "$OUT/extras-$PHASE.tgz" extras
tail -40 "$W/extras/dispatch.txt"
cat "$W/extras/overhead.txt" 2>/dev/null | tail -8
tail -30 "$W/extras/telemetry_check.txt" 2>/dev/null
