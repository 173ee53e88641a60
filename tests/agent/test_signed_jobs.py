"""Signed jobs end to end: an agent given the controller's public key runs
signed jobs and rejects unsigned or altered ones, naming `signature`."""

from __future__ import annotations

import json

from edgebench.common.signing import generate_keypair, save_private_key, save_public_key, sign_envelope
from edgebench.controller.fleet import Dispatched, FleetClient
from edgebench.controller.store import ResultStore
from edgebench.schemas import Envelope, JobState
from edgebench.schemas.envelope import encode
from tests.helpers import RawClient, run_jobs, sleep_job, wait_online


def test_signed_jobs(start_agent, controller_cfg, mosquitto, fleet, tmp_path) -> None:
    private, public = generate_keypair()
    save_private_key(private, tmp_path / "jobs.key")
    save_public_key(public, tmp_path / "jobs.pub")
    config = tmp_path / "agent.yaml"
    config.write_text(f"device_id: box1\njob_public_key: {tmp_path / 'jobs.pub'}\n")
    agent = start_agent("box1", config=config)
    cfg = controller_cfg.model_copy(update={"signing_key": tmp_path / "jobs.key"})
    store = ResultStore(cfg.store_url)
    with FleetClient(cfg, store) as fc:
        wait_online(fc, "box1", agents=[agent])
        run_jobs(fc, [Dispatched("box1", sleep_job("j-signed"))])
    assert store.results(job_id="j-signed")[0].outcome == "OK"

    raw = RawClient(mosquitto.url, fleet, "box1")
    try:
        raw.send_job(sleep_job("j-unsigned"))
        signed = sign_envelope(Envelope.of(sender="ctl", body=sleep_job("j-altered")), private)
        doc = json.loads(encode(signed))
        doc["body"]["workload"]["epochs"] = 3  # tampered after signing
        raw.send(doc)
        evs = raw.events(20, until=lambda e: len(e) == 2)
    finally:
        raw.close()
    assert [(e.job_id, e.state, e.field) for e in evs] == [
        ("j-unsigned", JobState.REJECTED, "signature"), ("j-altered", JobState.REJECTED, "signature")]
