#!/usr/bin/env bash
# Let this x86_64 machine run linux/arm64 binaries (the multi-arch image tests,
# docs/IMAGES.md): Debian's qemu-user-static plus a binfmt_misc registration,
# so that the Docker engine builds and runs arm64 containers under emulation;
# and Debian's docker-registry (the distribution registry server), which the
# tests start on a free port to push a manifest list to.
# Idempotent and quiet: safe to run on every CI run.
#
#   scripts/setup-qemu.sh              # install if missing, mount binfmt_misc, register aarch64
#   scripts/setup-qemu.sh --with-base  # the same, then the arm64 base image
#                                      # (scripts/start-dockerd.sh --arch arm64); .ci/run does this
#   scripts/setup-qemu.sh --check      # exit 0 when arm64 binaries run here, 1 otherwise
#   scripts/setup-qemu.sh --remove     # undo what an earlier run did (and only that)
#
# Why each step:
# - qemu-user-static (7.2 in Debian 12) ships statically linked emulators and
#   /usr/lib/binfmt.d/qemu-aarch64.conf, whose flags include F ("fix binary"):
#   the kernel opens the emulator when the entry is registered, so it works
#   inside containers and chroots that do not contain it (docker build, the
#   arm64 debootstrap of scripts/start-dockerd.sh).
# - This machine kind has no systemd-binfmt or binfmt-support running, so the
#   entry is written to /proc/sys/fs/binfmt_misc/register by hand, after
#   mounting binfmt_misc there if nothing has.
# - What this script did is noted in $state_dir/qemu.state, so --remove takes
#   back exactly that: an entry or a mount someone else made stays.
#
# Environment: EDGEBENCH_DOCKERD_DIR (state, default /var/tmp/edgebench-dockerd).
set -euo pipefail

state_dir=${EDGEBENCH_DOCKERD_DIR:-/var/tmp/edgebench-dockerd}
state="$state_dir/qemu.state"
binfmt=/proc/sys/fs/binfmt_misc
entry="$binfmt/qemu-aarch64"
conf=/usr/lib/binfmt.d/qemu-aarch64.conf

say() { printf 'setup-qemu: %s\n' "$*" >&2; }

registered() { [ -f "$entry" ] && head -1 "$entry" | grep -qx enabled; }

case "${1:-}" in
  --check)
    registered
    exit
    ;;
  --remove)
    [ -f "$state" ] || exit 0
    if grep -qx registered "$state" && [ -f "$entry" ]; then
      echo -1 >"$entry"
    fi
    if grep -qx mounted "$state" && mountpoint -q "$binfmt"; then
      umount "$binfmt"
    fi
    rm -f "$state"
    say "removed what an earlier run set up"
    exit 0
    ;;
  "" | --with-base) ;;
  *)
    say "unknown option $1 (none, --with-base, --check or --remove)"
    exit 2
    ;;
esac

if [ "$(id -u)" != 0 ]; then
  say "must run as root (it installs a package and registers a binfmt_misc entry)"
  exit 1
fi
mkdir -p "$state_dir"

# 1. the emulator and the registry server
if [ ! -f "$conf" ] || ! command -v docker-registry >/dev/null 2>&1; then
  say "installing qemu-user-static and docker-registry"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >"$state_dir/qemu-apt.log" 2>&1
  apt-get install -y -qq --no-install-recommends qemu-user-static docker-registry \
    >>"$state_dir/qemu-apt.log" 2>&1 || {
    tail -20 "$state_dir/qemu-apt.log" >&2
    exit 1
  }
fi

# 2. binfmt_misc
if ! mountpoint -q "$binfmt"; then
  mount -t binfmt_misc binfmt_misc "$binfmt"
  echo mounted >>"$state"
fi

# 3. the aarch64 entry
if ! registered; then
  if [ -f "$entry" ]; then
    echo 1 >"$entry"  # present but disabled
  else
    # the .conf line is exactly the register syntax (:name:type:offset:magic:mask:interpreter:flags)
    grep -v '^#' "$conf" | head -1 >"$binfmt/register"
    echo registered >>"$state"
  fi
fi
registered || { say "the aarch64 entry did not register"; exit 1; }
say "ready (arm64 binaries run through $(sed -n 's/^interpreter //p' "$entry"))"
if [ "${1:-}" = --with-base ]; then
  exec "$(dirname "$0")/start-dockerd.sh" --arch arm64
fi
