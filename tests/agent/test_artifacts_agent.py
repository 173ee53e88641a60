"""The agent's model delivery (agent/artifacts.py, issue 19): verify before anything loads, cache by
digest with LRU eviction under a size cap, retry with backoff, typed refusals. Real HTTP servers on
free ports: the controller's own artifact server, and sockets that misbehave on purpose."""

from __future__ import annotations

import http.server
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgebench.agent.artifacts import Artifacts, DigestMismatch, Oversize, Unavailable, UnsupportedFormat
from edgebench.controller.artifact_delivery import ArtifactHTTPServer, signed_url
from edgebench.schemas.artifact import ModelArtifactRef

KEY = b"t" * 32


def ref_for(data: bytes, url: str | None, fmt: str = "onnx", size: int | None = None, digest: str | None = None,
            kind: str = "http") -> ModelArtifactRef:
    import hashlib

    doc: dict[str, Any] = {
        "name": "m", "version": "1", "digest": digest or hashlib.sha256(data).hexdigest(), "format": fmt,
        "size_bytes": len(data) if size is None else size,
        "input": {"shape": [1, 8, 8], "layout": "NCHW"}, "classes": 4,
        "location": {"kind": kind, **({"url": url} if url else {})}}
    return ModelArtifactRef.model_validate_json(json.dumps(doc))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ArtifactHTTPServer, Path]]:
    root = tmp_path / "controller"
    (root / "sha256").mkdir(parents=True)
    with ArtifactHTTPServer(root, KEY, "127.0.0.1", 0) as server:
        yield server, root


def publish(root: Path, server: ArtifactHTTPServer, data: bytes, job: str = "job-1") -> str:
    import hashlib

    digest = hashlib.sha256(data).hexdigest()
    (root / "sha256" / digest).write_bytes(data)
    return signed_url(f"http://127.0.0.1:{server.port}", KEY, digest, job, int(time.time()) + 60)


def test_fetch_verify_then_cache_hit(served: tuple[ArtifactHTTPServer, Path], tmp_path: Path) -> None:
    server, root = served
    data = os.urandom(3 << 20)
    ref = ref_for(data, publish(root, server, data))
    cache = Artifacts(tmp_path / "cache", backoff_s=0.01)
    first = cache.ensure(ref)
    assert first.downloaded_bytes == len(data) and first.path.read_bytes() == data
    assert first.path == tmp_path / "cache" / "sha256" / ref.digest / "model.onnx"
    meta = json.loads((first.path.parent / "meta.json").read_text())
    assert meta["origin"] == "delivered" and meta["sha256"] == ref.digest and meta["layout"] == "NCHW"
    second = cache.ensure(ref)
    assert second.cached and second.downloaded_bytes == 0 and server.served == 1  # nothing downloaded again


def test_digest_that_matches_nothing(served: tuple[ArtifactHTTPServer, Path], tmp_path: Path) -> None:
    server, root = served
    data = b"the real model" * 100
    url = publish(root, server, data)
    # the job names another digest than the file behind its URL (a tampered file or job)
    import hashlib

    wrong = hashlib.sha256(b"something else").hexdigest()
    (root / "sha256" / wrong).write_bytes(data)
    url = signed_url(f"http://127.0.0.1:{server.port}", KEY, wrong, "job-1", int(time.time()) + 60)
    cache = Artifacts(tmp_path / "cache", backoff_s=0.01)
    with pytest.raises(DigestMismatch, match=r"^digest-mismatch: .*not loaded"):
        cache.ensure(ref_for(data, url, digest=wrong))
    assert not (tmp_path / "cache" / "sha256" / wrong).exists()
    assert [p.name for p in (tmp_path / "cache" / "sha256").iterdir()] == []  # no temporary file left


def test_two_gb_against_a_500_mb_cap(served: tuple[ArtifactHTTPServer, Path], tmp_path: Path) -> None:
    server, root = served
    cap = 500 * 1000**2
    cache = Artifacts(tmp_path / "cache", max_artifact_bytes=cap, backoff_s=0.01)
    # the job says 2 GB: refused before any byte moves
    with pytest.raises(Oversize, match=r"^oversize: .*2000000000 bytes"):
        cache.ensure(ref_for(b"x", "http://127.0.0.1:9/x", size=2 * 1000**3, digest="0" * 64))
    # the job lies (400 MB), the server announces 2 GB: refused from its Content-Length (a sparse file)
    digest = "1" * 64
    with (root / "sha256" / digest).open("wb") as fh:
        fh.truncate(2 * 1000**3)
    url = signed_url(f"http://127.0.0.1:{server.port}", KEY, digest, "j", int(time.time()) + 60)
    started = time.monotonic()
    with pytest.raises(Oversize, match="announces 2000000000 bytes"):
        cache.ensure(ref_for(b"x", url, size=400 * 1000**2, digest=digest))
    assert time.monotonic() - started < 10
    assert [p.name for p in (tmp_path / "cache" / "sha256").iterdir()] == []


def test_more_bytes_than_announced_are_cut_off(tmp_path: Path) -> None:
    class Liar(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.end_headers()  # no Content-Length: the agent must count
            self.wfile.write(b"\0" * (4 << 20))

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Liar)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cache = Artifacts(tmp_path / "cache", backoff_s=0.01)
        with pytest.raises(Oversize, match="more than 1000 bytes arrived"):
            cache.ensure(ref_for(b"x", f"http://127.0.0.1:{server.server_port}/m", size=1000, digest="2" * 64))
    finally:
        server.shutdown()
        server.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_server_down_retries_with_backoff_then_unavailable(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_free_port()}/v1/artifacts/sha256/{'3' * 64}?job=j&exp=1&sig=x"
    cache = Artifacts(tmp_path / "cache", attempts=3, backoff_s=0.1)
    started = time.monotonic()
    with pytest.raises(Unavailable, match=r"^unavailable: m@1 from http://127.0.0.1:[0-9]+: 3 attempt") as err:
        cache.ensure(ref_for(b"x", url, digest="3" * 64))
    assert time.monotonic() - started >= 0.1 + 0.2  # backoff 0.1 s, then 0.2 s
    assert "sig=" not in str(err.value)  # the URL's signature never reaches a reason or a log


def test_slow_server_times_out_then_unavailable(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts connections, never answers
    try:
        port = listener.getsockname()[1]
        cache = Artifacts(tmp_path / "cache", attempts=2, backoff_s=0.05, timeout_s=0.3)
        started = time.monotonic()
        with pytest.raises(Unavailable, match="2 attempt"):
            cache.ensure(ref_for(b"x", f"http://127.0.0.1:{port}/m", digest="4" * 64))
        assert 0.6 <= time.monotonic() - started < 10
    finally:
        listener.close()


def test_a_503_is_retried_and_the_second_attempt_wins(tmp_path: Path) -> None:
    data = b"model" * 1000
    calls = []

    class Flaky(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            calls.append(self.path)
            if len(calls) == 1:
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        got = Artifacts(tmp_path / "cache", backoff_s=0.01).ensure(
            ref_for(data, f"http://127.0.0.1:{server.server_port}/m"))
        assert got.attempts == 2 and got.path.read_bytes() == data
    finally:
        server.shutdown()
        server.server_close()


def test_a_refused_url_is_final(served: tuple[ArtifactHTTPServer, Path], tmp_path: Path) -> None:
    server, root = served
    data = b"abc" * 10
    url = publish(root, server, data).replace("job=job-1", "job=job-2")  # another job's URL
    cache = Artifacts(tmp_path / "cache", attempts=4, backoff_s=5)
    started = time.monotonic()
    with pytest.raises(Unavailable, match="HTTP 403"):
        cache.ensure(ref_for(data, url))
    assert time.monotonic() - started < 4  # not retried


def test_unsupported_format(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFormat, match=r"^unsupported-format: pt2"):
        Artifacts(tmp_path / "cache").ensure(ref_for(b"x", "http://127.0.0.1:9/x", fmt="pt2"))


def test_shared_directory(tmp_path: Path) -> None:
    data = b"shared model" * 50
    ref = ref_for(data, None, kind="directory")
    shared = tmp_path / "share"
    (shared / "sha256").mkdir(parents=True)
    (shared / "sha256" / ref.digest).write_bytes(data)
    got = Artifacts(tmp_path / "cache", shared_dir=shared).ensure(ref)
    assert got.path.read_bytes() == data and got.downloaded_bytes == len(data)
    with pytest.raises(Unavailable, match="has none"):
        Artifacts(tmp_path / "cache2").ensure(ref)


def test_lru_eviction_spares_held_files(served: tuple[ArtifactHTTPServer, Path], tmp_path: Path) -> None:
    server, root = served
    blobs = [bytes([i]) * 1000 for i in range(4)]
    refs = [ref_for(b, publish(root, server, b)) for b in blobs]
    cache = Artifacts(tmp_path / "cache", cache_max_bytes=2500, backoff_s=0.01)
    with cache.hold(refs[0]):
        cache.ensure(refs[1])
        time.sleep(0.05)
        cache.ensure(refs[2])  # 3000 > 2500: the least recently used not held (1) goes
        assert {d for d, _, _ in cache.entries()} == {refs[0].digest, refs[2].digest}
    time.sleep(0.05)
    cache.ensure(refs[3])  # nothing held now: 0 is the least recently used
    assert {d for d, _, _ in cache.entries()} == {refs[2].digest, refs[3].digest}


def test_a_corrupt_cache_entry_is_fetched_again(served: tuple[ArtifactHTTPServer, Path], tmp_path: Path) -> None:
    server, root = served
    data = b"m" * 5000
    ref = ref_for(data, publish(root, server, data))
    cache = Artifacts(tmp_path / "cache", backoff_s=0.01)
    path = cache.ensure(ref).path
    path.write_bytes(b"tampered")
    again = cache.ensure(ref)
    assert again.downloaded_bytes == len(data) and again.path.read_bytes() == data


def test_redirects_only_to_http_and_without_the_token(tmp_path: Path) -> None:
    data = b"redirected model" * 10
    seen: dict[str, str | None] = {}

    class Redirector(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/ftp":
                self.send_response(302)
                self.send_header("Location", "ftp://127.0.0.1/secret")
            elif self.path == "/blob":
                self.send_response(307)
                self.send_header("Location", "/storage")
            else:
                seen["auth"] = self.headers.get("Authorization")
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        cache = Artifacts(tmp_path / "cache", backoff_s=0.01)
        with pytest.raises(Unavailable, match="redirects to a 'ftp' URL"):
            cache.ensure(ref_for(data, f"{base}/ftp", digest="5" * 64))
        ref = ref_for(data, f"{base}/blob").model_copy()
        loc = ref.location.model_copy(update={"token": "secret-token", "kind": "oci"})
        got = cache.ensure(ref.model_copy(update={"location": loc}))
        assert got.path.read_bytes() == data and seen["auth"] is None  # the token stayed with the registry
    finally:
        server.shutdown()
        server.server_close()


def test_a_job_whose_model_cannot_be_fetched_fails_with_the_reason_and_starts_no_runner(tmp_path: Path) -> None:
    from edgebench.agent.jobrun import JobRun
    from edgebench.schemas import ErrorType, JobSpec, JobState

    url = f"http://127.0.0.1:{_free_port()}/v1/artifacts/sha256/{'6' * 64}?job=j&exp=1&sig=x"
    doc = json.loads(ref_for(b"x", url, digest="6" * 64).model_dump_json())
    spec = JobSpec.model_validate_json(json.dumps({
        "job_id": "j", "backend": "onnxruntime", "mode": "infer", "model_artifact": doc,
        "workload": {"model": "user", "dataset": "artifact-input", "batch_size": 1, "epochs": 2,
                     "optimizer": "adam", "learning_rate": 0.001}}))

    class NoRunner:
        def start(self, *args: Any) -> Any:
            raise AssertionError("the runner must not start")

    run = JobRun(spec, 1, "box", NoRunner(), tmp_path / "job", tmp_path,  # type: ignore[arg-type]
                 fingerprint=lambda libs: None, on_progress=lambda p: None,  # type: ignore[arg-type,return-value]
                 artifacts=Artifacts(tmp_path / "cache", attempts=2, backoff_s=0.01))
    outcome = run.run()
    assert outcome.state == JobState.FAILED and outcome.error_type == ErrorType.ARTIFACT
    assert (outcome.reason or "").startswith("unavailable: m@1 from http://127.0.0.1:") and "sig=" not in outcome.reason


def test_https_embedded_server_verified_against_the_ca(tmp_path: Path) -> None:
    """HTTPS (artifact_cert_file/key_file): the agent verifies the server with artifact_ca_file, and
    refuses a server its CA did not sign."""
    from edgebench.common.pki import init_pki
    from edgebench.controller.artifact_delivery import tls_context

    pki = init_pki(tmp_path / "pki", ["127.0.0.1"])
    other = init_pki(tmp_path / "other-pki", ["127.0.0.1"])
    root = tmp_path / "controller"
    (root / "sha256").mkdir(parents=True)
    data = b"tls model" * 100
    with ArtifactHTTPServer(root, KEY, "127.0.0.1", 0, tls_context(pki.server_cert, pki.server_key)) as server:
        url = publish(root, server, data).replace("http://", "https://")
        got = Artifacts(tmp_path / "cache", ca_file=str(pki.ca_cert), backoff_s=0.01).ensure(ref_for(data, url))
        assert got.path.read_bytes() == data
        with pytest.raises(Unavailable, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            # not retried: a certificate that does not verify is a configuration error
            Artifacts(tmp_path / "cache2", ca_file=str(other.ca_cert), attempts=3, backoff_s=30).ensure(
                ref_for(data, url))
