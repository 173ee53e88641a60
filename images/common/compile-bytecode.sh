#!/bin/sh
# Byte-compile the packages under VENV_LIB and copy only the bytecode (every
# __pycache__ directory, same paths) under OUT, for the image to take with
# COPY --from. Bytecode depends on the Python version alone, not on the
# platform, so this may run on the builder's platform for an image of
# another one (see the bytecode stages of the Dockerfiles that use it).
#
#   compile-bytecode.sh /opt/venv/lib /pyc
#
# checked-hash pycs: Python validates them against the source's hash, not its
# mtime, so they stay valid whatever a COPY does to timestamps, and a later
# pip install over them cannot leave stale bytecode in force.
set -eu
lib=$1
out=$2
want=$(ls "$lib" | grep -m1 '^python3\.' || true)
have=python$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$want" != "$have" ]; then
  echo "compile-bytecode: $lib is for $want but this stage runs $have;" \
    "BUILD_BASE_IMAGE must be BASE_IMAGE's distribution for the builder's platform" >&2
  exit 1
fi
# as pip does, a file that does not compile (test data written for another
# Python) is left out rather than failing the image
python3 -m compileall -q -j 0 --invalidation-mode checked-hash "$lib" >/dev/null || true
mkdir -p "$out"
cd /
find "${lib#/}" -type d -name __pycache__ -prune -print | tar -cf - -T - | tar -C "$out" -xf -
