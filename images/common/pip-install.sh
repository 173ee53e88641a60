#!/bin/sh
# pip install ARGS... into /opt/venv.
#
# Site settings come in as optional BuildKit secrets, so that they never land
# in a layer or in the image history, and never change a layer's cache key:
#   ca       a CA bundle for TLS-intercepting proxies  -> pip --cert
#   pipconf  a pip.conf (index mirror, find-links)      -> mounted at /etc/pip.conf
# Builds without them use PyPI and pip's own CA bundle.
set -eu
if [ -s /run/secrets/ca ]; then
  set -- --cert /run/secrets/ca "$@"
fi
exec /opt/venv/bin/python -m pip install --no-cache-dir --disable-pip-version-check "$@"
