"""A job's model file on the box (issue 19, docs/MODELS.md): fetched, verified, cached by digest.

Order, and why:

1. The cache first: ``<cache>/sha256/<digest>/model.<onnx|keras>``, the runner's own model cache
   layout (runner/inference/artifacts.py), so the runner finds the file by the job's digest. A hit
   is re-hashed before it is used, and downloads nothing.
2. Otherwise the file is streamed to a temporary file next to the cache entry, counting bytes: a
   server that sends more than ``max_artifact_bytes`` (or more than the job's ``size_bytes``) is cut
   off there (Oversize), and nothing larger ever lands on the disk.
3. The sha256 of what arrived must equal the job's digest **before** it is renamed into the cache,
   so no process (the runner included) can load an unverified file (DigestMismatch).
4. Connection errors, timeouts and 5xx answers are retried with exponential backoff
   (``fetch_attempts``, ``fetch_backoff_s``); a 4xx (an expired or altered URL) is final. Then the
   job ends FAILED with error_type ``Artifact`` and a reason that starts with the kind; the agent goes
   on with its next job.
5. The cache holds at most ``cache_max_bytes`` of delivered files: before a new one is stored, the
   least recently used entries go, never one a running job holds (:meth:`Artifacts.hold`). Exports the
   runner made itself (no ``origin: delivered`` in meta.json) are not counted or evicted.

Every local path comes from the digest; nothing in the job names a path.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import ssl
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from edgebench.agent.errors import AgentError
from edgebench.common.files import sha256_file
from edgebench.schemas.artifact import ModelArtifactRef

if TYPE_CHECKING:
    from edgebench.common.agentconfig import AgentConfig

log = logging.getLogger(__name__)

FILES = {"onnx": "model.onnx", "keras": "model.keras"}  # what the runner loads (no pickle format, ever)
_CHUNK = 1 << 20
USED_STAMP = "last-used"


class ArtifactError(AgentError):
    """The job's model could not be delivered or was refused; ``kind`` leads the job's reason."""

    kind = "unavailable"

    def __init__(self, message: str):
        super().__init__(f"{self.kind}: {message}")


class DigestMismatch(ArtifactError):
    kind = "digest-mismatch"


class Oversize(ArtifactError):
    kind = "oversize"


class UnsupportedFormat(ArtifactError):
    kind = "unsupported-format"


class Unavailable(ArtifactError):
    kind = "unavailable"


class _Retry(Exception):
    """A failure worth another attempt (connection, timeout, 5xx)."""


@dataclass(frozen=True)
class Delivery:
    """What getting one job's file cost: for the log, the benchmark and the tests."""

    digest: str
    path: Path
    downloaded_bytes: int
    attempts: int
    seconds: float

    @property
    def cached(self) -> bool:
        return self.downloaded_bytes == 0


class Artifacts:
    """The agent's artifact fetcher and cache (one per agent; thread-safe)."""

    @classmethod
    def from_config(cls, cfg: AgentConfig) -> Artifacts:
        return cls(cfg.artifact_cache_dir or cfg.state_dir / "models", cfg.max_artifact_bytes,
                   cfg.artifact_cache_max_bytes, cfg.artifact_shared_dir, cfg.artifact_ca_file or cfg.ca_file,
                   cfg.artifact_fetch_attempts, cfg.artifact_fetch_backoff_s, cfg.artifact_fetch_timeout_s)

    def __init__(self, root: Path, max_artifact_bytes: int = 500 * 1000**2, cache_max_bytes: int = 5 * 1000**3,
                 shared_dir: Path | None = None, ca_file: str | None = None, attempts: int = 4,
                 backoff_s: float = 1.0, timeout_s: float = 30.0, attempt_deadline_s: float = 600.0):
        self.root = root
        self.max_artifact_bytes = max_artifact_bytes
        self.cache_max_bytes = cache_max_bytes
        self.shared_dir = shared_dir
        self.ca_file = ca_file
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.attempt_deadline_s = attempt_deadline_s
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}

    # -- the cache ------------------------------------------------------------------------
    def _dir(self, digest: str) -> Path:
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise DigestMismatch(f"not a sha256 digest: {digest!r}")
        return self.root / "sha256" / digest

    def cached(self, ref: ModelArtifactRef) -> Path | None:
        """The verified cached file of this digest, or None (absent; a corrupt entry is removed)."""
        directory = self._dir(ref.digest)
        path = directory / FILES[ref.format]
        if not path.is_file():
            return None
        if sha256_file(path) != ref.digest:
            log.warning("model cache: %s does not match its digest; removed", path)
            shutil.rmtree(directory, ignore_errors=True)
            return None
        (directory / USED_STAMP).touch()
        return path

    def entries(self) -> list[tuple[str, int, float]]:
        """(digest, bytes, last used) of every delivered entry."""
        out: list[tuple[str, int, float]] = []
        parent = self.root / "sha256"
        if not parent.is_dir():
            return out
        for directory in parent.iterdir():
            try:
                meta = json.loads((directory / "meta.json").read_text())
                if meta.get("origin") != "delivered":
                    continue
                size = (directory / FILES[meta["format"]]).stat().st_size
                used = (directory / USED_STAMP).stat().st_mtime
            except (OSError, ValueError, KeyError):
                continue
            out.append((directory.name, size, used))
        return out

    def _make_room(self, incoming: int) -> None:
        with self._lock:
            held = set(self._held)
        entries = sorted(self.entries(), key=lambda e: e[2])
        total = sum(size for _, size, _ in entries)
        for digest, size, _ in entries:
            if total + incoming <= self.cache_max_bytes:
                break
            if digest in held:
                continue
            shutil.rmtree(self.root / "sha256" / digest, ignore_errors=True)
            total -= size
            log.info("model cache: evicted %s (%d bytes, least recently used)", digest[:16], size)

    def _store(self, tmp: Path, ref: ModelArtifactRef) -> Path:
        """Move a verified temporary file into the cache, with the runner's meta.json."""
        final = self._dir(ref.digest)
        staging = Path(tempfile.mkdtemp(prefix=".incoming-", dir=final.parent))
        try:
            os.replace(tmp, staging / FILES[ref.format])
            meta = {"sha256": ref.digest, "format": ref.format, "origin": "delivered", "precision": "fp32",
                    "name": ref.name, "version": ref.version, "classes": ref.classes,
                    "input": ref.input.model_dump(mode="json"), "layout": ref.input.layout,
                    "source": f"user model {ref.name}@{ref.version}"}
            (staging / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
            (staging / USED_STAMP).touch()
            try:
                os.rename(staging, final)
            except OSError:
                if not (final / FILES[ref.format]).is_file():
                    raise
                shutil.rmtree(staging, ignore_errors=True)  # another worker stored the same bytes first
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return final / FILES[ref.format]

    @contextmanager
    def hold(self, ref: ModelArtifactRef) -> Iterator[Delivery]:
        """The job's file, verified, kept from eviction while the job runs."""
        with self._lock:
            self._held[ref.digest] = self._held.get(ref.digest, 0) + 1
        try:
            yield self.ensure(ref)
        finally:
            with self._lock:
                self._held[ref.digest] -= 1
                if not self._held[ref.digest]:
                    del self._held[ref.digest]

    # -- delivery -------------------------------------------------------------------------
    def ensure(self, ref: ModelArtifactRef) -> Delivery:
        started = time.monotonic()
        if ref.format not in FILES:
            raise UnsupportedFormat(f"{ref.format} models are not run by this agent (it runs: {', '.join(FILES)})")
        if ref.size_bytes > self.max_artifact_bytes:
            raise Oversize(f"{ref.name}@{ref.version} is {ref.size_bytes} bytes; this agent takes at most "
                           f"{self.max_artifact_bytes} (max_artifact_bytes)")
        path = self.cached(ref)
        if path is not None:
            return Delivery(ref.digest, path, 0, 0, time.monotonic() - started)
        self._dir(ref.digest).parent.mkdir(parents=True, exist_ok=True)
        self._make_room(ref.size_bytes)
        last: Exception | None = None
        for attempt in range(1, self.attempts + 1):
            fd, name = tempfile.mkstemp(prefix=".download-", dir=self.root / "sha256")
            tmp = Path(name)
            try:
                with os.fdopen(fd, "wb") as out:
                    received = self._copy(ref, out)
                actual = sha256_file(tmp)
                if actual != ref.digest:
                    raise DigestMismatch(f"{ref.name}@{ref.version}: the file received hashes to sha256:{actual}, "
                                         f"the job says sha256:{ref.digest}; not loaded")
                path = self._store(tmp, ref)
                log.info("model %s@%s (%s) fetched: %d bytes, attempt %d", ref.name, ref.version,
                         ref.digest[:16], received, attempt)
                return Delivery(ref.digest, path, received, attempt, time.monotonic() - started)
            except _Retry as exc:
                last = exc
                if attempt < self.attempts:
                    delay = self.backoff_s * 2 ** (attempt - 1)
                    log.warning("model %s: fetch attempt %d failed (%s); again in %.1f s", ref.digest[:16],
                                attempt, exc, delay)
                    time.sleep(delay)
            finally:
                tmp.unlink(missing_ok=True)
        raise Unavailable(f"{ref.name}@{ref.version} from {_where(ref)}: {self.attempts} attempt(s) failed, "
                          f"the last with {last}")

    def _copy(self, ref: ModelArtifactRef, out: BinaryIO) -> int:
        loc = ref.location
        limit = min(self.max_artifact_bytes, ref.size_bytes)
        if loc.kind == "directory":
            if self.shared_dir is None:
                raise Unavailable("the job's model is in a shared directory, and this agent has none "
                                  "(artifact_shared_dir)")
            source = self.shared_dir / "sha256" / ref.digest
            try:
                with source.open("rb") as fh:
                    return _bounded_copy(fh.read, out, limit, ref)
            except FileNotFoundError:
                raise Unavailable(f"{source} does not exist") from None
            except OSError as exc:
                raise _Retry(str(exc)) from None
        if loc.url is None:
            raise Unavailable(f"a {loc.kind} location without a URL")
        request = urllib.request.Request(loc.url, headers={"Accept": "application/octet-stream"})
        if loc.token:
            # unredirected: a registry that redirects a blob to its storage must not pass the token on
            request.add_unredirected_header("Authorization", f"Bearer {loc.token}")
        context = ssl.create_default_context(cafile=self.ca_file) if loc.url.startswith("https") else None
        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _HttpOnlyRedirects())
        deadline = time.monotonic() + self.attempt_deadline_s
        try:
            with opener.open(request, timeout=self.timeout_s) as resp:
                length = resp.headers.get("Content-Length")
                if length is not None and length.isdigit() and int(length) > limit:
                    raise Oversize(f"the server announces {length} bytes; the limit is {limit}")

                def read(n: int) -> bytes:
                    if time.monotonic() > deadline:
                        raise _Retry(f"slower than {self.attempt_deadline_s:g} s for the whole file")
                    return resp.read(n)

                return _bounded_copy(read, out, limit, ref)
        except urllib.error.HTTPError as exc:
            if exc.code >= 500:
                raise _Retry(f"HTTP {exc.code}") from None
            raise Unavailable(f"HTTP {exc.code} from {_where(ref)} (an expired or altered URL, or a token "
                              "without access)") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, ssl.SSLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, ssl.SSLCertVerificationError):  # a configuration error, not a passing one
                raise Unavailable(f"{_where(ref)}: {reason}") from None
            raise _Retry(str(reason)) from None


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to http(s) (urllib would follow ftp too), at most 3 times."""

    max_redirections = 3

    def redirect_request(self, req: urllib.request.Request, fp: object, code: int, msg: str, headers: object,
                         newurl: str) -> urllib.request.Request | None:
        if not newurl.lower().startswith(("http://", "https://")):
            raise Unavailable(f"the artifact's URL redirects to a {newurl.split(':', 1)[0]!r} URL; only http(s)")
        return super().redirect_request(req, fp, code, msg, headers, newurl)  # type: ignore[arg-type]


def _bounded_copy(read: Callable[[int], bytes], out: BinaryIO, limit: int, ref: ModelArtifactRef) -> int:
    total = 0
    while True:
        block = read(_CHUNK)
        if not block:
            return total
        total += len(block)
        if total > limit:
            raise Oversize(f"{ref.name}@{ref.version}: more than {limit} bytes arrived (the job says "
                           f"{ref.size_bytes}); cut off, not kept")
        out.write(block)


def _where(ref: ModelArtifactRef) -> str:
    loc = ref.location
    if loc.url is None:
        return loc.kind
    from urllib.parse import urlsplit

    parts = urlsplit(loc.url)
    return f"{parts.scheme}://{parts.netloc}"  # never the query: it holds the URL's signature
