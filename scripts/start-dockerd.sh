#!/usr/bin/env bash
# Start a Docker engine for the image and deploy tests, and build the local
# base image they build on. Idempotent and quiet: safe to run on every CI run.
#
#   scripts/start-dockerd.sh            # install if missing, start, build base
#
# Why each step:
# - docker.io (Debian's engine + a client with built-in BuildKit) and
#   debootstrap come from the machine's own apt mirror.
# - dockerd runs without iptables and without the default bridge: this
#   machine kind has no netfilter for it, so containers use --network host
#   (builds too) or none (runner containers).
# - Docker Hub is not reachable here, so the Dockerfiles' BASE_IMAGE is
#   replaced by local/debian:bookworm, a debootstrap of Debian 12 with Python.
#
# Environment: EDGEBENCH_DOCKERD_DIR (logs, default /var/tmp/edgebench-dockerd),
# EDGEBENCH_BASE_IMAGE (default local/debian:bookworm), DEBIAN_MIRROR (default:
# the mirror apt uses for bookworm here).
set -euo pipefail

state_dir=${EDGEBENCH_DOCKERD_DIR:-/var/tmp/edgebench-dockerd}
base_image=${EDGEBENCH_BASE_IMAGE:-local/debian:bookworm}
suite=bookworm
mkdir -p "$state_dir"

say() { printf 'start-dockerd: %s\n' "$*" >&2; }

if [ "$(id -u)" != 0 ]; then
  say "must run as root (it installs packages and starts dockerd)"
  exit 1
fi

# 1. packages
if ! dpkg -s docker.io >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
  say "installing docker.io and debootstrap"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >"$state_dir/apt.log" 2>&1
  apt-get install -y -qq --no-install-recommends docker.io debootstrap >>"$state_dir/apt.log" 2>&1 || {
    tail -20 "$state_dir/apt.log" >&2
    exit 1
  }
fi
# The docker.io client has BuildKit built in; a newer client first on PATH
# may lack buildx, so always talk through this one.
docker_cli=$(dpkg -L docker.io | grep 'bin/docker$' | head -1)

# 2. the engine
if ! "$docker_cli" info >/dev/null 2>&1; then
  say "starting dockerd (log: $state_dir/dockerd.log)"
  # setsid: the engine outlives this script and the CI step that ran it
  setsid nohup dockerd --iptables=false --ip6tables=false --bridge=none \
    >"$state_dir/dockerd.log" 2>&1 </dev/null &
  echo $! >"$state_dir/dockerd.pid"
  for _ in $(seq 1 120); do
    "$docker_cli" info >/dev/null 2>&1 && break
    sleep 0.5
  done
  if ! "$docker_cli" info >/dev/null 2>&1; then
    say "dockerd did not come up:"
    tail -30 "$state_dir/dockerd.log" >&2
    exit 1
  fi
fi

# 3. the local base image
if ! "$docker_cli" image inspect "$base_image" >/dev/null 2>&1; then
  mirror=${DEBIAN_MIRROR:-$(apt-cache policy 2>/dev/null | awk -v s="$suite/main" '$3 == s {print $2; exit}')}
  mirror=${mirror:-http://deb.debian.org/debian}
  rootfs=$(mktemp -d "$state_dir/rootfs.XXXXXX")
  trap 'rm -rf "$rootfs"' EXIT
  say "building $base_image with debootstrap from $mirror (about a minute)"
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    "$suite" "$rootfs" "$mirror" >"$state_dir/debootstrap.log" 2>&1 || {
    tail -20 "$state_dir/debootstrap.log" >&2
    exit 1
  }
  # Keep the image small: package caches and lists are not needed at run time.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  # A minbase rootfs has the host's mirror in sources.list, which is what apt
  # inside builds should use too.
  tar -C "$rootfs" -c . | "$docker_cli" import \
    -c 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'CMD ["/bin/bash"]' - "$base_image" >/dev/null
fi
say "ready ($("$docker_cli" version --format '{{.Server.Version}}'), base $base_image)"
