#!/usr/bin/env bash
# Issue 21 (and the 1-GPU point of issue 23) on one GPU, bounded to ~8 minutes:
# Keras-JAX ResNet-50 224² bs256 bf16, input host vs device, through the agent and as a bare fit()
# (3 alternating rounds, 100 measured batches each), then native JAX, the 1-GPU data-parallel
# points and native torch compiled (benchmarks/gpu/keras_fidelity.py; phases that no longer fit
# the budget are skipped and named in the report).
#
#   OUT=/tmp/out benchmarks/gpu/keras_fidelity.sh
#
# A dry run on a CPU box (tiny settings; what CI-less checking can do before the GPU run):
#   EB_GPUS=0 EB_WORKLOAD=fashion-mnist-cnn EB_BATCH=32 EB_SAMPLES=256 EB_EPOCHS=2 EB_ROUNDS=2 \
#     OUT=/tmp/fid benchmarks/gpu/keras_fidelity.sh
#
# The machine has torch, jax (CUDA), flax and optax; keras, pydantic & co, paho-mqtt, amqtt,
# SQLAlchemy ... travel as wheels in .whl/ (docs/PERFORMANCE.md lists the pip download line).
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/edgebench-out}
W=/tmp/eb-fidelity
mkdir -p "$OUT" "$W"
export COLUMNS=160 PYTHONUNBUFFERED=1
# one XLA compile of each step function for the whole run: later processes load it from disk
# (EB_JAX_CACHE=0: none, every process compiles and autotunes its own step)
if [ "${EB_JAX_CACHE:-1}" = 1 ]; then
  export JAX_COMPILATION_CACHE_DIR=$W/jax-cache JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0.5
fi
# EB_LOG_COMPILES=1: every XLA compile logged with its time, in each arm's stderr (compiles after the warm-up
# are a measured window's cost)
[ -n "${EB_LOG_COMPILES:-}" ] && export JAX_LOG_COMPILES=1
PY=${PYTHON:-python3}
if [ -d .whl ] && [ -z "${EDGEBENCH_SKIP_WHEELS:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl >"$W/pip.log" 2>&1 \
    || { cat "$W/pip.log"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
{ nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; } >"$OUT/gpu.txt" 2>&1
$PY -c "import sys, keras, jax; print(sys.version.split()[0], 'keras', keras.__version__, 'jax', jax.__version__, jax.devices())" \
  2>&1 | tee "$OUT/versions.txt"
timeout "${EB_TIMEOUT_S:-455}" $PY benchmarks/gpu/keras_fidelity.py 2>&1 | tee "$OUT/keras_fidelity.log"
rc=${PIPESTATUS[0]}
cp /tmp/fidelity-*/agent.log "$OUT/" 2>/dev/null
# each arm's stderr: the runner alone and the bare loop (fidelity-*/*.stderr), the agent's runners (jobs/*/stderr.log)
(cd /tmp && tar -czf "$OUT/stderr.tgz" $(ls -d fidelity-*/*.stderr 2>/dev/null) \
  $(find fidelity-* -name stderr.log 2>/dev/null)) 2>/dev/null
exit "$rc"
