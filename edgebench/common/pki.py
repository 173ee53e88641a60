"""Certificates, CRLs and accounts for the edgebench broker (deploy/mosquitto).

The password file itself is common/passwords.py.

``controller pki --help`` is the command line (edgebench/controller/commands/pki.py);
the functions below are the operations, for it, scripts and tests.

Two certificate authorities, both self-signed and independent:

* the **broker CA** (``ca.crt``) signs the broker's server certificate and every
  device's client certificate. Everybody trusts it to recognise the broker.
* the **operator CA** (``operator-ca.crt``) signs controller certificates only.
  It is trusted by the broker's operator listener (8885) alone.

They are separate because a TLS listener can only tell clients apart by the CA
that issued their certificate: devices connect on listeners that force the MQTT
client id to the device id (so no device can knock another off the broker by
reusing its client id), while controllers need free client ids to run several
processes at once. A device certificate must therefore never be accepted on the
operator listener, and with one CA it would be.

Directory layout (``root``)::

    private/                 CA keys: keep this directory off the broker (0700)
    broker/                  copy to the broker's /mosquitto/secrets
      ca.crt operator-ca.crt server.crt server.key ca.crl operator-ca.crl passwd
    accounts/<name>          passwords of service accounts (controller-monitor)
    devices/<id>/            copy to device <id>: ca.crt client.crt client.key [password]
    controllers/<name>/      copy to the controller's workstation: ca.crt client.crt client.key
    signing/                 job-signing keys: jobs.key (controller), jobs.pub (agents)
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgebench.common import signing
from edgebench.common.errors import UsageError
from edgebench.common.files import write_private_file
from edgebench.common.passwords import (  # noqa: F401  (part of this module's API)
    PasswordFileError,
    generate_password,
    hash_password,
    remove_password,
    set_password,
)

CA_DAYS = 3650
LEAF_DAYS = 825
# An expired CRL makes OpenSSL refuse every client certificate of that CA, so
# the CRL is valid as long as the CA itself; re-signing it is part of revoking.
CRL_DAYS = CA_DAYS

CONTROLLER_USER = "controller"  # the broker ACL's user for controllers (CN of their certificates)
# Controllers pick their own MQTT client ids on the operator listener; they use
# this prefix, and no device may be named with it, so the two never collide.
RESERVED_PREFIX = "controller"

# The same alphabet as schemas.base.Identifier: device ids travel in topics and
# ACL substitutions, so '/', '+', '#' and whitespace must be impossible.
_DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")


class PkiError(UsageError):
    """A PKI operation was refused; the message says why and what to do (call it
    differently: --force, a valid name, ``init`` first), hence a usage error."""


@dataclass(frozen=True)
class PkiLayout:
    """Where every file of one PKI directory lives."""

    root: Path

    @property
    def private_dir(self) -> Path:
        return self.root / "private"

    @property
    def ca_key(self) -> Path:
        return self.private_dir / "ca.key"

    @property
    def operator_ca_key(self) -> Path:
        return self.private_dir / "operator-ca.key"

    @property
    def broker_dir(self) -> Path:
        return self.root / "broker"

    @property
    def ca_cert(self) -> Path:
        return self.broker_dir / "ca.crt"

    @property
    def operator_ca_cert(self) -> Path:
        return self.broker_dir / "operator-ca.crt"

    @property
    def ca_crl(self) -> Path:
        return self.broker_dir / "ca.crl"

    @property
    def operator_ca_crl(self) -> Path:
        return self.broker_dir / "operator-ca.crl"

    @property
    def server_cert(self) -> Path:
        return self.broker_dir / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.broker_dir / "server.key"

    @property
    def passwd(self) -> Path:
        return self.broker_dir / "passwd"

    @property
    def signing_dir(self) -> Path:
        return self.root / "signing"

    def device_dir(self, device_id: str) -> Path:
        return self.root / "devices" / device_id

    def controller_dir(self, name: str) -> Path:
        return self.root / "controllers" / name


# -- files -------------------------------------------------------------------------------


def _write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(0o644)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _load_ca(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    if not cert_path.exists() or not key_path.exists():
        raise PkiError(f"no CA at {cert_path} / {key_path}: run `controller pki init` first")
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{key_path}: expected an EC private key")
    return load_cert(cert_path), key


# -- certificates ------------------------------------------------------------------------


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _new_key() -> ec.EllipticCurvePrivateKey:
    # P-256: what every TLS stack on the devices supports, and fast to generate.
    return ec.generate_private_key(ec.SECP256R1())


def _make_ca(common_name: str, days: int) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "edgebench"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # tolerate small clock skew
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _issue_leaf(ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, common_name: str, *,
                usage: x509.ObjectIdentifier, days: int,
                san: Sequence[x509.GeneralName] = ()) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A leaf certificate for one purpose only (server or client), so that a
    device's certificate cannot serve as a broker's and the reverse."""
    key = _new_key()
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "edgebench"),
                                 x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(san)), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def _san(hostnames: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    seen: set[str] = set()
    for host in [*_DEFAULT_HOSTS, *hostnames]:
        host = host.strip()
        if not host or host in seen:
            continue
        seen.add(host)
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _empty_crl(ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey) -> x509.CertificateRevocationList:
    return _sign_crl(ca_cert, ca_key, [], number=1)


def _sign_crl(ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey,
              revoked: Iterable[x509.RevokedCertificate], number: int) -> x509.CertificateRevocationList:
    now = _now()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(now + dt.timedelta(days=CRL_DAYS))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
    )
    for entry in revoked:
        builder = builder.add_revoked_certificate(entry)
    return builder.sign(ca_key, hashes.SHA256())


def validate_device_id(device_id: str) -> None:
    if not _DEVICE_ID.match(device_id):
        raise PkiError(f"device id {device_id!r} must match {_DEVICE_ID.pattern} "
                       "(it becomes an MQTT username and a topic level)")
    if device_id.lower().startswith(RESERVED_PREFIX):
        raise PkiError(f"device id {device_id!r}: names starting with {RESERVED_PREFIX!r} are "
                       "reserved for controllers")


def init_pki(root: str | os.PathLike[str], hostnames: Sequence[str] = (), *, ca_days: int = CA_DAYS,
             leaf_days: int = LEAF_DAYS, force: bool = False) -> PkiLayout:
    """Create both CAs, their (empty) CRLs, the broker's server certificate and
    an empty password file. Refuses to replace an existing CA unless ``force``:
    a new CA invalidates every certificate already on the devices."""
    layout = PkiLayout(Path(root))
    if layout.ca_key.exists() and not force:
        raise PkiError(f"a CA already exists in {layout.root}; use --force to replace it "
                       "(every issued certificate then stops working)")
    layout.private_dir.mkdir(parents=True, exist_ok=True)
    layout.private_dir.chmod(0o700)
    for cn, cert_path, key_path, crl_path in (
        ("edgebench broker CA", layout.ca_cert, layout.ca_key, layout.ca_crl),
        ("edgebench operator CA", layout.operator_ca_cert, layout.operator_ca_key, layout.operator_ca_crl),
    ):
        cert, key = _make_ca(cn, ca_days)
        write_private_file(key_path, _key_pem(key))
        _write_public(cert_path, _pem(cert))
        _write_public(crl_path, _empty_crl(cert, key).public_bytes(serialization.Encoding.PEM))
    issue_server_cert(layout, hostnames, days=leaf_days)
    if force or not layout.passwd.exists():
        write_private_file(layout.passwd, b"")
    return layout


def issue_server_cert(layout: PkiLayout, hostnames: Sequence[str] = (), *, days: int = LEAF_DAYS) -> Path:
    """(Re)issue the broker's certificate for localhost, 127.0.0.1, ::1 and ``hostnames``."""
    ca_cert, ca_key = _load_ca(layout.ca_cert, layout.ca_key)
    cn = next((h for h in hostnames if h), "edgebench-broker")
    cert, key = _issue_leaf(ca_cert, ca_key, cn, usage=ExtendedKeyUsageOID.SERVER_AUTH, days=days,
                            san=_san(hostnames))
    write_private_file(layout.server_key, _key_pem(key))
    _write_public(layout.server_cert, _pem(cert))
    return layout.server_cert


def issue_device(layout: PkiLayout, device_id: str, *, cert: bool = True, password: str | None = None,
                 days: int = LEAF_DAYS, force: bool = False) -> Path:
    """Provision one device: a client certificate with CN = device id (for the
    certificate listener) and/or a password (for the password listener). The
    returned directory is the bundle to copy to the device."""
    validate_device_id(device_id)
    if not cert and password is None:
        raise PkiError("a device needs a certificate, a password or both")
    out = layout.device_dir(device_id)
    if out.exists() and not force:
        raise PkiError(f"{out} exists; use --force to reissue (revoke the old certificate first)")
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o700)
    shutil.copyfile(layout.ca_cert, out / "ca.crt")
    if cert:
        ca_cert, ca_key = _load_ca(layout.ca_cert, layout.ca_key)
        leaf, key = _issue_leaf(ca_cert, ca_key, device_id, usage=ExtendedKeyUsageOID.CLIENT_AUTH, days=days)
        write_private_file(out / "client.key", _key_pem(key))
        _write_public(out / "client.crt", _pem(leaf))
    if password is not None:
        set_password(layout.passwd, device_id, password)
        write_private_file(out / "password", password.encode() + b"\n")
    return out


def issue_controller(layout: PkiLayout, name: str = CONTROLLER_USER, *, days: int = LEAF_DAYS,
                     force: bool = False) -> Path:
    """A controller certificate from the operator CA. Its CN is always
    ``controller`` (the ACL's user); ``name`` only names the bundle, so that
    each operator or workstation has its own key and can be revoked alone."""
    if not _DEVICE_ID.match(name):
        raise PkiError(f"controller name {name!r} must match {_DEVICE_ID.pattern}")
    out = layout.controller_dir(name)
    if out.exists() and not force:
        raise PkiError(f"{out} exists; use --force to reissue")
    ca_cert, ca_key = _load_ca(layout.operator_ca_cert, layout.operator_ca_key)
    leaf, key = _issue_leaf(ca_cert, ca_key, CONTROLLER_USER, usage=ExtendedKeyUsageOID.CLIENT_AUTH, days=days)
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o700)
    shutil.copyfile(layout.ca_cert, out / "ca.crt")  # to verify the broker, not to sign
    write_private_file(out / "client.key", _key_pem(key))
    _write_public(out / "client.crt", _pem(leaf))
    return out


def revoke(layout: PkiLayout, cert_path: Path) -> int:
    """Add the certificate at ``cert_path`` to its CA's CRL; returns its serial.
    The broker reads CRLs at start: restart it afterwards."""
    cert = load_cert(cert_path)
    for ca_cert_path, ca_key_path, crl_path in (
        (layout.ca_cert, layout.ca_key, layout.ca_crl),
        (layout.operator_ca_cert, layout.operator_ca_key, layout.operator_ca_crl),
    ):
        ca_cert, ca_key = _load_ca(ca_cert_path, ca_key_path)
        if cert.issuer != ca_cert.subject:
            continue
        try:
            cert.verify_directly_issued_by(ca_cert)
        except (ValueError, TypeError, InvalidSignature):
            raise PkiError(f"{cert_path} names {ca_cert_path.name}'s CA as issuer but was not signed "
                           "by it (a certificate of another PKI directory?)") from None
        old = x509.load_pem_x509_crl(crl_path.read_bytes())
        entries = [e for e in old if e.serial_number != cert.serial_number]
        entries.append(
            x509.RevokedCertificateBuilder().serial_number(cert.serial_number)
            .revocation_date(_now()).build()
        )
        number_ext = old.extensions.get_extension_for_class(x509.CRLNumber)
        crl = _sign_crl(ca_cert, ca_key, entries, number=number_ext.value.crl_number + 1)
        _write_public(crl_path, crl.public_bytes(serialization.Encoding.PEM))
        return cert.serial_number
    raise PkiError(f"{cert_path} was not issued by either CA of {layout.root}")


def revoke_device(layout: PkiLayout, device_id: str) -> list[str]:
    """Revoke everything a device holds: its certificate (CRL) and its
    password (removed from the password file). Returns what was done."""
    validate_device_id(device_id)
    done: list[str] = []
    cert_path = layout.device_dir(device_id) / "client.crt"
    if cert_path.exists():
        done.append(f"certificate serial {revoke(layout, cert_path):x} added to {layout.ca_crl}")
    if remove_password(layout.passwd, device_id):
        done.append(f"password removed from {layout.passwd}")
    if not done:
        raise PkiError(f"nothing to revoke for device {device_id!r} in {layout.root}")
    return done


# -- passwords ---------------------------------------------------------------------------

def issue_account(layout: PkiLayout, name: str, *, force: bool = False) -> Path:
    """A password-only service account, e.g. ``controller-monitor`` (read-only
    in the ACL). Its password is written to ``accounts/<name>`` (0600)."""
    if not _DEVICE_ID.match(name):
        raise PkiError(f"account name {name!r} must match {_DEVICE_ID.pattern}")
    out = layout.root / "accounts" / name
    if out.exists() and not force:
        raise PkiError(f"{out} exists; use --force to replace the password")
    password = generate_password()
    set_password(layout.passwd, name, password)
    write_private_file(out, password.encode() + b"\n")
    return out


# -- job-signing keys --------------------------------------------------------------------


def create_signing_key(layout: PkiLayout, *, force: bool = False) -> tuple[Path, Path]:
    """The controller's Ed25519 job-signing key (``signing/jobs.key``, keep it on
    the controller) and its public half (``signing/jobs.pub``, give it to agents)."""
    key_path, pub_path = layout.signing_dir / "jobs.key", layout.signing_dir / "jobs.pub"
    if key_path.exists() and not force:
        raise PkiError(f"{key_path} exists; use --force to replace it (agents then need the new jobs.pub)")
    private_key, public_key = signing.generate_keypair()
    signing.save_private_key(private_key, key_path)
    signing.save_public_key(public_key, pub_path)
    return key_path, pub_path
