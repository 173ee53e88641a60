"""One model file delivered to many agents (issue 19, docs/PERFORMANCE.md "Model delivery").

A random file of --mb megabytes is registered, then fetched by --agents agents at once, each with its own
model cache and its own per-job URL (the agent's real code: edgebench.agent.artifacts.Artifacts, one
thread per agent in this process), through:

- ``http``: the controller's embedded artifact server (controller/artifact_delivery.py), HMAC-signed URLs;
- ``oci``: a real distribution registry (``docker-registry``) with TLS and token auth, when installed.

Printed per store: the time until the last agent had a verified copy, bytes the store sent, bytes the
agents received (each agent fetches once), and a second round in which every agent finds its copy in its
cache (0 bytes moved).

Run: .venv/bin/python benchmarks/artifact_delivery.py --mb 100 --agents 20
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgebench.agent.artifacts import Artifacts, Delivery  # noqa: E402
from edgebench.controller.artifact_delivery import ArtifactHTTPServer, http_location, reference  # noqa: E402
from edgebench.controller.model_registry import ModelEntry, sha256_file  # noqa: E402
from edgebench.schemas.artifact import ModelArtifactRef  # noqa: E402


def _entry(path: Path) -> ModelEntry:
    return ModelEntry(name="bench", version="1", digest=sha256_file(path), format="onnx",
                      size_bytes=path.stat().st_size, input_name="input", input_shape=(3, 224, 224),
                      input_dtype="float32", layout="NCHW", classes=1000, dataset=None, detail="", added_by="bench",
                      added_at=None)


def _round(refs: list[ModelArtifactRef], caches: list[Artifacts]) -> tuple[float, list[Delivery]]:
    started = time.perf_counter()
    with ThreadPoolExecutor(len(caches)) as pool:
        got = list(pool.map(lambda rc: rc[1].ensure(rc[0]), zip(refs, caches)))
    return time.perf_counter() - started, got


def bench(store: str, refs: list[ModelArtifactRef], tmp: Path, ca_file: str | None, sent: Any) -> dict[str, Any]:
    caches = [Artifacts(tmp / f"{store}-agent{i:02d}", max_artifact_bytes=1 << 40, cache_max_bytes=1 << 40,
                        ca_file=ca_file, backoff_s=0.2) for i in range(len(refs))]
    first_s, first = _round(refs, caches)
    bytes_sent_first = sent()
    second_s, second = _round(refs, caches)
    row = {"store": store, "agents": len(refs), "file_bytes": refs[0].size_bytes,
           "first_round_s": round(first_s, 2), "received_bytes": sum(d.downloaded_bytes for d in first),
           "store_sent_bytes": bytes_sent_first, "aggregate_MB_per_s": round(
               sum(d.downloaded_bytes for d in first) / first_s / 1e6, 1),
           "slowest_agent_s": round(max(d.seconds for d in first), 2),
           "second_round_s": round(second_s, 3), "second_round_bytes": sum(d.downloaded_bytes for d in second),
           "attempts": sum(d.attempts for d in first)}
    for c in caches:
        shutil.rmtree(c.root, ignore_errors=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="edgebench-delivery-"))
    rows = []
    try:
        root = tmp / "controller"
        (root / "sha256").mkdir(parents=True)
        model = tmp / "model.onnx"
        with model.open("wb") as fh:
            for _ in range(args.mb):
                fh.write(os.urandom(1_000_000))
        entry = _entry(model)
        shutil.copyfile(model, root / "sha256" / entry.digest)
        key = os.urandom(32)
        with ArtifactHTTPServer(root, key, "127.0.0.1", 0) as server:
            base = f"http://127.0.0.1:{server.port}"
            refs = [reference(entry, http_location(base, key, entry, f"job-{i:02d}", 600)) for i in range(args.agents)]
            rows.append(bench("http (embedded)", refs, tmp, None, lambda: server.bytes_out))
        rows.extend(_oci(tmp, model, entry, args.agents))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"{args.mb} MB to {args.agents} agents, {os.cpu_count()} CPU(s), {when}")
    for r in rows:
        print(json.dumps(r))


def _oci(tmp: Path, model: Path, entry: ModelEntry, agents: int) -> list[dict[str, Any]]:
    if shutil.which("docker-registry") is None:
        print("(docker-registry not installed: no OCI row)", file=sys.stderr)
        return []
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from edgebench.controller.oci_store import OciStore, TokenIssuer
    from tests.oci_registry import ISSUER, SERVICE, running_registry

    with running_registry(tmp / "registry") as reg:
        store = OciStore(reg.url, TokenIssuer(reg.token_key, reg.token_cert, ISSUER, SERVICE), ca_file=str(reg.ca_file))
        started = time.perf_counter()
        store.push(entry, model)
        push_s = time.perf_counter() - started
        refs = [reference(entry, store.location(entry, 600)) for _ in range(agents)]
        row = bench("oci (docker-registry, TLS + token)", refs, tmp, str(reg.ca_file), lambda: None)
        row["push_s"] = round(push_s, 2)
        row["store_sent_bytes"] = "n/a (the registry keeps no counter)"
        return [row]


if __name__ == "__main__":
    main()
