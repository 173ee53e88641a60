"""The metrics endpoint for real: start it on a free port, scrape over HTTP, parse."""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edgebench.agent.telemetry import NoGpuTelemetry, ReplayTelemetry, Sampler
from edgebench.agent.telemetry.prometheus import MetricsSource, start_metrics_server

from .conftest import nvml_traces


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


@pytest.mark.parametrize("path", nvml_traces()[:1], ids=lambda p: p.name)
def test_dcgm_names_and_labels_from_a_running_sampler(path: Path, busy_child: subprocess.Popen[str]) -> None:
    telemetry = ReplayTelemetry(path)
    sampler = Sampler(telemetry, interval_s=0.05, job_id="job-42")
    sampler.start(busy_child.pid)
    server = start_metrics_server(0, sampler, device_id="edge-01", addr="127.0.0.1")
    try:
        metrics = scrape(server.port)
        latest = sampler.latest()
        assert latest is not None
    finally:
        server.close()
        sampler.stop()
    inventory = {g.index: g for g in telemetry.inventory()}
    for name in (
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_DEV_MEM_COPY_UTIL",
        "DCGM_FI_DEV_SM_CLOCK",
        "DCGM_FI_DEV_MEM_CLOCK",
        "DCGM_FI_DEV_FB_USED",
        "DCGM_FI_DEV_POWER_USAGE",
        "DCGM_FI_DEV_GPU_TEMP",
    ):
        assert name in metrics, name
        for labels, _ in metrics[name]:
            gpu = int(labels["gpu"])
            assert labels["UUID"] == inventory[gpu].uuid
            assert labels["modelName"] == inventory[gpu].name
            assert labels["device"] == f"nvidia{gpu}" and labels["device_id"] == "edge-01" and labels["Hostname"]
    power = {int(lb["gpu"]): v for lb, v in metrics["DCGM_FI_DEV_POWER_USAGE"]}
    trace = getattr(telemetry, "trace", None)
    traced = {d["index"] for d in trace.ticks[0].raw["devices"]} if trace else set(inventory)
    assert set(power) == traced and all(v > 0 for v in power.values())
    # energy: only from GPUs with a counter (mJ); a GPU without one is absent, not 0
    with_counter = {g.index for g in latest.gpus if g.energy_mj is not None}
    assert {int(lb["gpu"]) for lb, _ in metrics.get("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", [])} == with_counter
    fb = {int(lb["gpu"]): v for lb, v in metrics["DCGM_FI_DEV_FB_USED"]}
    for g in latest.gpus:
        if g.mem_used_bytes is not None:
            assert fb[g.index] == pytest.approx(g.mem_used_bytes / 2**20, rel=0.2)  # MiB
    (job,) = metrics["edgebench_job_running"]
    assert job == ({"Hostname": job[0]["Hostname"], "device_id": "edge-01", "job_id": "job-42"}, 1.0)
    assert metrics["edgebench_runner_rss_bytes"][0][1] > 0
    assert "edgebench_telemetry_sample_timestamp_seconds" in metrics


def test_cpu_only_box_between_and_during_jobs(busy_child: subprocess.Popen[str]) -> None:
    source = MetricsSource(NoGpuTelemetry())
    server = start_metrics_server(0, source, device_id="cpu-box", addr="127.0.0.1")
    try:
        idle = scrape(server.port)
        assert not any(name.startswith("DCGM_") for name in idle)  # no GPU: no zeros either
        assert idle["edgebench_job_running"][0][1] == 0.0
        assert "edgebench_runner_cpu_percent" not in idle

        sampler = Sampler(NoGpuTelemetry(), interval_s=0.05)
        sampler.start(busy_child.pid)
        source.attach(sampler, job_id="job-7")
        assert busy_child.stdout is not None
        busy_child.stdout.readline()  # "begin ...": the child is alive and busy now
        busy = scrape(server.port)
        assert busy["edgebench_job_running"][0][0]["job_id"] == "job-7"
        assert busy["edgebench_runner_rss_bytes"][0][1] > 0
        source.detach()
        sampler.stop()
        after = scrape(server.port)
        assert after["edgebench_job_running"][0][1] == 0.0
    finally:
        server.close()


def test_metrics_over_tls_with_client_certificates(tmp_path: Path) -> None:
    """HTTPS with the project's own PKI: plain HTTP is refused, a scraper without a client certificate too."""
    import ssl
    import urllib.error

    from edgebench.common.pki import init_pki, issue_device

    layout = init_pki(tmp_path / "pki")
    client = issue_device(layout, "scraper")
    server = start_metrics_server(0, MetricsSource(NoGpuTelemetry()), device_id="tls-box", addr="127.0.0.1",
                                  certfile=str(layout.server_cert), keyfile=str(layout.server_key),
                                  client_cafile=str(layout.ca_cert))
    url = f"https://127.0.0.1:{server.port}/metrics"
    try:
        ctx = ssl.create_default_context(cafile=str(layout.ca_cert))
        ctx.load_cert_chain(str(client / "client.crt"), str(client / "client.key"))
        with urllib.request.urlopen(url, context=ctx, timeout=5) as resp:
            text = resp.read().decode()
        assert "edgebench_job_running" in text and 'device_id="tls-box"' in text
        anonymous = ssl.create_default_context(cafile=str(layout.ca_cert))
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(url, context=anonymous, timeout=5).read()
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5).read()
    finally:
        server.close()


def test_tls_needs_a_certificate_and_a_key() -> None:
    with pytest.raises(ValueError, match="both a certificate and a key"):
        start_metrics_server(0, NoGpuTelemetry(), device_id="x", addr="127.0.0.1", certfile="/nonexistent")
    with pytest.raises(ValueError, match="need TLS"):
        start_metrics_server(0, NoGpuTelemetry(), device_id="x", addr="127.0.0.1", client_cafile="/ca.crt")
