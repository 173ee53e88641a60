"""A real OCI registry for the team-store tests (issue 19): Debian's ``docker-registry`` (the CNCF
distribution server) on a free port, with TLS from ``edgebench.common.pki`` and token authentication
whose root bundle is the controller's token-issuer certificate."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

SERVICE = "edgebench-registry"
ISSUER = "edgebench-controller"


@dataclass
class Registry:
    url: str
    ca_file: Path
    token_key: Path
    token_cert: Path
    root: Path
    log: Path


def registry_binary() -> str | None:
    return shutil.which("docker-registry") or shutil.which("registry")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_registry(tmp: Path) -> Iterator[Registry]:
    binary = registry_binary()
    if binary is None:
        pytest.skip("docker-registry (the distribution server) is not installed: apt-get install docker-registry")
    from edgebench.common.pki import init_pki
    from edgebench.controller.oci_store import make_token_key

    pki = init_pki(tmp / "pki", ["127.0.0.1", "localhost"])
    key, cert = make_token_key(tmp / "token")
    port = _free_port()
    config = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(tmp / "data")}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "tls": {"certificate": str(pki.server_cert),
                                                      "key": str(pki.server_key)}},
        # realm: where a client without a token would be sent; edgebench's tokens travel in jobs instead
        "auth": {"token": {"realm": f"https://127.0.0.1:{port}/no-token-server", "service": SERVICE,
                           "issuer": ISSUER, "rootcertbundle": str(cert)}},
    }
    (tmp / "registry.yml").write_text(yaml.safe_dump(config))
    log = tmp / "registry.log"
    proc = subprocess.Popen([binary, "serve", str(tmp / "registry.yml")], stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)
    url = f"https://127.0.0.1:{port}"
    import ssl

    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                urllib.request.urlopen(f"{url}/v2/", timeout=2, context=ctx)
                break
            except urllib.error.HTTPError:
                break  # 401: up, and asking for a token
            except (urllib.error.URLError, OSError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"registry did not start:\n{log.read_text()[-2000:]}") from None
                time.sleep(0.2)
        yield Registry(url, pki.ca_cert, key, cert, tmp / "data", log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
