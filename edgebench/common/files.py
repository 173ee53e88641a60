"""Writing files that hold secrets (keys, passwords). Its own module because
both pki.py and signing.py write them, and signing.py must not import pki.py
(pki.py creates job-signing keys through signing.py)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def write_private_file(path: Path, data: bytes) -> None:
    """Write a secret readable by its owner only (0600), created with that mode
    (no window in which it is world-readable) and replaced atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


_CHUNK = 1 << 20  # bytes read at a time


def sha256_file(path: Path) -> str:
    """The file's sha256, read in 1 MiB blocks (model artifacts are checked by it on both sides)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_CHUNK):
            h.update(block)
    return h.hexdigest()
