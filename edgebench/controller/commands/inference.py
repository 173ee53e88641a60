"""``controller inference report``: LoadGen results per device x runtime x precision."""

from __future__ import annotations

import typer

from edgebench.controller import inference_report
from edgebench.controller.commands._options import OutOpt, SweepIdOpt, config, console
from edgebench.controller.store import ResultStore

app = typer.Typer(help="Inference results under MLPerf LoadGen.", no_args_is_help=True)


@app.command("report")
def report(ctx: typer.Context, sweep: SweepIdOpt = None, out: OutOpt = None) -> None:
    """Latency percentiles, LoadGen's verdict, equivalence, energy, and the best runtime per device."""
    store = ResultStore(config(ctx).store_url)
    results = [r for r in (row.result() for row in store.results(sweep_id=sweep)) if r is not None]
    text = inference_report.markdown(inference_report.rows(results))
    if out is not None:
        out.write_text(text)
        console.print(f"wrote {out}")
    else:
        console.print(text, markup=False, highlight=False)
