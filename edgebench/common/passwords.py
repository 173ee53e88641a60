"""Mosquitto password files: add, replace and remove a user, in the broker's own format.

``mosquitto_passwd -b`` does the hashing where it is installed; elsewhere (a workstation that provisions
devices but runs no broker) the same ``$7$`` format is computed here. edgebench/common/pki.py issues the
device and service-account passwords through these functions.
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
import subprocess
from base64 import b64encode
from pathlib import Path

from edgebench.common.errors import UsageError
from edgebench.common.files import write_private_file


class PasswordFileError(UsageError):
    """A password file operation that cannot be done (bad username, mosquitto_passwd failing)."""


# mosquitto 2.0's own format ("$7$": PBKDF2-SHA512, 101 iterations, 12-byte salt),
# used only where the mosquitto_passwd binary is absent, e.g. on a workstation
# that provisions devices but runs no broker.
_PBKDF2_ITERATIONS = 101


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _PBKDF2_ITERATIONS, 64)
    return f"$7${_PBKDF2_ITERATIONS}${b64encode(salt).decode()}${b64encode(digest).decode()}"


def generate_password() -> str:
    return secrets.token_urlsafe(24)


def set_password(passwd_file: Path, username: str, password: str, *, use_binary: bool | None = None) -> None:
    """Add or replace ``username`` in a mosquitto password file.

    Uses ``mosquitto_passwd -b`` (the broker's own hashing) when it is on PATH,
    else the same format computed here. ``use_binary`` forces one or the other.
    """
    if ":" in username or "\n" in username or "\n" in password:
        raise PasswordFileError("usernames cannot contain ':' or newlines, passwords no newlines")
    binary = shutil.which("mosquitto_passwd")
    if use_binary is None:
        use_binary = binary is not None
    if use_binary:
        if binary is None:
            raise PasswordFileError("mosquitto_passwd is not on PATH (install the mosquitto package)")
        if not passwd_file.exists():
            write_private_file(passwd_file, b"")
        # The password is briefly on this host's process list; this runs on the
        # provisioning machine, not on a shared one.
        proc = subprocess.run([binary, "-b", str(passwd_file), username, password],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise PasswordFileError(f"mosquitto_passwd failed: {proc.stderr.strip() or proc.stdout.strip()}")
        passwd_file.chmod(0o600)
        return
    lines = _passwd_lines(passwd_file)
    lines = [ln for ln in lines if ln.split(":", 1)[0] != username]
    lines.append(f"{username}:{hash_password(password)}")
    write_private_file(passwd_file, ("\n".join(lines) + "\n").encode())


def remove_password(passwd_file: Path, username: str) -> bool:
    """Remove ``username``; returns whether it was there."""
    lines = _passwd_lines(passwd_file)
    kept = [ln for ln in lines if ln.split(":", 1)[0] != username]
    if len(kept) == len(lines):
        return False
    write_private_file(passwd_file, ("\n".join(kept) + "\n").encode() if kept else b"")
    return True


def _passwd_lines(passwd_file: Path) -> list[str]:
    if not passwd_file.exists():
        return []
    return [ln for ln in passwd_file.read_text().splitlines() if ln.strip()]
