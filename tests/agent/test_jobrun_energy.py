"""Energy per image and per epoch count every repeat, as the sampler's energy does."""

from __future__ import annotations

import sys
from pathlib import Path

from edgebench.agent.config import LocalBackend
from edgebench.agent.executors import LocalExecutor, install_runner_code
from edgebench.agent.fingerprint import machine_fingerprint
from edgebench.agent.jobrun import JobRun
from edgebench.agent.telemetry import Sampler
from edgebench.agent.telemetry.nogpu import NoGpuTelemetry
from edgebench.schemas import JobState
from tests.helpers import sleep_job


class CountingSampler(Sampler):
    """The real sampler; remembers what the job run told it at stop()."""

    seen: tuple[int | None, int | None] = (None, None)

    def stop(self, window_images=None, measured_epochs=None, memory_policy=None):  # type: ignore[no-untyped-def]
        CountingSampler.seen = (window_images, measured_epochs)
        return super().stop(window_images, measured_epochs, memory_policy)


def test_repeats_count_every_window(tmp_path: Path) -> None:
    home = install_runner_code(tmp_path / "code")
    job = sleep_job("j-energy", epochs=3, steps=4, repeats=2)
    run = JobRun(job=job, attempt=1, device_id="box",
                 executor=LocalExecutor(LocalBackend(python=sys.executable), home),
                 job_dir=tmp_path / "job", dataset_root=tmp_path,
                 fingerprint=lambda libs: machine_fingerprint(libs, []),
                 on_progress=lambda p: None, sampler=CountingSampler(NoGpuTelemetry(), 0.05))
    outcome = run.run()
    assert outcome.state is JobState.SUCCEEDED, outcome.reason
    # 2 repeats x 2 measured epochs x 4 batches x 32 images
    assert CountingSampler.seen == (2 * 2 * 4 * 32, 2 * 2)
