#!/usr/bin/env bash
# Issue 18's H200 runs, through edgebench itself: the embedded broker, a real agent (NVML telemetry),
# `controller dispatch` of sweeps/inference-resnet50-gpu.yaml (torch eager / torch.compile / CUDA graphs
# and Keras-on-JAX, ResNet-50 224x224 Offline and SingleStream under MLPerf LoadGen), results in SQLite,
# then the inference report beside MLPerf's published anchors. One device call, <= 10 minutes:
#
#   OUT=/tmp/out benchmarks/gpu/inference.sh
#
# The same script on a CPU box (how it was checked before its one GPU run; docs/INFERENCE.md):
#
#   EDGEBENCH_INFER_DEVICE=cpu EDGEBENCH_INFER_SWEEP=sweeps/inference-cpu-smoke.yaml OUT=/tmp/out \
#     benchmarks/gpu/inference.sh
#
# Environment: EDGEBENCH_INFER_SWEEP (the sweep), EDGEBENCH_INFER_DEVICE (gpu: NVML telemetry, device id
# h200; cpu: default telemetry, device id cpu), EDGEBENCH_INFER_EXPORT (the workload exported before the
# timed runs; default the sweep's), EDGEBENCH_INFER_BUDGET_S (dispatch's wait, default 360),
# EDGEBENCH_SKIP_WHEELS (use what is installed, not .whl/).
# Python packages missing on the machine (pydantic & co, paho-mqtt, amqtt, SQLAlchemy, mlcommons-loadgen,
# onnxscript, ...) travel as wheels in .whl/ and go to /tmp/site, which the runner's interpreter sees too.
# $OUT gets at most 7 files: results-inference.db, inference-report.md, report.md, report.html, dispatch.txt,
# export.txt, logs.tgz (agent, broker, pip, each job's stderr and LoadGen summaries).
set -u
cd "$(dirname "$0")/../.."
REPO=$PWD
OUT=${OUT:-/tmp/edgebench-out}
SWEEP=${EDGEBENCH_INFER_SWEEP:-sweeps/inference-resnet50-gpu.yaml}
KIND=${EDGEBENCH_INFER_DEVICE:-gpu}
BUDGET_S=${EDGEBENCH_INFER_BUDGET_S:-360}
W=$(mktemp -d /tmp/eb-inference.XXXXXX)
mkdir -p "$OUT" "$W/logs"
export COLUMNS=160 PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false TF_CPP_MIN_LOG_LEVEL=2
SITE=""
if [ -d .whl ] && [ -z "${EDGEBENCH_SKIP_WHEELS:-}" ] && ls .whl/*.whl >/dev/null 2>&1; then
  SITE=$W/site
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" .whl/*.whl \
    >"$W/logs/pip.log" 2>&1 || { cat "$W/logs/pip.log"; exit 1; }
fi
export PYTHONPATH=$REPO${SITE:+:$SITE}
export EDGEBENCH_MODEL_CACHE=$W/models
case "$KIND" in
  gpu) DEVICE=h200; TELEMETRY=auto; nvidia-smi -L >"$W/logs/nvidia-smi-L.txt" 2>&1 ;;
  cpu) DEVICE=cpu; TELEMETRY=auto ;;
  *) echo "EDGEBENCH_INFER_DEVICE is gpu or cpu, not $KIND" >&2; exit 2 ;;
esac
EXPORT=${EDGEBENCH_INFER_EXPORT:-$(sed -n 's/^  workload: *//p' "$SWEEP" | head -1)}
PORT=$(python3 -c "from edgebench.common.broker import free_port; print(free_port())")
# the embedded broker (amqtt) speaks MQTT 3.1.1 only
BROKER="mqtt://127.0.0.1:$PORT?protocol=311"
python3 -m edgebench.controller.cli broker --port "$PORT" >"$W/logs/broker.log" 2>&1 &
BROKER_PID=$!
# the runner's environment: the carried packages, the box's model cache (the export below fills it)
RUNNER_ENV="{PYTHONPATH: \"$PYTHONPATH\", EDGEBENCH_MODEL_CACHE: \"$EDGEBENCH_MODEL_CACHE\", TF_CPP_MIN_LOG_LEVEL: \"2\", XLA_PYTHON_CLIENT_PREALLOCATE: \"false\"}"
cat >"$W/agent.yaml" <<YAML
device_id: $DEVICE
fleet: inference
tags: [$KIND]
telemetry: $TELEMETRY
sample_interval_s: 0.1
state_dir: $W/state
dataset_root: $W/data
backends:
  torch: {executor: local, env: $RUNNER_ENV}
  onnxruntime: {executor: local, env: $RUNNER_ENV}
  openvino: {executor: local, env: $RUNNER_ENV}
  litert: {executor: local, env: $RUNNER_ENV}
  keras-jax: {executor: local, env: $RUNNER_ENV}
YAML
sleep 2
python3 -m edgebench.agent.cli run --config "$W/agent.yaml" --broker "$BROKER" >"$W/logs/agent.log" 2>&1 &
AGENT_PID=$!
finish() {
  kill "$AGENT_PID" 2>/dev/null; wait "$AGENT_PID" 2>/dev/null
  kill "$BROKER_PID" 2>/dev/null
  cp "$W/agent.yaml" "$W/logs/" 2>/dev/null
  # each job's stderr and LoadGen's own summary (the detail logs are in the results already)
  (cd "$W/state" 2>/dev/null && find jobs -name stderr.log -o -name mlperf_log_summary.txt) >"$W/files.txt" 2>/dev/null
  tar -czf "$OUT/logs.tgz" -C "$W" logs $(sed 's|^|state/|' "$W/files.txt") 2>/dev/null
}
trap finish EXIT
C=(python3 -m edgebench.controller.cli --broker "$BROKER" --fleet inference --store "sqlite:///$OUT/results-inference.db")
# export once, before the timed runs, into the cache the runner reads (ResNet-50 to ONNX: seconds on 16 cores)
# (EDGEBENCH_INFER_EXPORT=none: the sweep has no ONNX Runtime case, nothing to export)
if [ "$EXPORT" != none ]; then
  timeout 180 "${C[@]}" models export -w "$EXPORT" -r onnxruntime -p fp32 --cache "$EDGEBENCH_MODEL_CACHE" \
    >"$OUT/export.txt" 2>&1
  echo "export: rc $?" >>"$OUT/export.txt"
fi
timeout $((BUDGET_S + 30)) "${C[@]}" dispatch --device "$DEVICE" --sweep "$SWEEP" --sweep-id "inference-$KIND" \
  --wait-timeout "$BUDGET_S" >"$OUT/dispatch.txt" 2>&1
echo "dispatch: rc $?" >>"$OUT/dispatch.txt"
# EDGEBENCH_INFER_CEILING=1: PyTorch's own ceiling on this GPU beside the LoadGen figures (a bare loop of the
# same module, benchmarks/gpu/torch_ceiling.py) in the time left before EDGEBENCH_INFER_END_S (default 560)
if [ -n "${EDGEBENCH_INFER_CEILING:-}" ]; then
  END_S=${EDGEBENCH_INFER_END_S:-560}
  if [ "$SECONDS" -lt $((END_S - 40)) ]; then
    timeout $((END_S - SECONDS)) python3 benchmarks/gpu/torch_ceiling.py --budget-s $((END_S - SECONDS - 10)) \
      2>&1 | tee "$W/logs/ceiling.txt"
    cp "$OUT/torch_ceiling.json" "$W/logs/" 2>/dev/null
  fi
# issue 18's overhead targets on a quiet box (its CPU, ORT and torch; no OpenVINO there), if time is left
elif [ "$SECONDS" -lt 400 ]; then
  timeout $((440 - SECONDS)) python3 benchmarks/inference_overhead.py --workload cifar10-resnet56 --seconds 4 \
    --rounds 2 --only ort,torch --out "$W/logs/overhead.json" >"$W/logs/overhead.txt" 2>&1
fi
"${C[@]}" inference report --out "$OUT/inference-report.md" >>"$W/logs/report.log" 2>&1
"${C[@]}" report --format md --out "$OUT/report.md" >>"$W/logs/report.log" 2>&1
"${C[@]}" report --format html --out "$OUT/report.html" >>"$W/logs/report.log" 2>&1
cat >>"$OUT/inference-report.md" <<'MD'

### MLPerf anchors (published; docs/INFERENCE.md)
| system | scenario | figure |
|---|---|---|
| 1 x H100 (v4.0) | ResNet-50 Offline | 88,714 samples/s |
| 8 x H200 (v4.1) | ResNet-50 Offline | 756,960 samples/s (~94,600 per GPU) |
| Jetson AGX Orin (v3.1) | ResNet-50 SingleStream | p90 0.64 ms |
| target (issue 18) | edgebench best ResNet-50 Offline on 1 x H200 | >= 50 % of 94,600 = 47,300 samples/s, or the gap explained |

MLPerf's figures are INT8/FP8 TensorRT engines on 224x224 inputs under the 600 s rules; these runs are
bf16 torch (no TensorRT here) on the workload's inputs (224x224 for imagenet-resnet50; the study's
synthetic-resnet50 is 256x256, (256/224)^2 = 1.31 x the FLOPs) under quick rules: compare with that in mind.
MD
tail -30 "$OUT/dispatch.txt"
cat "$W/logs/overhead.txt" 2>/dev/null
cat "$OUT/inference-report.md"
