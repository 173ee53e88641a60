"""Live progress view of dispatched jobs (rich)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from edgebench.controller.fleet import Dispatched
from edgebench.schemas import JobEvent, JobState

_STYLE = {
    JobState.SUCCEEDED: "green", JobState.FAILED: "red", JobState.TIMED_OUT: "red",
    JobState.REJECTED: "red", JobState.CANCELED: "yellow",
}


class ProgressView:
    def __init__(self, plan: list[Dispatched], console: Console):
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
            desc = (f"{item.device_id:<12} {j.backend.value:<17} {wl.model}/{wl.dataset} "
                    f"bs{wl.batch_size} {j.precision.value}")
            self.tasks[(j.job_id, item.device_id)] = self.progress.add_task(
                desc, total=wl.epochs, state="DISPATCHED")

    def __enter__(self) -> ProgressView:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def on_event(self, ev: JobEvent, new: bool) -> None:
        task = self.tasks.get((ev.job_id, ev.device_id))
        if task is None:
            return
        text = ev.state.value
        completed: float | None = None
        if ev.progress is not None:
            p = ev.progress
            text = f"{p.phase} epoch {p.epoch}/{p.epochs}"
            if p.img_per_s:
                text += f" {p.img_per_s:,.0f} img/s"
            completed = max(0, p.epoch - 1)
        style = _STYLE.get(ev.state)
        if style:
            detail = ""
            if ev.result is not None:
                detail = f" {ev.result.summary.window_img_per_s:,.0f} img/s"
            elif ev.reason:
                detail = f" {ev.error_type.value + ': ' if ev.error_type else ''}{ev.reason[:80]}"
            text = f"[{style}]{ev.state.value}{detail}[/{style}]"
            completed = self.progress.tasks[task].total
        if completed is not None:
            self.progress.update(task, completed=completed, state=text)
        else:
            self.progress.update(task, state=text)
