"""``controller schema export DIR``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgebench.controller.commands._options import out
from edgebench.schemas.export import export

app = typer.Typer(help="The message contract as JSON Schema.", no_args_is_help=True)


@app.command("export", epilog="Example: controller schema export edgebench/schemas/json")
def export_cmd(directory: Annotated[Path, typer.Argument(help="Output directory.")] = Path("schemas/json")) -> None:
    """Write one JSON Schema file per message type."""
    for path in export(directory):
        out.print(f"wrote {path}")
