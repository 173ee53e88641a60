"""Dispatch progress off a terminal: one plain line per state change, untrusted text escaped."""

from __future__ import annotations

import io
from datetime import datetime, timezone

from rich.console import Console

from edgebench.controller.fleet import Dispatched
from edgebench.controller.progress import ProgressView
from edgebench.schemas import JobEvent, JobState
from edgebench.schemas.events import Progress
from tests.helpers import sleep_job


def _event(seq: int, state: JobState, **extra: object) -> JobEvent:
    return JobEvent(job_id="job-000-abcdef", device_id="press-line-3", seq=seq, state=state,
                    at=datetime(2026, 12, 1, 12, 0, seq, tzinfo=timezone.utc), **extra)  # type: ignore[arg-type]


def test_one_plain_line_per_state_change_with_hostile_reasons_escaped() -> None:
    buf = io.StringIO()
    view = ProgressView([Dispatched("press-line-3", sleep_job("job-000-abcdef", epochs=3))],
                        Console(file=buf, force_terminal=False, width=80))
    with view:
        view.on_event(_event(0, JobState.QUEUED), True)
        view.on_event(_event(0, JobState.QUEUED), False)  # redelivered: no new line
        for seq, epoch in ((1, 1), (2, 1), (3, 2)):  # two ticks of epoch 1 make one line
            view.on_event(_event(seq, JobState.IN_PROGRESS,
                                 progress=Progress(phase="measure", epoch=epoch, epochs=3, img_per_s=100.0 * seq)),
                          True)
        view.on_event(_event(4, JobState.FAILED, reason="[red]x[/red]\x1b[2J\nfake line " + "y" * 200), True)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 4, lines
    assert all(ln.startswith("12:00:0") and "press-line-3 job-000-abcdef sleep mlp/fashion_mnist" in ln
               for ln in lines)
    assert lines[0].endswith("QUEUED") and "epoch 1/3" in lines[1] and "epoch 2/3" in lines[2]
    assert "FAILED [red]x[/red]\\x1b[2J\\nfake line " + "y" * 200 in lines[3]  # whole, escaped, one line
    assert "\x1b" not in buf.getvalue()
