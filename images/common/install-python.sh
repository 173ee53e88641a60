#!/bin/sh
# Create the runtime's virtual environment /opt/venv from the base image's
# Python 3, installing Python with apt where the base has none (the CUDA bases).
#
#   install-python.sh [PIP_REQUIREMENT]   e.g. pip==21.3.1 for Python 3.6 images
#   VENV_SYSTEM_SITE_PACKAGES=1 install-python.sh ...
#       the venv also sees the distribution's packages (the JetPack 4 images
#       take numpy/scipy/h5py from Ubuntu 18.04: PyPI has no aarch64 wheels of
#       the versions those stacks need for Python 3.6)
#
# A venv rather than the system site-packages: Debian/Ubuntu mark their Python
# as externally managed (PEP 668), and a venv keeps the image's packages apart
# from the distribution's.
set -eu
here=$(dirname "$0")
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  "$here/apt-install.sh" python3 python3-venv
fi
if [ "${VENV_SYSTEM_SITE_PACKAGES:-0}" = 1 ]; then
  python3 -m venv --system-site-packages /opt/venv
else
  python3 -m venv /opt/venv
fi
if [ $# -gt 0 ]; then
  "$here/pip-install.sh" "$@"
fi
