"""Delivering registered model files to agents (docs/MODELS.md): the embedded default.

``http`` (default): the controller serves the artifact directory itself while it runs
(``controller models serve``, or ``controller dispatch`` while it waits), over HTTPS when
``artifact_cert_file``/``artifact_key_file`` are set. Each job gets its own URL,
``/v1/artifacts/sha256/<digest>?job=<job_id>&exp=<unix seconds>&sig=<HMAC-SHA256>``, signed with a
key only the controller holds: a device can fetch only the digests its own jobs name, and only
until the URL expires (the broker's ACL keeps each device's jobs, hence its URLs, to itself).
A wrong, altered or expired URL gets 403 and nothing else; there is no listing.

``directory``: the agent reads ``sha256/<digest>`` under its own ``artifacts.shared_dir`` (an NFS or
SMB share of the controller's artifact directory, say): the job carries no path at all.

Either way the agent verifies the sha256 before anything loads the file (agent/artifacts.py).
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import logging
import os
import secrets
import socket
import ssl
import threading
import time
import urllib.parse
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgebench.common.files import write_private_file
from edgebench.controller.errors import ControllerError
from edgebench.controller.model_registry import ModelEntry
from edgebench.schemas.artifact import ArtifactLocation, InputSignature, ModelArtifactRef

log = logging.getLogger(__name__)

PATH_PREFIX = "/v1/artifacts/sha256/"
_CHUNK = 1 << 20
DEFAULT_PORT = 8650


def url_key(path: Path) -> bytes:
    """The HMAC key for artifact URLs: 32 random bytes, made 0600 on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private_file(path, secrets.token_bytes(32))
    key = path.read_bytes()
    if len(key) < 16:
        raise ControllerError(f"{path}: an artifact URL key must hold at least 16 bytes")
    return key


def _mac(key: bytes, digest: str, job_id: str, expires: int) -> str:
    return hmac.new(key, f"{digest}\n{job_id}\n{expires}".encode("ascii"), hashlib.sha256).hexdigest()


def signed_url(base_url: str, key: bytes, digest: str, job_id: str, expires: int) -> str:
    query = urllib.parse.urlencode({"job": job_id, "exp": str(expires), "sig": _mac(key, digest, job_id, expires)})
    return f"{base_url.rstrip('/')}{PATH_PREFIX}{digest}?{query}"


def check_url(key: bytes, path: str, now: float | None = None) -> str | None:
    """The digest a request path may read, or None (bad form, bad signature, expired)."""
    parsed = urllib.parse.urlsplit(path)
    if not parsed.path.startswith(PATH_PREFIX):
        return None
    digest = parsed.path[len(PATH_PREFIX):]
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        return None
    query = urllib.parse.parse_qs(parsed.query, max_num_fields=3, strict_parsing=False)
    try:
        job_id, exp, sig = query["job"][0], query["exp"][0], query["sig"][0]
        expires = int(exp)
    except (KeyError, IndexError, ValueError):
        return None
    if not hmac.compare_digest(_mac(key, digest, job_id, expires), sig):
        return None
    if expires < (time.time() if now is None else now):
        return None
    return digest


def reference(entry: ModelEntry, location: ArtifactLocation) -> ModelArtifactRef:
    return ModelArtifactRef(
        name=entry.name, version=entry.version, digest=entry.digest, format=entry.format,  # type: ignore[arg-type]
        size_bytes=entry.size_bytes,
        input=InputSignature(name=entry.input_name, shape=list(entry.input_shape),
                             dtype=entry.input_dtype, layout=entry.layout),  # type: ignore[arg-type]
        classes=entry.classes, location=location)


def http_location(base_url: str, key: bytes, entry: ModelEntry, job_id: str, ttl_s: float) -> ArtifactLocation:
    expires = int(time.time() + ttl_s)
    return ArtifactLocation(kind="http", url=signed_url(base_url, key, entry.digest, job_id, expires),
                            expires_at=datetime.fromtimestamp(expires, timezone.utc))


def default_base_url(port: int, tls: bool) -> str:
    return f"{'https' if tls else 'http'}://{socket.getfqdn()}:{port}"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: ArtifactHTTPServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        digest = check_url(self.server.key, self.path)
        path = self.server.root / "sha256" / digest if digest else None
        if path is None or not path.is_file():
            self.server.refused += 1
            self._answer(403 if digest is None else 404)
            return
        size = path.stat().st_size
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.send_header("Docker-Content-Digest", f"sha256:{digest}")
        self.end_headers()
        with path.open("rb") as fh:
            while block := fh.read(_CHUNK):
                self.wfile.write(block)
        self.server.served += 1
        self.server.bytes_out += size

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(405)

    def _answer(self, code: int) -> None:
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        log.debug("artifact server: " + format, *args)


class ArtifactHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, key: bytes, addr: str = "0.0.0.0", port: int = DEFAULT_PORT,
                 ssl_context: ssl.SSLContext | None = None):
        self.root = root
        self.key = key
        self.served = 0
        self.refused = 0
        self.bytes_out = 0
        super().__init__((addr, port), _Handler)
        if ssl_context is not None:
            self.socket = ssl_context.wrap_socket(self.socket, server_side=True)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> ArtifactHTTPServer:
        self._thread = threading.Thread(target=self.serve_forever, name="artifact-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> ArtifactHTTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def tls_context(cert_file: str | os.PathLike[str] | None, key_file: str | os.PathLike[str] | None
                ) -> ssl.SSLContext | None:
    if not cert_file:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    return ctx


class Delivery:
    """The controller's side of delivery, from its config: job references and the server."""

    def __init__(self, cfg: Any, store: Any):
        from edgebench.controller.model_registry import ModelRegistry, default_artifact_dir

        self.cfg = cfg
        self.registry = ModelRegistry(store, cfg.artifact_dir or default_artifact_dir())
        self._key: bytes | None = None
        self._pushed: set[str] = set()

    @property
    def key(self) -> bytes:
        if self._key is None:
            self._key = url_key(self.cfg.artifact_url_key or self.registry.dir / "url-hmac.key")
        return self._key

    @property
    def base_url(self) -> str:
        return self.cfg.artifact_url or default_base_url(self.cfg.artifact_port, bool(self.cfg.artifact_cert_file))

    def oci(self) -> Any:
        from edgebench.controller.oci_store import OciStore, TokenIssuer

        cfg = self.cfg
        if not (cfg.artifact_oci_url and cfg.artifact_oci_token_key and cfg.artifact_oci_token_cert):
            raise ControllerError("artifact_delivery oci needs artifact_oci_url, artifact_oci_token_key and "
                                  "artifact_oci_token_cert (docs/MODELS.md)")
        issuer = TokenIssuer(cfg.artifact_oci_token_key, cfg.artifact_oci_token_cert, cfg.artifact_oci_issuer,
                             cfg.artifact_oci_service)
        return OciStore(cfg.artifact_oci_url, issuer, cfg.artifact_oci_prefix, cfg.artifact_oci_ca_file)

    def job_reference(self, ref: str, job_id: str) -> ModelArtifactRef:
        entry = self.registry.resolve(ref)
        if self.cfg.artifact_delivery == "directory":
            return reference(entry, ArtifactLocation(kind="directory"))
        if self.cfg.artifact_delivery == "oci":
            store = self.oci()
            if entry.digest not in self._pushed:  # once per controller run; the registry skips blobs it has
                store.push(entry, self.registry.path_of(entry.digest))
                self._pushed.add(entry.digest)
            return reference(entry, store.location(entry, self.cfg.artifact_url_ttl_s))
        return reference(entry, http_location(self.base_url, self.key, entry, job_id, self.cfg.artifact_url_ttl_s))

    def server(self, port: int | None = None) -> ArtifactHTTPServer:
        return ArtifactHTTPServer(self.registry.dir, self.key, self.cfg.artifact_addr,
                                  self.cfg.artifact_port if port is None else port,
                                  tls_context(self.cfg.artifact_cert_file, self.cfg.artifact_key_file))
