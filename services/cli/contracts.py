"""`orchestrator contracts export DIR`: JSON Schemas and the AsyncAPI document."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="The contracts: export JSON Schemas and the AsyncAPI document.")


@app.command("export")
def export(
    directory: Path = typer.Argument(Path("docs"), help="Directory to write into."),  # noqa: B008
) -> None:
    """Write a JSON Schema per DTO and message, and an AsyncAPI 3.0 document of every queue."""
    from shared.exports import export_all

    for path in export_all(directory):
        typer.echo(str(path))
