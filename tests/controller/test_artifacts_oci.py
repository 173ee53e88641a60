"""The team store against a real registry (issue 19): the controller pushes a model as an OCI artifact
and mints per-job pull tokens; the agent pulls the blob by digest over TLS with the token, and a token
for one repository opens no other; an expired or forged token is refused."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgebench.agent.artifacts import Artifacts, Unavailable
from edgebench.controller.artifact_delivery import Delivery
from edgebench.controller.config import ControllerConfig
from edgebench.controller.oci_store import OciError, OciStore, TokenIssuer, make_token_key
from edgebench.controller.store import ResultStore
from edgebench.schemas.artifact import ArtifactLocation, ModelArtifactRef
from tests.artifact_models import make_onnx
from tests.oci_registry import ISSUER, SERVICE, Registry, running_registry

pytestmark = pytest.mark.skipif(importlib.util.find_spec("onnx") is None or importlib.util.find_spec("jwt") is None,
                                reason="onnx / PyJWT not installed")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with running_registry(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


def _delivery(registry: Registry, tmp_path: Path) -> Delivery:
    cfg = ControllerConfig(store_url=f"sqlite:///{tmp_path / 's.db'}", artifact_dir=tmp_path / "artifacts",
                           artifact_delivery="oci", artifact_oci_url=registry.url,
                           artifact_oci_token_key=registry.token_key, artifact_oci_token_cert=registry.token_cert,
                           artifact_oci_issuer=ISSUER, artifact_oci_service=SERVICE,
                           artifact_oci_ca_file=str(registry.ca_file), artifact_url_ttl_s=600)
    return Delivery(cfg, ResultStore(cfg.store_url))


def test_push_then_pull_with_a_job_token(registry: Registry, tmp_path: Path) -> None:
    delivery = _delivery(registry, tmp_path)
    entry = delivery.registry.add(make_onnx(tmp_path / "tiny.onnx"), "Tiny-Model")
    ref = delivery.job_reference("Tiny-Model@1", "job-1")
    assert ref.location.kind == "oci" and ref.location.token and ref.location.expires_at is not None
    assert ref.location.url == f"{registry.url}/v2/edgebench/models/tiny-model/blobs/sha256:{entry.digest}"
    # the registry holds it as an OCI artifact tagged with the version (checked with a push-scoped token)
    store = delivery.oci()
    token, _ = store.issuer.token("edgebench/models/tiny-model", ("pull",), 60)
    with store._request("GET", f"{registry.url}/v2/edgebench/models/tiny-model/manifests/1", token,
                        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}) as resp:
        manifest = json.loads(resp.read())
    assert manifest["artifactType"] == "application/vnd.edgebench.model.v1"
    assert manifest["layers"][0]["digest"] == f"sha256:{entry.digest}"
    # the agent: TLS against the registry's CA, bearer token, digest verified
    agent = Artifacts(tmp_path / "cache", ca_file=str(registry.ca_file), backoff_s=0.01)
    got = agent.ensure(ref)
    assert got.downloaded_bytes == entry.size_bytes
    assert agent.ensure(ref).cached


def test_a_token_opens_only_its_repository(registry: Registry, tmp_path: Path) -> None:
    delivery = _delivery(registry, tmp_path)
    a = delivery.registry.add(make_onnx(tmp_path / "a.onnx"), "model-a")
    b = delivery.registry.add(make_onnx(tmp_path / "b.onnx", classes=5), "model-b")
    ref_a = delivery.job_reference("model-a", "job-a")
    delivery.job_reference("model-b", "job-b")  # pushed
    # model-b's blob URL with model-a's token: the registry refuses (401), the agent fails at once
    doc = json.loads(ref_a.model_dump_json())
    doc.update(digest=b.digest, size_bytes=b.size_bytes, classes=5)
    doc["location"]["url"] = f"{registry.url}/v2/edgebench/models/model-b/blobs/sha256:{b.digest}"
    stolen = ModelArtifactRef.model_validate_json(json.dumps(doc))
    agent = Artifacts(tmp_path / "cache", ca_file=str(registry.ca_file), backoff_s=0.01)
    with pytest.raises(Unavailable, match="HTTP 401"):
        agent.ensure(stolen)
    assert a.digest != b.digest


def test_expired_and_forged_tokens_are_refused(registry: Registry, tmp_path: Path) -> None:
    delivery = _delivery(registry, tmp_path)
    entry = delivery.registry.add(make_onnx(tmp_path / "t.onnx"), "timed")
    ref = delivery.job_reference("timed", "job-t")
    repository = "edgebench/models/timed"
    # expired: issued with a TTL in the past (beyond the registry's 60 s leeway)
    issuer = delivery.oci().issuer
    old, _ = issuer.token(repository, ("pull",), -120)
    # forged: the right claims signed by another key
    key, cert = make_token_key(tmp_path / "forger")
    forged, _ = TokenIssuer(key, cert, ISSUER, SERVICE).token(repository, ("pull",), 600)
    agent = Artifacts(tmp_path / "cache", ca_file=str(registry.ca_file), backoff_s=0.01)
    for token in (old, forged):
        loc = ArtifactLocation(kind="oci", url=ref.location.url, token=token)
        with pytest.raises(Unavailable, match="HTTP 401"):
            agent.ensure(ref.model_copy(update={"location": loc}))
    assert not agent.entries() and entry.size_bytes > 0


def test_registry_down(registry: Registry, tmp_path: Path) -> None:
    key, cert = make_token_key(tmp_path / "k")
    store = OciStore("https://127.0.0.1:9", TokenIssuer(key, cert, ISSUER, SERVICE), ca_file=str(registry.ca_file))
    with pytest.raises(OciError, match="unreachable"):
        store.has_blob("edgebench/models/x", "0" * 64, "t")
