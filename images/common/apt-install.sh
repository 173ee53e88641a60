#!/bin/sh
# apt-get install PACKAGE... without recommends, leaving no package lists behind.
#
# Two quirks of old base images are handled here rather than in each Dockerfile:
# - nvidia/cuda images of CUDA 10 carry NVIDIA's apt repositories signed with a
#   key that NVIDIA rotated in 2022, so `apt-get update` fails on them. Nothing
#   is installed from those repositories, so they are dropped.
# - Debian releases past their end of life (the python:3.6 images are Debian
#   10) move to archive.debian.org; when the normal mirror has no release file
#   any more, apt is pointed there.
set -eu
export DEBIAN_FRONTEND=noninteractive
rm -f /etc/apt/sources.list.d/cuda*.list /etc/apt/sources.list.d/nvidia-ml*.list
if ! apt-get update -qq; then
  sed -i -e 's|deb.debian.org|archive.debian.org|g' -e 's|security.debian.org|archive.debian.org|g' \
    -e '/-updates/d' /etc/apt/sources.list
  apt-get -o Acquire::Check-Valid-Until=false update -qq
fi
apt-get install -y -qq --no-install-recommends "$@" >/dev/null
apt-get clean
rm -rf /var/lib/apt/lists/*
