"""Signed jobs: Ed25519 signatures over the canonical JSON of an envelope's body.

The controller signs every job (and cancel) it sends; an agent configured with
the controller's public key rejects envelopes that are unsigned, carry a
signature it cannot parse, or whose body was changed after signing. The broker
ACL already stops devices from publishing jobs (deploy/mosquitto/acl); the
signature also covers the case of a broker, or a controller credential, that is
not to be trusted.

What is signed is :func:`canonical_body`, and only that. It is defined here
once and used by both sides, so that signer and verifier cannot disagree about
the bytes. The envelope's ``msg_id``, ``sent_at`` and ``sender`` are not
covered: transports may restamp them on resend without breaking a signature.
A consequence (see docs/SECURITY.md): a signature is not bound to a device or a
time, so replay protection is the agent's idempotency on ``job_id``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edgebench.common.errors import EdgebenchError
from edgebench.common.files import write_private_file
from edgebench.schemas.envelope import Envelope

SIGNATURE_BYTES = 64  # Ed25519 signatures have a fixed length


class SignatureError(EdgebenchError):
    """A signature is missing, malformed or does not match; ``reason`` says which."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class KeyFileError(EdgebenchError, ValueError):
    """A key file could not be read as the expected Ed25519 key."""


def generate_keypair() -> tuple[Ed25519PrivateKey, Ed25519PublicKey]:
    private_key = Ed25519PrivateKey.generate()
    return private_key, private_key.public_key()


def canonical_body(envelope: Envelope) -> bytes:
    """The exact bytes that are signed: the body as JSON with sorted keys, no
    whitespace, ASCII only (non-ASCII escaped as ``\\uXXXX``), UTF-8 encoded.

    ``model_dump(mode="json")`` turns enums, datetimes and nested models into
    plain JSON values, so the bytes depend only on the body's field values and
    not on how the message was formatted on the wire. Defaults are included:
    a job sent with ``"gpus"`` omitted and one sent with ``"gpus": 0`` are the
    same job and carry the same signature.
    """
    doc = envelope.body.model_dump(mode="json")
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def sign_body(private_key: Ed25519PrivateKey, body_json: bytes) -> str:
    """Sign canonical body bytes; returns the signature as standard base64."""
    return base64.b64encode(private_key.sign(body_json)).decode("ascii")


def verify_body(public_key: Ed25519PublicKey, body_json: bytes, signature: str | None) -> None:
    """Raise :class:`SignatureError` unless ``signature`` is a valid signature
    of ``body_json`` by ``public_key``."""
    if not signature:
        raise SignatureError("unsigned: the agent requires signed jobs")
    try:
        raw = base64.b64decode(signature.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise SignatureError("malformed signature: not base64") from None
    if len(raw) != SIGNATURE_BYTES:
        raise SignatureError(f"malformed signature: {len(raw)} bytes, expected {SIGNATURE_BYTES}")
    try:
        public_key.verify(raw, body_json)
    except InvalidSignature:
        raise SignatureError(
            "bad signature: the body was changed after signing or signed by another key"
        ) from None


def sign_envelope(envelope: Envelope, private_key: Ed25519PrivateKey) -> Envelope:
    """A copy of ``envelope`` carrying the signature of its body."""
    return envelope.model_copy(update={"signature": sign_body(private_key, canonical_body(envelope))})


def check_signature(envelope: Envelope, public_key: Ed25519PublicKey) -> None:
    """What the agent calls on every job/cancel envelope when signed jobs are
    required: returns if the body is signed by ``public_key``, else raises
    :class:`SignatureError` with a reason fit for a REJECTED event."""
    verify_body(public_key, canonical_body(envelope), envelope.signature)


# -- key files ---------------------------------------------------------------------------


def save_private_key(private_key: Ed25519PrivateKey, path: str | os.PathLike[str],
                     passphrase: bytes | None = None) -> None:
    """Write the key as PKCS#8 PEM, readable by its owner only (0600)."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    pem = private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    write_private_file(Path(path), pem)


def save_public_key(public_key: Ed25519PublicKey, path: str | os.PathLike[str]) -> None:
    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    Path(path).write_bytes(pem)


def load_private_key(path: str | os.PathLike[str], passphrase: bytes | None = None) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=passphrase)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not a PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: expected an Ed25519 key, got {type(key).__name__}")
    return key


def load_public_key(path: str | os.PathLike[str]) -> Ed25519PublicKey:
    return public_key_from_pem(Path(path).read_bytes(), source=str(path))


def public_key_from_pem(pem: bytes, source: str = "public key") -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise KeyFileError(f"{source}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{source}: expected an Ed25519 key, got {type(key).__name__}")
    return key
