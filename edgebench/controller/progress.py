"""Progress of dispatched jobs: a live rich view on a terminal, one plain line per
state change anywhere else (a pipe, a file, CI), so a log shows each job's
QUEUED, IN_PROGRESS and outcome as they happen, in full, without 80-column cuts."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from edgebench.common.console import markup, plain
from edgebench.controller.fleet import Dispatched
from edgebench.schemas import JobEvent, JobState

_STYLE = {
    JobState.SUCCEEDED: "green", JobState.FAILED: "red", JobState.TIMED_OUT: "red",
    JobState.REJECTED: "red", JobState.CANCELED: "yellow",
}


def describe_event(ev: JobEvent) -> str:
    """The state an event reports, with its epoch and img/s, or its outcome's figure or reason (plain text)."""
    if ev.progress is not None and ev.state not in _STYLE:
        p = ev.progress
        text = f"{p.phase} epoch {p.epoch}/{p.epochs}"
        return text + (f" {p.img_per_s:,.0f} img/s" if p.img_per_s else "")
    text = ev.state.value
    if ev.result is not None:
        text += f" {ev.result.summary.window_img_per_s:,.1f} img/s"
    elif ev.reason:
        text += f" {ev.error_type.value + ': ' if ev.error_type else ''}{ev.reason}"
    return plain(text)


class ProgressView:
    def __init__(self, plan: list[Dispatched], console: Console):
        self.console = console
        self.live = console.is_terminal
        self.labels: dict[tuple[str, str], str] = {}
        self.last: dict[tuple[str, str], tuple[object, ...]] = {}
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[state]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.tasks: dict[tuple[str, str], TaskID] = {}
        for item in plan:
            j = item.job
            wl = j.workload
            key = (j.job_id, item.device_id)
            self.labels[key] = (f"{item.device_id} {j.job_id} {j.backend.value} {wl.model}/{wl.dataset} "
                                f"bs{wl.batch_size} {j.precision.value}")
            if self.live:
                desc = (f"{markup(item.device_id):<12} {j.backend.value:<17} {wl.model}/{wl.dataset} "
                        f"bs{wl.batch_size} {j.precision.value}")
                self.tasks[key] = self.progress.add_task(desc, total=wl.epochs, state="DISPATCHED")

    def __enter__(self) -> ProgressView:
        if self.live:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.progress.stop()

    def on_event(self, ev: JobEvent, new: bool) -> None:
        key = (ev.job_id, ev.device_id)
        if key not in self.labels:
            return
        if not self.live:
            self._line(key, ev)
            return
        task = self.tasks[key]
        text = markup(describe_event(ev))
        completed: float | None = None
        if ev.progress is not None:
            completed = max(0, ev.progress.epoch - 1)
        style = _STYLE.get(ev.state)
        if style:
            text = f"[{style}]{text}[/{style}]"
            completed = self.progress.tasks[task].total
        if completed is not None:
            self.progress.update(task, completed=completed, state=text)
        else:
            self.progress.update(task, state=text)

    def _line(self, key: tuple[str, str], ev: JobEvent) -> None:
        """One line per change of state; a new phase or epoch of IN_PROGRESS counts as one, so a long
        job shows progress in a log, but a redelivered event or another progress tick within one epoch does not."""
        p = ev.progress
        step = (ev.state, p.phase, p.epoch) if p is not None else (ev.state,)
        if self.last.get(key) == step:
            return
        self.last[key] = step
        line = f"{ev.at:%H:%M:%S} {plain(self.labels[key])} {describe_event(ev)}\n"
        self.console.file.write(line)
        self.console.file.flush()
