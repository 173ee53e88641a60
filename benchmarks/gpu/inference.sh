#!/usr/bin/env bash
# Issue 18's H200 runs, through edgebench itself (embedded broker, a real agent with NVML telemetry,
# controller dispatch of sweeps/inference-resnet50-gpu.yaml, results in SQLite), then the inference
# report beside MLPerf's published anchors. NOT run yet (no GPU this session): see docs/INFERENCE.md.
#
#   OUT=/tmp/out benchmarks/gpu/inference.sh
#
# Needs on the machine: torch (there), onnx + onnxruntime (there, CPU build), and carried in .whl/:
# mlcommons-loadgen (cp312), onnxscript, pydantic & co (as benchmarks/gpu/run.sh); onnxruntime-gpu and
# tensorrt-cu12 only for the CUDA/TensorRT EP cases (large: carry in parts, the machine keeps ignored
# files while warm). Cases whose runtime or EP is absent come back REJECTED or FAILED with the reason.
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/edgebench-out}
W=/tmp/eb-inference
mkdir -p "$OUT" "$W"
export COLUMNS=160 PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >"$W/pip.log" 2>&1 || { cat "$W/pip.log"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
PORT=18830
STORE="sqlite:///$OUT/results-inference.db"
export EDGEBENCH_MODEL_CACHE=$W/models
python3 -m edgebench.controller.cli broker --port $PORT >"$W/broker.log" 2>&1 &
BROKER=$!
cat >"$W/agent.yaml" <<YAML
backends:
  torch: {executor: local, env: {EDGEBENCH_MODEL_CACHE: $W/models}}
  onnxruntime: {executor: local, env: {EDGEBENCH_MODEL_CACHE: $W/models}}
  tensorrt: {executor: local, env: {EDGEBENCH_MODEL_CACHE: $W/models}}
YAML
python3 -m edgebench.agent.cli run --broker mqtt://127.0.0.1:$PORT --device-id h200 --state-dir "$W/state" \
  --config "$W/agent.yaml" >"$W/agent.log" 2>&1 &
AGENT=$!
trap 'kill $AGENT $BROKER 2>/dev/null' EXIT
C="python3 -m edgebench.controller.cli --broker mqtt://127.0.0.1:$PORT --store $STORE"
# export once before the timed runs (ResNet-50 to ONNX: ~5 s on the H200 machine's CPU)
$C models export -w synthetic-resnet50 -r onnxruntime -p fp32 -p fp16 | tee "$OUT/export.txt"
$C dispatch --device h200 --sweep sweeps/inference-resnet50-gpu.yaml --wait-timeout 3000 | tee "$OUT/dispatch.txt"
$C inference report --out "$OUT/inference-report.md"
cat >>"$OUT/inference-report.md" <<'MD'

### MLPerf anchors (published; docs/INFERENCE.md)
| system | scenario | figure |
|---|---|---|
| 1 x H100 (v4.0) | ResNet-50 Offline | 88,714 samples/s |
| 8 x H200 (v4.1) | ResNet-50 Offline | 756,960 samples/s (~94,600 per GPU) |
| Jetson AGX Orin (v3.1) | ResNet-50 SingleStream | p90 0.64 ms |
| target (issue 18) | edgebench best ResNet-50 Offline on 1 x H200 | >= 50 % of 94,600 = 47,300 samples/s, or the gap explained |
MD
cp "$W"/*.log "$OUT/" 2>/dev/null
cat "$OUT/inference-report.md"
