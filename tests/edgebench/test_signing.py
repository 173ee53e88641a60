"""Signed jobs: what the controller signs is what the agent verifies, through the wire format."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edgebench.common import signing
from edgebench.common.signing import SignatureError
from edgebench.schemas import Backend, CancelRequest, Envelope, JobSpec, Workload, decode, encode


def _job(**overrides: object) -> Envelope:
    spec = JobSpec(job_id="j-001", backend=Backend.KERAS_JAX,
                   workload=Workload(model="cnn", dataset="fashion_mnist", batch_size=128, epochs=3,
                                     optimizer="adam", learning_rate=0.001),
                   tags=["nightly"], **overrides)  # type: ignore[arg-type]
    return Envelope.of(sender="controller", body=spec)


KeyPair = tuple[Ed25519PrivateKey, Ed25519PublicKey]


@pytest.fixture(scope="module")
def keys() -> KeyPair:
    return signing.generate_keypair()


def test_signed_job_verifies_after_the_wire_round_trip(keys: KeyPair) -> None:
    private_key, public_key = keys
    signed = signing.sign_envelope(_job(), private_key)
    assert signed.signature and len(base64.b64decode(signed.signature)) == 64
    signing.check_signature(decode(encode(signed)), public_key)


def test_canonical_body_is_sorted_compact_json_of_the_full_body() -> None:
    envelope = _job()
    expected = json.dumps(envelope.body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    canonical = signing.canonical_body(envelope)
    assert canonical == expected.encode()
    assert b'"gpus":0' in canonical  # defaults are part of the signed content


def test_formatting_on_the_wire_does_not_matter(keys: KeyPair) -> None:
    """Reordered keys, whitespace and omitted defaults describe the same job."""
    private_key, public_key = keys
    signed = signing.sign_envelope(_job(), private_key)
    doc = json.loads(encode(signed))
    body = {k: v for k, v in reversed(list(doc["body"].items())) if k not in ("gpus", "repeats")}
    doc["body"] = body
    signing.check_signature(decode(json.dumps(doc, indent=3).encode()), public_key)


def test_non_ascii_text_survives_signing(keys: KeyPair) -> None:
    private_key, public_key = keys
    cancel = Envelope.of(sender="controller", body=CancelRequest(job_id="j-001", reason="Überhitzung bei 95 °C"))
    signed = signing.sign_envelope(cancel, private_key)
    assert b"\\u00dc" in signing.canonical_body(signed)  # escaped: the bytes are ASCII
    signing.check_signature(decode(encode(signed)), public_key)


@pytest.mark.parametrize(("path", "value"), [
    (("workload", "epochs"), 30),
    (("workload", "dataset"), "cifar10"),
    (("backend",), "torch"),
    (("job_id",), "j-002"),
    (("tags",), ["nightly", "extra"]),
])
def test_tampered_body_is_rejected(keys: KeyPair, path: tuple[str, ...], value: object) -> None:
    private_key, public_key = keys
    doc = json.loads(encode(signing.sign_envelope(_job(), private_key)))
    target = doc["body"]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(SignatureError, match="bad signature"):
        signing.check_signature(decode(json.dumps(doc).encode()), public_key)


def test_envelope_metadata_is_not_signed(keys: KeyPair) -> None:
    """By design (a transport may restamp it): only the body is covered."""
    private_key, public_key = keys
    signed = signing.sign_envelope(_job(), private_key)
    signing.check_signature(signed.model_copy(update={"sender": "someone", "msg_id": "x"}), public_key)


def test_unsigned_job_is_rejected(keys: KeyPair) -> None:
    with pytest.raises(SignatureError, match=r"^unsigned") as info:
        signing.check_signature(_job(), keys[1])
    assert info.value.reason.startswith("unsigned")


def test_job_signed_by_another_key_is_rejected(keys: KeyPair) -> None:
    other_private, _ = signing.generate_keypair()
    with pytest.raises(SignatureError, match="bad signature"):
        signing.check_signature(signing.sign_envelope(_job(), other_private), keys[1])


def test_signature_of_another_job_is_rejected(keys: KeyPair) -> None:
    private_key, public_key = keys
    stolen = signing.sign_envelope(_job(), private_key).signature
    forged = _job(gpus=4).model_copy(update={"signature": stolen})
    with pytest.raises(SignatureError, match="bad signature"):
        signing.check_signature(forged, public_key)


@pytest.mark.parametrize("signature", ["not base64!", base64.b64encode(b"short").decode(), "YQ"])
def test_malformed_signatures_are_rejected(keys: KeyPair, signature: str) -> None:
    with pytest.raises(SignatureError, match=r"^malformed"):
        signing.check_signature(_job().model_copy(update={"signature": signature}), keys[1])


def test_sign_body_and_verify_body_work_on_bytes(keys: KeyPair) -> None:
    private_key, public_key = keys
    signature = signing.sign_body(private_key, b'{"a":1}')
    signing.verify_body(public_key, b'{"a":1}', signature)
    with pytest.raises(SignatureError):
        signing.verify_body(public_key, b'{"a":2}', signature)


def test_keys_round_trip_through_pem_files(tmp_path: Path) -> None:
    private_key, public_key = signing.generate_keypair()
    signing.save_private_key(private_key, tmp_path / "jobs.key")
    signing.save_public_key(public_key, tmp_path / "jobs.pub")
    assert stat.S_IMODE((tmp_path / "jobs.key").stat().st_mode) == 0o600
    assert (tmp_path / "jobs.pub").read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    loaded_private = signing.load_private_key(tmp_path / "jobs.key")
    loaded_public = signing.load_public_key(tmp_path / "jobs.pub")
    signing.check_signature(signing.sign_envelope(_job(), loaded_private), loaded_public)
    signing.check_signature(signing.sign_envelope(_job(), private_key), loaded_public)


def test_encrypted_private_key_needs_its_passphrase(tmp_path: Path) -> None:
    private_key, _ = signing.generate_keypair()
    signing.save_private_key(private_key, tmp_path / "jobs.key", passphrase=b"correct horse")
    signing.load_private_key(tmp_path / "jobs.key", passphrase=b"correct horse")
    with pytest.raises(signing.KeyFileError):
        signing.load_private_key(tmp_path / "jobs.key")


def test_keys_of_another_type_are_refused(tmp_path: Path) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "ec.key").write_bytes(ec_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (tmp_path / "ec.pub").write_bytes(ec_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(signing.KeyFileError, match="Ed25519"):
        signing.load_private_key(tmp_path / "ec.key")
    with pytest.raises(signing.KeyFileError, match="Ed25519"):
        signing.load_public_key(tmp_path / "ec.pub")
    (tmp_path / "junk.pub").write_text("not a key")
    with pytest.raises(signing.KeyFileError):
        signing.load_public_key(tmp_path / "junk.pub")
