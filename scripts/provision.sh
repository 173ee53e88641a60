#!/usr/bin/env bash
# Set up what the test suite needs on this machine, as far as this user can:
#
#   as root   the apt packages (mosquitto, chromium, postgresql), a Docker engine
#             with a local base image (scripts/start-dockerd.sh), and the 2019
#             stacks' Python 3.6 venvs (scripts/setup-legacy-venvs.sh);
#   otherwise the venvs when their interpreters exist, and one line naming what is
#             missing and the command to run first. The tests that need it are
#             skipped, and the run ends with a summary of the skipped groups.
#
# `make test` runs it first; .ci/run runs it as its provisioning step.
# Idempotent: what is there already is left alone. SKIP_PROVISION=1 skips it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ -n "${SKIP_PROVISION:-}" ] && exit 0
export DEBIAN_FRONTEND=noninteractive

step() {  # step NAME COMMAND...: one line when it starts, one with its duration when it ends
  local name=$1 t0=$SECONDS rc=0
  shift
  printf '== %s ...\n' "$name"
  "$@" || rc=$?
  printf '== %s: %s (%d s)\n' "$name" "$([ "$rc" = 0 ] && echo ok || echo "FAILED, exit $rc")" "$((SECONDS - t0))"
  return "$rc"
}

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

apt_missing=()
have mosquitto || apt_missing+=(mosquitto mosquitto-clients)
have docker-registry || apt_missing+=(docker-registry)  # the OCI team store's tests (docs/MODELS.md)
have chromium || have chromium-browser || apt_missing+=(chromium fonts-dejavu-core)
have initdb || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || apt_missing+=(postgresql)

docker_ready() {
  local cli
  cli=$(dpkg -L docker.io 2>/dev/null | grep 'bin/docker$' | head -1) || return 1
  [ -n "$cli" ] && "$cli" info >/dev/null 2>&1 \
    && "$cli" image inspect "${EDGEBENCH_BASE_IMAGE:-local/debian:bookworm}" >/dev/null 2>&1
}

apt_install() {
  apt-get update -q
  # no -qq: apt prints each package as it unpacks, so a long install shows progress
  apt-get install -y --no-install-recommends "${apt_missing[@]}"
}

if [ "$(id -u)" = 0 ]; then
  if [ ${#apt_missing[@]} -gt 0 ]; then
    step "system packages (${apt_missing[*]})" apt_install
  fi
  docker_ready || step "Docker engine and local base image" scripts/start-dockerd.sh
  step "the 2019 stacks' Python 3.6 environments" scripts/setup-legacy-venvs.sh
  exit 0
fi

missing=("${apt_missing[@]}")
docker_ready || missing+=("a Docker engine")
# the venvs need no root, only pyenv's interpreters: build them when those exist
step "the 2019 stacks' Python 3.6 environments" scripts/setup-legacy-venvs.sh || missing+=("the Python 3.6 venvs")
if [ ${#missing[@]} -gt 0 ]; then
  echo "make test: missing ${missing[*]}; run 'sudo scripts/provision.sh' first (or 'sudo bash .ci/run'); until then their tests are skipped (summary at the end)" >&2
fi
