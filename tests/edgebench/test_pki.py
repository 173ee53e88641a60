"""edgebench.common.pki: the certificates, CRLs and password files it writes.

That Mosquitto accepts them (and refuses what it should) is tested against a
real broker in tests/deploy; here, their contents and the refusals of the tool.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgebench.common import pki, signing


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _usages(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> pki.PkiLayout:
    layout = pki.init_pki(tmp_path_factory.mktemp("pki"), ["broker.plant.local", "10.1.2.3"])
    pki.issue_device(layout, "jetson-01")
    pki.issue_controller(layout)
    return layout


def test_init_writes_two_independent_cas_with_private_keys_0600(layout: pki.PkiLayout) -> None:
    ca, operator_ca = pki.load_cert(layout.ca_cert), pki.load_cert(layout.operator_ca_cert)
    for cert in (ca, operator_ca):
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        cert.verify_directly_issued_by(cert)  # self-signed
    assert ca.subject != operator_ca.subject
    assert ca.public_key() != operator_ca.public_key()
    assert _mode(layout.private_dir) == 0o700
    for key in (layout.ca_key, layout.operator_ca_key, layout.server_key, layout.passwd):
        assert _mode(key) == 0o600, key
    assert not any(p.name.endswith(".key") and "ca" in p.name for p in layout.broker_dir.iterdir())


def test_server_certificate_names_loopback_and_the_given_hosts(layout: pki.PkiLayout) -> None:
    cert = pki.load_cert(layout.server_cert)
    cert.verify_directly_issued_by(pki.load_cert(layout.ca_cert))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "broker.plant.local"}
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"), ipaddress.ip_address("10.1.2.3")}
    assert _usages(cert) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_device_bundle_holds_a_client_certificate_with_cn_device_id(layout: pki.PkiLayout) -> None:
    bundle = layout.device_dir("jetson-01")
    assert sorted(p.name for p in bundle.iterdir()) == ["ca.crt", "client.crt", "client.key"]
    assert _mode(bundle / "client.key") == 0o600
    cert = pki.load_cert(bundle / "client.crt")
    cert.verify_directly_issued_by(pki.load_cert(layout.ca_cert))
    assert _cn(cert) == "jetson-01"
    assert _usages(cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]  # useless as a server certificate
    key = serialization.load_pem_private_key((bundle / "client.key").read_bytes(), password=None)
    assert key.public_key() == cert.public_key()
    assert (bundle / "ca.crt").read_bytes() == layout.ca_cert.read_bytes()
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 824 <= lifetime.days <= pki.LEAF_DAYS


def test_controller_certificate_comes_from_the_operator_ca(layout: pki.PkiLayout) -> None:
    cert = pki.load_cert(layout.controller_dir("controller") / "client.crt")
    cert.verify_directly_issued_by(pki.load_cert(layout.operator_ca_cert))
    assert cert.issuer != pki.load_cert(layout.ca_cert).subject
    assert _cn(cert) == pki.CONTROLLER_USER
    # It verifies the broker with the broker CA.
    assert (layout.controller_dir("controller") / "ca.crt").read_bytes() == layout.ca_cert.read_bytes()


def test_a_second_controller_bundle_has_its_own_key_and_the_same_user(layout: pki.PkiLayout) -> None:
    bundle = pki.issue_controller(layout, "alice-laptop")
    first = pki.load_cert(layout.controller_dir("controller") / "client.crt")
    second = pki.load_cert(bundle / "client.crt")
    assert _cn(second) == _cn(first) == "controller"
    assert second.public_key() != first.public_key()


def test_existing_material_is_not_replaced_without_force(layout: pki.PkiLayout) -> None:
    with pytest.raises(pki.PkiError, match="already exists"):
        pki.init_pki(layout.root)
    with pytest.raises(pki.PkiError, match="exists"):
        pki.issue_device(layout, "jetson-01")
    with pytest.raises(pki.PkiError, match="exists"):
        pki.issue_controller(layout)


def test_force_reissues_a_device(tmp_path: Path) -> None:
    layout = pki.init_pki(tmp_path)
    old = pki.load_cert(pki.issue_device(layout, "dev1") / "client.crt")
    new = pki.load_cert(pki.issue_device(layout, "dev1", force=True) / "client.crt")
    assert old.serial_number != new.serial_number


@pytest.mark.parametrize("device_id", ["a/b", "dev+1", "#", "", " dev", "dev 1", "x" * 65, "-dev",
                                       "controller", "Controller-2", "controller-monitor"])
def test_unsafe_or_reserved_device_ids_are_refused(layout: pki.PkiLayout, device_id: str) -> None:
    with pytest.raises(pki.PkiError):
        pki.issue_device(layout, device_id, force=True)


def test_python_password_hash_is_mosquittos_pbkdf2_format(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    pki.set_password(passwd, "dev1", "s3cret", use_binary=False)
    pki.set_password(passwd, "dev2", "other", use_binary=False)
    pki.set_password(passwd, "dev1", "changed", use_binary=False)  # replaces, does not duplicate
    lines = passwd.read_text().splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["dev2", "dev1"]
    _, algorithm, iterations, salt, digest = lines[1].split(":", 1)[1].split("$")
    assert (algorithm, iterations) == ("7", "101")
    expected = hashlib.pbkdf2_hmac("sha512", b"changed", base64.b64decode(salt), 101, 64)
    assert base64.b64decode(digest) == expected
    assert _mode(passwd) == 0o600


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="mosquitto_passwd is not installed")
def test_mosquitto_passwd_is_used_when_installed(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    pki.set_password(passwd, "dev1", "s3cret")
    pki.set_password(passwd, "dev2", "s3cret")
    users = [ln.split(":")[0] for ln in passwd.read_text().splitlines()]
    assert users == ["dev1", "dev2"]
    assert _mode(passwd) == 0o600
    assert pki.remove_password(passwd, "dev1")
    assert not pki.remove_password(passwd, "dev1")
    assert [ln.split(":")[0] for ln in passwd.read_text().splitlines()] == ["dev2"]


def test_password_device_bundle(tmp_path: Path) -> None:
    layout = pki.init_pki(tmp_path)
    bundle = pki.issue_device(layout, "plc-7", cert=False, password="pw-123")
    assert sorted(p.name for p in bundle.iterdir()) == ["ca.crt", "password"]
    assert _mode(bundle / "password") == 0o600
    assert layout.passwd.read_text().startswith("plc-7:$7$")
    with pytest.raises(pki.PkiError, match="certificate, a password or both"):
        pki.issue_device(layout, "plc-8", cert=False)


def test_revocation_adds_the_serial_to_the_issuing_cas_crl(tmp_path: Path) -> None:
    layout = pki.init_pki(tmp_path)
    device_cert = pki.load_cert(pki.issue_device(layout, "dev1", password="pw") / "client.crt")
    controller_bundle = pki.issue_controller(layout)
    empty = x509.load_pem_x509_crl(layout.ca_crl.read_bytes())
    assert len(empty) == 0

    done = pki.revoke_device(layout, "dev1")
    assert len(done) == 2 and "dev1" not in layout.passwd.read_text()
    crl = x509.load_pem_x509_crl(layout.ca_crl.read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(device_cert.serial_number) is not None
    assert crl.is_signature_valid(pki.load_cert(layout.ca_cert).public_key())  # type: ignore[arg-type]  # an EC key here
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number == 2
    assert crl.next_update_utc is not None and (crl.next_update_utc - crl.last_update_utc).days >= 3650

    serial = pki.revoke(layout, controller_bundle / "client.crt")
    operator_crl = x509.load_pem_x509_crl(layout.operator_ca_crl.read_bytes())
    assert operator_crl.get_revoked_certificate_by_serial_number(serial) is not None
    assert len(x509.load_pem_x509_crl(layout.ca_crl.read_bytes())) == 1  # untouched

    foreign = pki.init_pki(tmp_path / "other")
    with pytest.raises(pki.PkiError, match="not signed by it"):
        pki.revoke(layout, foreign.server_cert)
    with pytest.raises(pki.PkiError, match="nothing to revoke"):
        pki.revoke_device(layout, "never-issued")


def test_signing_key_pair_is_created_once(tmp_path: Path) -> None:
    layout = pki.PkiLayout(tmp_path)
    key_path, pub_path = pki.create_signing_key(layout)
    assert _mode(key_path) == 0o600
    assert signing.load_private_key(key_path).public_key() == signing.load_public_key(pub_path)
    with pytest.raises(pki.PkiError, match="exists"):
        pki.create_signing_key(layout)


def _pki(*args: str):  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from edgebench.controller.cli import app

    return CliRunner().invoke(app, ["pki", *args])


def test_command_line_provisions_a_site(tmp_path: Path) -> None:
    root = str(tmp_path / "site")
    for args in (["init", "--dir", root, "--hostname", "mqtt.plant.local"], ["device", "--dir", root, "agx-01"],
                 ["device", "--dir", root, "nano-02", "--no-cert"], ["controller", "--dir", root],
                 ["account", "--dir", root, "controller-monitor"], ["signing-key", "--dir", root]):
        result = _pki(*args)
        assert result.exit_code == 0, (args, result.output)
    layout = pki.PkiLayout(Path(root))
    assert (layout.device_dir("agx-01") / "client.crt").exists()
    assert (layout.device_dir("nano-02") / "password").exists()
    users = [ln.split(":")[0] for ln in layout.passwd.read_text().splitlines()]
    assert users == ["nano-02", "controller-monitor"]
    assert _pki("revoke", "--dir", root, "agx-01").exit_code == 0
    refused = _pki("device", "--dir", root, "controller-x")
    assert refused.exit_code == 2
    assert "reserved for controllers" in refused.stderr
    assert "Traceback" not in refused.output


def test_pki_is_a_controller_command() -> None:
    result = subprocess.run([sys.executable, "-m", "edgebench.controller.cli", "pki", "--help"], capture_output=True,
                            text=True, check=False, env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert "signing-key" in result.stdout
