"""The team store (docs/MODELS.md): models as OCI artifacts in a registry (the CNCF distribution server,
Debian's ``docker-registry``), which a fleet that runs Docker images often has already.

- Push (controller): plain OCI distribution API over HTTPS: the file as a blob (``POST`` an upload,
  ``PUT`` it with its digest), an empty config, and an OCI image manifest tagged with the model's
  version whose ``artifactType`` names the format. The registry checks the digest of every blob.
- Pull (agent): ``GET /v2/<repository>/blobs/sha256:<digest>`` with a bearer token; the agent checks
  the digest again itself (agent/artifacts.py).
- Tokens: the registry's token authentication (``auth: token`` with a ``rootcertbundle``). The
  controller is the token issuer: it mints a short-lived ES256 JWT per job, scoped to
  ``repository:<repository>:pull`` of the job's model only, signed with a key whose certificate is the
  registry's root bundle (sent in the JWT's ``x5c`` header). No token server runs: the job carries the
  token, so a device can pull only the repositories its jobs name, until the token expires.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from edgebench.common.files import write_private_file
from edgebench.controller.errors import ControllerError
from edgebench.controller.model_registry import ModelEntry
from edgebench.schemas.artifact import ArtifactLocation

EMPTY_CONFIG = b"{}"
EMPTY_CONFIG_TYPE = "application/vnd.oci.empty.v1+json"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
LAYER_TYPES = {"onnx": "application/vnd.onnx.model", "keras": "application/vnd.keras.model+zip"}
ARTIFACT_TYPE = "application/vnd.edgebench.model.v1"


class OciError(ControllerError):
    pass


def make_token_key(directory: Path, days: int = 3650) -> tuple[Path, Path]:
    """An ES256 signing key and its self-signed certificate (the registry's rootcertbundle)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edgebench model token issuer")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    key_path, cert_path = directory / "token.key", directory / "token.crt"
    write_private_file(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


class TokenIssuer:
    """Registry bearer tokens (the distribution server's JWT format), scoped per repository."""

    def __init__(self, key_file: Path, cert_file: Path, issuer: str, service: str):
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        self.key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        self.x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii")]
        self.issuer = issuer
        self.service = service

    def token(self, repository: str, actions: tuple[str, ...] = ("pull",), ttl_s: float = 3600,
              subject: str = "edgebench-job") -> tuple[str, dt.datetime]:
        import jwt

        now = int(time.time())
        expires = now + int(ttl_s)
        claims = {"iss": self.issuer, "sub": subject, "aud": self.service, "iat": now, "nbf": now - 30,
                  "exp": expires, "jti": secrets.token_hex(16),
                  "access": [{"type": "repository", "name": repository, "actions": list(actions)}]}
        encoded = jwt.encode(claims, self.key, algorithm="ES256", headers={"x5c": self.x5c})  # type: ignore[arg-type]
        return encoded, dt.datetime.fromtimestamp(expires, dt.timezone.utc)


class OciStore:
    def __init__(self, url: str, issuer: TokenIssuer, prefix: str = "edgebench/models", ca_file: str | None = None,
                 timeout_s: float = 60):
        self.url = url.rstrip("/")
        self.issuer = issuer
        self.prefix = prefix.strip("/")
        self.context = ssl.create_default_context(cafile=ca_file) if self.url.startswith("https") else None
        self.timeout_s = timeout_s

    def repository(self, entry: ModelEntry) -> str:
        return f"{self.prefix}/{entry.name.lower()}"  # OCI repository names are lower case

    def _request(self, method: str, url: str, token: str, data: bytes | None = None,
                 headers: dict[str, str] | None = None) -> Any:
        req = urllib.request.Request(url, data=data, method=method,
                                     headers={"Authorization": f"Bearer {token}", **(headers or {})})
        try:
            return urllib.request.urlopen(req, timeout=self.timeout_s, context=self.context)  # noqa: S310
        except urllib.error.HTTPError as exc:
            body = exc.read(2000).decode("utf-8", "replace")
            raise OciError(f"registry {method} {urllib.parse.urlsplit(url).path}: HTTP {exc.code} {body}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise OciError(f"registry {self.url} unreachable: {getattr(exc, 'reason', exc)}") from None

    def has_blob(self, repository: str, digest: str, token: str) -> bool:
        try:
            with self._request("HEAD", f"{self.url}/v2/{repository}/blobs/sha256:{digest}", token):
                return True
        except OciError as exc:
            if "HTTP 404" in str(exc):
                return False
            raise

    def _put_blob(self, repository: str, digest: str, data: bytes, token: str) -> None:
        if self.has_blob(repository, digest, token):
            return
        with self._request("POST", f"{self.url}/v2/{repository}/blobs/uploads/", token, b"") as resp:
            location = resp.headers["Location"]
        target = urllib.parse.urljoin(self.url + "/", location)
        sep = "&" if "?" in target else "?"
        with self._request("PUT", f"{target}{sep}digest=sha256:{digest}", token, data,
                           {"Content-Type": "application/octet-stream", "Content-Length": str(len(data))}):
            pass

    def push(self, entry: ModelEntry, path: Path) -> str:
        """The file as an OCI artifact tagged with its version; returns the repository."""
        import hashlib

        repository = self.repository(entry)
        token, _ = self.issuer.token(repository, ("pull", "push"), 600, subject="edgebench-controller")
        data = path.read_bytes()
        self._put_blob(repository, entry.digest, data, token)
        config_digest = hashlib.sha256(EMPTY_CONFIG).hexdigest()
        self._put_blob(repository, config_digest, EMPTY_CONFIG, token)
        manifest = {
            "schemaVersion": 2, "mediaType": MANIFEST_TYPE, "artifactType": ARTIFACT_TYPE,
            "config": {"mediaType": EMPTY_CONFIG_TYPE, "digest": f"sha256:{config_digest}",
                       "size": len(EMPTY_CONFIG)},
            "layers": [{"mediaType": LAYER_TYPES.get(entry.format, "application/octet-stream"),
                        "digest": f"sha256:{entry.digest}", "size": len(data),
                        "annotations": {"org.opencontainers.image.title": f"model.{entry.format}"}}],
            "annotations": {"org.edgebench.model.name": entry.name, "org.edgebench.model.version": entry.version,
                            "org.edgebench.model.input": json.dumps(list(entry.input_shape))},
        }
        with self._request("PUT", f"{self.url}/v2/{repository}/manifests/{entry.version}", token,
                           json.dumps(manifest).encode(), {"Content-Type": MANIFEST_TYPE}):
            pass
        return repository

    def location(self, entry: ModelEntry, ttl_s: float) -> ArtifactLocation:
        repository = self.repository(entry)
        token, expires = self.issuer.token(repository, ("pull",), ttl_s)
        return ArtifactLocation(kind="oci", url=f"{self.url}/v2/{repository}/blobs/sha256:{entry.digest}",
                                token=token, expires_at=expires)
