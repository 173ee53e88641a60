#!/usr/bin/env bash
# Start a Docker engine for the image and deploy tests, and build the local
# base image they build on. Idempotent and quiet: safe to run on every CI run.
#
#   scripts/start-dockerd.sh               # install if missing, start, build base
#   scripts/start-dockerd.sh --arch arm64  # the same, plus local/debian:bookworm-arm64
#                                          # (needs scripts/setup-qemu.sh first)
#
# Why each step:
# - docker.io (Debian's engine + a client with built-in BuildKit) and
#   debootstrap come from the machine's own apt mirror.
# - dockerd runs without iptables and without the default bridge: this
#   machine kind has no netfilter for it, so containers use --network host
#   (builds too) or none (runner containers).
# - Docker Hub is not reachable here, so the Dockerfiles' BASE_IMAGE is
#   replaced by local/debian:bookworm, a debootstrap of Debian 12 with Python,
#   also tagged local/debian:bookworm-amd64 so that multi-platform builds can
#   name both bases as local/debian:bookworm-{arch} (docs/IMAGES.md).
# - The arm64 base is debootstrapped with --arch arm64: its second stage runs
#   arm64 binaries in the chroot through QEMU (binfmt_misc, scripts/setup-qemu.sh),
#   about 4 minutes here. `docker import --platform` is ignored by this engine
#   (20.10) and would record amd64, so the rootfs goes in through a BuildKit
#   build FROM scratch with --platform linux/arm64, which records the platform.
#
# Environment: EDGEBENCH_DOCKERD_DIR (logs, default /var/tmp/edgebench-dockerd),
# EDGEBENCH_BASE_IMAGE (default local/debian:bookworm), DEBIAN_MIRROR (default:
# the mirror apt uses for bookworm here).
set -euo pipefail

arch=amd64
if [ "${1:-}" = "--arch" ]; then
  arch=${2:?--arch needs amd64 or arm64}
fi
case "$arch" in amd64 | arm64) ;; *) echo "start-dockerd: --arch amd64 or arm64, not $arch" >&2; exit 2 ;; esac

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
debootstrap_base() {  # ARCH DIR
  mirror=${DEBIAN_MIRROR:-$(apt-cache policy 2>/dev/null | awk -v s="$suite/main" '$3 == s {print $2; exit}')}
  mirror=${mirror:-http://deb.debian.org/debian}
  say "building the $1 base with debootstrap from $mirror (amd64: about a minute; arm64 under QEMU: ~4)"
  debootstrap --arch "$1" --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    "$suite" "$2" "$mirror" >"$state_dir/debootstrap-$1.log" 2>&1 || {
    tail -20 "$state_dir/debootstrap-$1.log" >&2
    exit 1
  }
  # Keep the image small: package caches and lists are not needed at run time.
  # A minbase rootfs has the host's mirror in sources.list, which is what apt
  # inside builds should use too.
  rm -rf "$2"/var/cache/apt/archives/*.deb "$2"/var/lib/apt/lists/*
}
image_env='ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
if [ "$arch" = amd64 ]; then
  if ! "$docker_cli" image inspect "$base_image" >/dev/null 2>&1; then
    rootfs=$(mktemp -d "$state_dir/rootfs.XXXXXX")
    trap 'rm -rf "$rootfs"' EXIT
    debootstrap_base amd64 "$rootfs"
    tar -C "$rootfs" -c . | "$docker_cli" import -c "$image_env" -c 'CMD ["/bin/bash"]' - "$base_image" >/dev/null
  fi
  "$docker_cli" image inspect "$base_image-amd64" >/dev/null 2>&1 || "$docker_cli" tag "$base_image" "$base_image-amd64"
else
  base_image="$base_image-$arch"
  if ! "$docker_cli" image inspect "$base_image" >/dev/null 2>&1; then
    if ! [ -f /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
      say "arm64 binaries cannot run here: run scripts/setup-qemu.sh first"
      exit 1
    fi
    work=$(mktemp -d "$state_dir/rootfs.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    debootstrap_base "$arch" "$work/rootfs"
    tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
    rm -rf "$work/rootfs"
    printf 'FROM scratch\nADD rootfs.tar /\n%s\nCMD ["/bin/bash"]\n' "$image_env" >"$work/Dockerfile"
    DOCKER_BUILDKIT=1 "$docker_cli" build -q --platform "linux/$arch" -t "$base_image" "$work" >/dev/null
  fi
fi
say "ready ($("$docker_cli" version --format '{{.Server.Version}}'), base $base_image)"
