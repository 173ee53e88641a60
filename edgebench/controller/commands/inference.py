"""``controller inference report``: LoadGen results per device x runtime x precision."""

from __future__ import annotations

import typer

from edgebench.controller import inference_report
from edgebench.controller.commands._options import OutOpt, SweepIdOpt, out, read_store
from edgebench.controller.render.inference_tables import inference_section
from edgebench.controller.render.markdown import render_document
from edgebench.controller.render.table import Document

app = typer.Typer(help="Inference results under MLPerf LoadGen.", no_args_is_help=True)


def markdown(rows: list[inference_report.InferenceRow]) -> str:
    """The report's inference section alone, as Markdown: the tables ``controller report`` shows."""
    section = inference_section(inference_report.latest(rows))
    if section is None:
        return "No inference results (MLPerf LoadGen) match the selection.\n"
    return render_document(Document("edgebench inference report", sections=(section,)))


@app.command("report", epilog="Example: controller inference report --sweep inference-1a2b --out inference.md")
def report(ctx: typer.Context, sweep: SweepIdOpt = None, out_path: OutOpt = None) -> None:
    """Latency percentiles, LoadGen's verdict, equivalence, energy, and the best runtime per device."""
    store = read_store(ctx)
    results = [r for r in (row.result() for row in store.results(sweep_id=sweep)) if r is not None]
    text = markdown(inference_report.rows(results))
    if out_path is not None:
        out_path.write_text(text)
        out.print(f"wrote {out_path}")
    else:
        print(text, end="" if text.endswith("\n") else "\n")
