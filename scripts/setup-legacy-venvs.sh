#!/usr/bin/env bash
# Create the virtual environments of the 2019 stacks (and the Python 3.11 MXNet
# route) under .cache/venvs/, for the legacy runner and its tests.
#
#   scripts/setup-legacy-venvs.sh [NAME ...]     # default: all three
#
#   keras-mxnet-py36   Python 3.6.15, keras-mxnet 2.2.4.1 + MXNet 1.4.0 (the study's stack)
#   keras-tf1-py36     Python 3.6.15, Keras 2.2.4 + TensorFlow 1.13.1 (the study's stack)
#   keras-mxnet-py311  Python 3.11,   keras-mxnet 2.2.4.3 + MXNet 1.9.1 (runner applies shims)
#
# Idempotent: a venv whose stamp matches its requirements is left alone; one
# that is missing, half built or built from other requirements is rebuilt.
# Progress: a line when a venv starts, one per package pip collects, downloads
# or installs, and one with the time it took; pip's full log goes to <venv>.log
# and its tail is printed when something fails, and then the script exits non-zero.
#
# Environment: PYENV_ROOT (else `pyenv root`, else ~/.pyenv), EDGEBENCH_VENVS
# (default <repo>/.cache/venvs), PY36_VERSION (3.6.15), PY311_VERSION (3.11.7).
# pip honours PIP_CERT / PIP_INDEX_URL etc. as usual (TLS-intercepting proxies).
set -euo pipefail
exec 3>&2  # the terminal, for progress lines from inside blocks whose output goes to a log

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venvs="${EDGEBENCH_VENVS:-$repo/.cache/venvs}"
pyenv_root="${PYENV_ROOT:-$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")}"
py36="$pyenv_root/versions/${PY36_VERSION:-3.6.15}/bin/python"
py311="$pyenv_root/versions/${PY311_VERSION:-3.11.7}/bin/python"

# name | interpreter | pip pinned first | requirements | import check
# pip 21.3.1 is the last pip for Python 3.6 with the new resolver; the
# interpreter's bundled pip 18 cannot resolve these sets. numpy is pinned to
# the 2019 releases: MXNet 1.4.0 needs < 1.15 (1.14.6); TF 1.13.1 with numpy
# >= 1.17 prints FutureWarnings at every import (1.16.6).
declare -A PY=(
  [keras-mxnet-py36]="$py36"
  [keras-tf1-py36]="$py36"
  [keras-mxnet-py311]="$py311"
)
declare -A PIP=(
  [keras-mxnet-py36]="pip==21.3.1"
  [keras-tf1-py36]="pip==21.3.1"
  [keras-mxnet-py311]=""
)
# Pillow: runner/imagenet.py decodes the streamed ImageNet folders with it.
declare -A REQS=(
  [keras-mxnet-py36]="keras-mxnet==2.2.4.1 mxnet==1.4.0 numpy<1.15 pillow"
  [keras-tf1-py36]="tensorflow==1.13.1 keras==2.2.4 h5py==2.10.0 numpy<1.17 pillow"
  [keras-mxnet-py311]="mxnet==1.9.1 keras-mxnet==2.2.4.3 numpy==1.23.5 scipy==1.10.1 pillow"
)
declare -A CHECK=(
  [keras-mxnet-py36]="import mxnet, keras_applications, numpy, h5py, PIL"
  [keras-tf1-py36]="import tensorflow, keras_applications, numpy, h5py, PIL"
  [keras-mxnet-py311]="import mxnet, keras_applications, numpy, scipy, h5py, PIL"
)

die() { echo "setup-legacy-venvs: $*" >&2; exit 1; }

# pip's own progress lines, prefixed, on the terminal (stderr): a build takes minutes
progress() {
  local name=$1
  grep --line-buffered -E '^(Collecting|  Downloading|Installing collected|Successfully installed)' \
    | sed -u "s/^ */$name: /" >&3 || true
}

build() {
  local name="$1"
  local dir="$venvs/$name" log="$venvs/$name.log"
  local python="${PY[$name]}" stamp_text
  stamp_text="$(printf '%s\n' "python=$("$python" -V 2>&1)" "pip=${PIP[$name]}" "reqs=${REQS[$name]}")"
  if [[ -f "$dir/.edgebench-stamp" && "$(cat "$dir/.edgebench-stamp")" == "$stamp_text" ]] \
     && "$dir/bin/python" -c "${CHECK[$name]}" >/dev/null 2>&1; then
    echo "$name: up to date"
    return 0
  fi
  local t0=$SECONDS
  echo "$name: building (pip log: $log)"
  rm -rf "$dir"
  : >"$log"
  # shellcheck disable=SC2086  # requirement lists are split on purpose
  if ! {
    "$python" -m venv "$dir" &&
    if [[ -n "${PIP[$name]}" ]]; then "$dir/bin/python" -m pip install -q "${PIP[$name]}"; fi &&
    "$dir/bin/python" -m pip install --progress-bar off --prefer-binary ${REQS[$name]} 2>&1 \
      | tee -a "$log" | progress "$name" &&
    "$dir/bin/python" -c "${CHECK[$name]}"
  } >>"$log" 2>&1; then
    tail -n 40 "$log" >&2
    rm -rf "$dir"
    die "$name: build failed (full log: $log)"
  fi
  printf '%s\n' "$stamp_text" >"$dir/.edgebench-stamp"
  echo "$name: built in $((SECONDS - t0)) s"
}

main() {
  local names=("$@")
  if [[ ${#names[@]} -eq 0 ]]; then
    names=(keras-mxnet-py36 keras-tf1-py36 keras-mxnet-py311)
  fi
  mkdir -p "$venvs"
  for name in "${names[@]}"; do
    [[ -n "${PY[$name]+x}" ]] || die "unknown venv '$name' (known: ${!PY[*]})"
    [[ -x "${PY[$name]}" ]] || die "$name: interpreter ${PY[$name]} not found (pyenv install it)"
    build "$name"
  done
}

main "$@"
