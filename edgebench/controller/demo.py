"""The quickstart: embedded broker + local agent + two backends, end to end.

Its results go to a store of their own (demo.db beside the default results.db),
so that later reports of real fleet results are never mixed with demo runs, and
its report says that it shows the demo's sweep."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from edgebench.common.broker import EmbeddedBroker
from edgebench.controller.config import ControllerConfig
from edgebench.controller.errors import ControllerError
from edgebench.controller.fleet import Dispatched, FleetClient
from edgebench.controller.plan import build_job, new_id
from edgebench.controller.progress import ProgressView
from edgebench.controller.render.terminal import render_terminal
from edgebench.controller.report import Selection, build_report
from edgebench.controller.store import ResultStore

PREFERRED = ("keras-jax", "keras-torch", "keras-tensorflow", "torch")


class DemoError(ControllerError, RuntimeError):
    pass


def default_demo_store_url() -> str:
    from platformdirs import user_data_dir

    return f"sqlite:///{Path(user_data_dir('edgebench')) / 'demo.db'}"


@dataclass(frozen=True)
class DemoOptions:
    store_url: str
    dataset_root: Path
    backends: tuple[str, ...] = ()
    mlp_samples: int = 60000
    cnn_samples: int = 4096
    epochs: int = 2
    timeout_s: float = 900


def run_demo(opts: DemoOptions, console: Console) -> str:
    """Returns the sweep id. Everything started here is stopped before returning."""
    with tempfile.TemporaryDirectory(prefix="edgebench-demo-") as tmp, EmbeddedBroker() as broker:
        console.print(f"embedded MQTT broker on {broker.url}")
        agent = _start_agent(broker.url, Path(tmp) / "agent", opts.dataset_root)
        try:
            cfg = ControllerConfig(broker_url=broker.url, fleet="demo", store_url=opts.store_url)
            store = ResultStore(cfg.store_url)
            with FleetClient(cfg, store) as fleet:
                status = _wait_online(fleet, agent, "demo-box")
                available = [b.backend for b in status.backends if b.available]
                backends = list(opts.backends) or [b for b in PREFERRED if b in available][:2]
                missing = [b for b in backends if b not in available]
                if missing or not backends:
                    raise DemoError(f"backends not installed here: {missing or 'none'} (available: {available})")
                fashion_present = _dataset_present(opts.dataset_root, "fashion_mnist")
                console.print(
                    f"backends: {', '.join(backends)}; Fashion-MNIST: "
                    + ("real files" if fashion_present else
                       f"not found under {opts.dataset_root}, using synthetic data of the same shape"),
                    soft_wrap=True,
                )
                sweep_id = new_id("demo")
                plan: list[Dispatched] = []
                for backend in backends:
                    for workload, samples in (("fashion-mnist-mlp", opts.mlp_samples),
                                              ("fashion-mnist-cnn", opts.cnn_samples)):
                        job = build_job({"backend": backend, "workload": workload, "samples": samples,
                                         "epochs": opts.epochs, "synthetic": not fashion_present,
                                         "timeout_s": opts.timeout_s},
                                        f"{sweep_id}-{len(plan):02d}", sweep_id)
                        plan.append(Dispatched("demo-box", job))
                fleet.dispatch(plan)
                with ProgressView(plan, console) as view:
                    still = fleet.wait({(p.job.job_id, p.device_id) for p in plan}, opts.timeout_s, view.on_event)
                if still:
                    raise DemoError(f"{len(still)} job(s) did not finish within {opts.timeout_s:g} s")
            report = build_report(store.results(sweep_id=sweep_id), baseline=backends[0],
                                  selection=Selection(sweep=sweep_id), store_url=store.url)
            render_terminal(report, console)
            console.print(f"results stored in {store.url} (sweep {sweep_id}), apart from fleet results: "
                          f"`controller --store {store.url} report --sweep {sweep_id}` shows them again",
                          soft_wrap=True)
            return sweep_id
        finally:
            _stop(agent)


def _dataset_present(root: Path, dataset: str) -> bool:
    """Asks the agent's CLI (the side that knows datasets; the controller does not import it)."""
    proc = subprocess.run([sys.executable, "-m", "edgebench.agent.cli", "datasets", "--json", "--dataset-root",
                           str(root)], capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise DemoError(f"agent datasets failed: {proc.stderr.strip()[-500:]}")
    return any(d["dataset"] == dataset and d["present"] for d in json.loads(proc.stdout))


def _start_agent(broker_url: str, state_dir: Path, dataset_root: Path) -> subprocess.Popen[bytes]:
    log = (state_dir.parent / "agent.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "edgebench.agent.cli", "run", "--broker", broker_url, "--device-id", "demo-box",
         "--fleet", "demo", "--state-dir", str(state_dir), "--dataset-root", str(dataset_root),
         "--log-level", "WARNING"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _wait_online(fleet: FleetClient, agent: subprocess.Popen[bytes], device_id: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if agent.poll() is not None:
            raise DemoError(f"the local agent exited with status {agent.returncode}")
        fleet.pump(0.2)
        status = fleet.statuses.get(device_id)
        if status is not None and status.online:
            return status
    raise DemoError("the local agent did not come online within 120 s")


def _stop(agent: subprocess.Popen[bytes]) -> None:
    if agent.poll() is None:
        agent.terminate()
        try:
            agent.wait(20)
        except subprocess.TimeoutExpired:
            agent.kill()
