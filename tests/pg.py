"""A real, throw-away PostgreSQL server for tests.

``PgServer.start()`` runs ``initdb`` into a fresh directory, starts ``postgres``
on a free loopback port (its unix socket in the same directory, so it never
meets a system cluster) and ``stop()`` shuts it down. initdb refuses to run as
root, so under root (CI) the server runs as the ``postgres`` user when the
Debian package created it, else as ``nobody``, through ``runuser``.

Durability is switched off (fsync, full_page_writes): these databases live for
one test session.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from edgebench.common.broker import free_port


class PgUnavailable(RuntimeError):
    """The PostgreSQL server binaries (or psycopg) are not installed."""


def pg_bindir() -> Path | None:
    """Directory holding initdb/pg_ctl/postgres: PATH first, then Debian's layout."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(os.path.realpath(on_path)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return Path(candidates[-1]).parent if candidates else None




def _server_user() -> str | None:
    """The account to run the server as, or None to run as ourselves (not root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise PgUnavailable("running as root and neither a 'postgres' nor a 'nobody' account exists")


@dataclass
class PgServer:
    port: int = field(default_factory=free_port)
    root: Path | None = None
    user: str | None = None
    superuser: str = "edgebench"
    _bindir: Path | None = None

    def _cmd(self, *args: str) -> list[str]:
        assert self._bindir is not None
        cmd = [str(self._bindir / args[0]), *args[1:]]
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return cmd

    @property
    def datadir(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    def start(self) -> PgServer:
        self._bindir = pg_bindir()
        if self._bindir is None:
            raise PgUnavailable("PostgreSQL server binaries not found (apt-get install postgresql)")
        try:
            import psycopg  # noqa: F401
        except ImportError as exc:
            raise PgUnavailable("psycopg is not installed (pip install 'psycopg[binary]')") from exc
        self.user = _server_user()
        # Under /tmp rather than pytest's tmp dirs: those are 0700 root, which
        # the server account cannot enter.
        self.root = Path(tempfile.mkdtemp(prefix="edgebench-pg-"))
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        subprocess.run(self._cmd("initdb", "-D", str(self.datadir), "-U", self.superuser, "-A", "trust",
                                 "-E", "UTF8", "--no-sync", "--no-instructions"),
                       check=True, capture_output=True, cwd=self.root)
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c full_page_writes=off -c synchronous_commit=off -c max_connections=200")
        proc = subprocess.run(self._cmd("pg_ctl", "-D", str(self.datadir), "-l", str(self.root / "server.log"),
                                        "-o", opts, "-w", "-t", "60", "start"),
                              capture_output=True, text=True, cwd=self.root)
        if proc.returncode != 0:
            raise RuntimeError(f"postgres did not start: {proc.stdout}{proc.stderr}\n{self.log()}")
        return self

    def log(self) -> str:
        path = (self.root or Path("/nonexistent")) / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.superuser}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        import psycopg

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={self.superuser} dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # name is ours, not user input
        return self.url(name)

    def stop(self) -> None:
        if self.root is None:
            return
        if self.datadir.exists():
            subprocess.run(self._cmd("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "stop"),
                           capture_output=True, cwd=self.root)
        # pg_ctl returns once the postmaster is gone; give the OS a moment to
        # release the socket files before removing the directory
        for _ in range(20):
            try:
                shutil.rmtree(self.root)
                break
            except OSError:
                time.sleep(0.1)
        self.root = None
