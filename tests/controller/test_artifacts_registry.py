"""The model registry (issue 19): files sniffed by content and refused when loading them could run code
or read outside the file; name@version over sha256; per-job signed URLs and the embedded server."""

from __future__ import annotations

import importlib.util
import json
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from edgebench.controller.artifact_delivery import ArtifactHTTPServer, check_url, signed_url, url_key
from edgebench.controller.model_files import ModelFileError, inspect
from edgebench.controller.model_registry import ModelRegistry, UnknownModel
from edgebench.controller.plan import PlanError, SweepFile, build_jobs
from edgebench.controller.store import MIGRATIONS, ResultStore
from edgebench.schemas import JobSpec
from tests.artifact_models import make_keras, make_onnx, sha256

needs_onnx = pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="onnx not installed")
needs_keras = pytest.mark.skipif(importlib.util.find_spec("keras") is None or importlib.util.find_spec("jax") is None,
                                 reason="keras/jax not installed")


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(ResultStore(f"sqlite:///{tmp_path / 'store.db'}"), tmp_path / "artifacts")


@needs_onnx
def test_the_registry_on_both_stores(store_url: str, tmp_path: Path) -> None:
    """Migration 5 and the registry's statements on SQLite and on a real PostgreSQL (tests/pg.py)."""
    import sqlalchemy as sa

    store = ResultStore(store_url)
    assert store.schema_version() == max(MIGRATIONS) >= 5
    assert "models" in sa.inspect(store.engine).get_table_names()
    reg = ModelRegistry(store, tmp_path / "artifacts")
    first = reg.add(make_onnx(tmp_path / "a.onnx"), "m")
    second = reg.add(make_onnx(tmp_path / "b.onnx", classes=5), "m")
    assert (first.version, second.version) == ("1", "2") and reg.resolve("m") == second
    assert second.added_at is not None and second.added_at.tzinfo is not None
    assert ResultStore(store_url).schema_version() == max(MIGRATIONS)  # a second controller: nothing to apply
    reg.remove(f"sha256:{first.digest}")
    assert [e.ref for e in reg.entries()] == ["m@2"]


@needs_onnx
def test_add_list_resolve_rm(registry: ModelRegistry, tmp_path: Path) -> None:
    model = make_onnx(tmp_path / "tiny.onnx")
    first = registry.add(model, "tiny")
    assert (first.version, first.format, first.input_shape, first.classes) == ("1", "onnx", (1, 8, 8), 4)
    assert first.digest == sha256(model) and first.layout == "NCHW"
    assert registry.add(model, "tiny") == first  # the same file again: nothing new
    other = make_onnx(tmp_path / "wide.onnx", classes=6)
    second = registry.add(other, "tiny")
    assert second.version == "2" and second.classes == 6
    assert registry.resolve("tiny").version == "2"  # the latest
    assert registry.resolve("tiny@1").digest == first.digest
    assert registry.resolve(f"sha256:{first.digest}").ref == "tiny@1"
    assert (registry.dir / "sha256" / first.digest).read_bytes() == model.read_bytes()
    assert [e.ref for e in registry.entries()] == ["tiny@1", "tiny@2"]
    registry.remove("tiny@1")
    assert not (registry.dir / "sha256" / first.digest).exists()
    with pytest.raises(UnknownModel):
        registry.resolve("tiny@1")
    with pytest.raises(UnknownModel):
        registry.resolve("sha256:" + "0" * 64)  # a digest that matches nothing


@needs_onnx
def test_a_version_is_one_file(registry: ModelRegistry, tmp_path: Path) -> None:
    registry.add(make_onnx(tmp_path / "a.onnx"), "m", "v1")
    with pytest.raises(Exception, match="already a different file"):
        registry.add(make_onnx(tmp_path / "b.onnx", classes=5), "m", "v1")


# -- bad input (the list) -------------------------------------------------------------


@needs_onnx
def test_not_what_the_extension_says(tmp_path: Path) -> None:
    onnx_file = make_onnx(tmp_path / "real.onnx")
    renamed = tmp_path / "model.keras"
    renamed.write_bytes(onnx_file.read_bytes())
    with pytest.raises(ModelFileError, match="the name says keras, the content is onnx"):
        inspect(renamed)
    garbage = tmp_path / "model.onnx"
    garbage.write_bytes(b"this is not a model at all\n" * 10)
    with pytest.raises(ModelFileError, match="not an ONNX model"):
        inspect(garbage)
    pickled = tmp_path / "model.pt"
    import pickle

    pickled.write_bytes(pickle.dumps({"weights": [1, 2, 3]}, protocol=4))
    with pytest.raises(ModelFileError, match="pickle"):
        inspect(pickled)
    zipped = tmp_path / "model2.keras"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(ModelFileError, match=r"without a Keras config.json"):
        inspect(zipped)
    pt2 = tmp_path / "prog.pt2"
    with zipfile.ZipFile(pt2, "w") as zf:
        zf.writestr("prog/archive_format", "pt2")
    with pytest.raises(ModelFileError, match="never unpickles"):
        inspect(pt2)


@needs_onnx
def test_custom_op_domain_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match=r"custom operator domain.*com.example"):
        inspect(make_onnx(tmp_path / "custom.onnx", domain="com.example"))


@needs_onnx
def test_external_data_outside_the_directory_refused(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    outside = make_onnx(tmp_path / "models" / "out.onnx", external="../../etc/weights.bin")
    with pytest.raises(ModelFileError, match="outside the model's directory"):
        inspect(outside)
    absolute = make_onnx(tmp_path / "models" / "abs.onnx", external=str(tmp_path / "w.bin"))
    with pytest.raises(ModelFileError, match="outside the model's directory"):
        inspect(absolute)
    inside = make_onnx(tmp_path / "models" / "in.onnx", external="in.weights")
    with pytest.raises(ModelFileError, match="delivers one file"):
        inspect(inside)


@needs_keras
def test_keras_facts_and_lambda_refused(tmp_path: Path) -> None:
    facts = inspect(make_keras(tmp_path / "tiny.keras"))
    assert (facts.format, facts.input_shape, facts.classes) == ("keras", (8, 8, 1), 4)
    with pytest.raises(ModelFileError, match="Lambda"):
        inspect(make_keras(tmp_path / "lam.keras", "lambda"))


def test_keras_custom_module_refused(tmp_path: Path) -> None:
    path = tmp_path / "custom.keras"
    config = {"class_name": "Sequential", "module": "keras", "config": {"layers": [
        {"class_name": "Evil", "module": "mycompany.layers", "config": {}}]}}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", json.dumps(config))
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.10.0"}))
    with pytest.raises(ModelFileError, match=r"mycompany.layers"):
        inspect(path)


# -- jobs and delivery ------------------------------------------------------------------------


@needs_onnx
def test_jobs_reference_a_model(registry: ModelRegistry, tmp_path: Path) -> None:
    entry = registry.add(make_onnx(tmp_path / "tiny.onnx"), "tiny")
    key = b"k" * 32
    from edgebench.controller.artifact_delivery import http_location, reference

    def resolve(ref: str, job_id: str):  # type: ignore[no-untyped-def]
        e = registry.resolve(ref)
        return reference(e, http_location("http://ctl:8650", key, e, job_id, 3600)), e.dataset

    sweep = SweepFile(name="s", matrix={"backend": ["onnxruntime", "openvino"], "model": ["tiny@1"]},
                      defaults={"rules": "quick"})
    jobs = build_jobs(sweep.cases(), "s", resolve)
    assert len(jobs) == 2
    for job in jobs:
        assert job.workload.model == "user" and job.workload.dataset == "artifact-input"
        ref = job.model_artifact
        assert ref is not None and ref.digest == entry.digest and ref.size_bytes == entry.size_bytes
        assert ref.location.url is not None
        assert check_url(key, ref.location.url.removeprefix("http://ctl:8650")) == entry.digest
        JobSpec.model_validate_json(job.model_dump_json())
    with pytest.raises(PlanError, match="needs the controller's model registry"):
        build_jobs(sweep.cases(), "s")
    with pytest.raises(PlanError, match="not both"):
        SweepFile(name="s", matrix={"backend": ["onnxruntime"], "model": ["tiny"], "workload": ["x"]}).cases()


def test_signed_urls(tmp_path: Path) -> None:
    key = url_key(tmp_path / "k")
    assert oct((tmp_path / "k").stat().st_mode & 0o777) == "0o600" and len(key) == 32
    digest = "ab" * 32
    url = signed_url("http://h:1", key, digest, "job-1", int(time.time()) + 60)
    path = url.removeprefix("http://h:1")
    assert check_url(key, path) == digest
    assert check_url(b"x" * 32, path) is None  # another controller's key
    assert check_url(key, path.replace("job-1", "job-2")) is None  # another job's URL
    assert check_url(key, path.replace(digest, "cd" * 32)) is None  # another file
    assert check_url(key, path, now=time.time() + 120) is None  # expired
    assert check_url(key, "/v1/artifacts/sha256/../../etc/passwd?job=a&exp=1&sig=x") is None


def test_server_serves_only_signed_paths(tmp_path: Path) -> None:
    digest = "ab" * 32
    (tmp_path / "sha256").mkdir()
    (tmp_path / "sha256" / digest).write_bytes(b"model bytes")
    key = b"s" * 32
    with ArtifactHTTPServer(tmp_path, key, "127.0.0.1", 0) as server:
        base = f"http://127.0.0.1:{server.port}"
        good = signed_url(base, key, digest, "j", int(time.time()) + 60)
        with urllib.request.urlopen(good, timeout=5) as resp:
            assert resp.read() == b"model bytes"
        for bad in (good.replace("sig=", "sig=0"), f"{base}/v1/artifacts/sha256/{digest}", f"{base}/",
                    signed_url(base, key, digest, "j", int(time.time()) - 1)):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(bad, timeout=5)
            assert err.value.code == 403
        missing = signed_url(base, key, "cd" * 32, "j", int(time.time()) + 60)
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(missing, timeout=5)
        assert err.value.code == 404
        assert server.served == 1 and server.bytes_out == len(b"model bytes")


@needs_onnx
def test_a_signed_job_covers_the_digest(registry: ModelRegistry, tmp_path: Path) -> None:
    """A job whose digest (or URL) was altered after signing fails the agent's signature check."""
    from edgebench.common.signing import SignatureError, check_signature, generate_keypair, sign_envelope
    from edgebench.controller.artifact_delivery import http_location, reference
    from edgebench.schemas import Envelope, decode, encode

    entry = registry.add(make_onnx(tmp_path / "tiny.onnx"), "tiny")

    def resolve(ref: str, job_id: str):  # type: ignore[no-untyped-def]
        e = registry.resolve(ref)
        return reference(e, http_location("http://ctl:8650", b"k" * 32, e, job_id, 3600)), None

    [job] = build_jobs([{"backend": "onnxruntime", "model": "tiny"}], None, resolve)
    private, public = generate_keypair()
    wire = encode(sign_envelope(Envelope.of("controller", job), private))
    check_signature(decode(wire), public)
    for old, new in ((entry.digest, "0" * 64), ("ctl:8650", "evil:8650")):
        tampered = wire.replace(old.encode(), new.encode())
        assert tampered != wire
        with pytest.raises(SignatureError, match="bad signature"):
            check_signature(decode(tampered), public)
