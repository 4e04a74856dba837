"""`orchestrator project secret set|list|rm` (through the API) and `orchestrator admin
rotate-secrets` (on the database, like `admin migrate`).

A value is never an argument (it would show in process lists and shell history): `set`
reads it from a hidden prompt on a terminal, else the first line of stdin:

    printf '%s\n' "$BOT_TOKEN" | orchestrator project secret set <project-id> BOT_TOKEN

`list` shows names and dates only: no command or route reads a value back.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from services.cli.projects import JsonFlag, call_api, emit
from shared.settings import Settings

__all__ = ["app", "rotate_secrets"]

app = typer.Typer(
    help="A project's secrets: set (value from a prompt or stdin), list names, remove.",
    no_args_is_help=True,
)
err = Console(stderr=True)


def _read_value(name: str) -> str:
    """The value from a hidden prompt (a terminal) or the first line of stdin."""
    if sys.stdin.isatty():
        value: str = typer.prompt(f"value of {name}", hide_input=True)
    else:
        value = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if not value.strip() or any(char in value for char in "\r\n\0"):
        err.print(f"[red]error[/] the value of {name} must be one non-blank line")
        raise typer.Exit(2) from None
    return value


@app.command("set")
def set_secret(
    project_id: Annotated[str, typer.Argument(help="The project's id.")],
    name: Annotated[str, typer.Argument(help="The variable the project reads, e.g. BOT_TOKEN.")],
) -> None:
    """Set a secret; the value comes from a hidden prompt or stdin, never an argument."""
    value = _read_value(name)
    info = call_api(lambda api: api.put_secret(project_id, name, value))
    err.print(f"secret {info.name} set on project {project_id} (encrypted; never shown again)")


@app.command("list")
def list_secrets(project_id: str, as_json: JsonFlag = False) -> None:
    """The names of a project's secrets (never their values)."""
    rows = call_api(lambda api: api.list_secrets(project_id))
    table = Table(title=f"Secrets of {project_id}")
    for column in ("name", "set at"):
        table.add_column(column)
    for row in rows:
        table.add_row(row.name, row.updated_at.isoformat(timespec="seconds"))
    emit(rows, table, as_json=as_json)


@app.command("rm")
def remove_secret(project_id: str, name: str) -> None:
    """Remove a secret (the next deploy runs without it)."""
    call_api(lambda api: api.delete_secret(project_id, name))
    err.print(f"secret {name} removed from project {project_id}")


async def _rotate(settings: Settings) -> int:
    from services.api.main import prepare_database
    from services.api.secrets.service import rotate_all
    from shared.secret_box import secret_box_from_settings

    box = secret_box_from_settings(settings)
    database = await prepare_database(settings)
    try:
        async with database.sessionmaker() as session:
            count = await rotate_all(session, box)
            await session.commit()
            return count
    finally:
        await database.close()


def rotate_secrets() -> None:
    """Re-encrypt every project secret under the first key of ORCHESTRATOR_SECRETS__KEYS
    (afterwards the older keys can be removed from the list)."""
    from shared.secret_box import SecretBoxError

    try:
        count = asyncio.run(_rotate(Settings()))
    except SecretBoxError as error:
        err.print(f"[red]error[/] {error}; nothing was changed")
        raise typer.Exit(1) from None
    err.print(f"{count} secret(s) re-encrypted under the first key")
