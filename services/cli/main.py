"""Entry point of the `orchestrator` command.

Each command group lives in its own module and is registered here; modules import the
actors they run lazily, so `orchestrator --help` stays fast.
"""

from __future__ import annotations

import os
import sys

import typer

from services.cli import (
    admin,
    chat,
    config,
    console,
    contracts,
    doctor,
    projects,
    queues,
    runs,
    secrets,
    status,
    tasks,
    up,
    watch,
    workers,
)
from shared.logs import configure_logging

app = typer.Typer(
    name="orchestrator",
    help="Codegen orchestrator: conversation in, running software out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(queues.app, name="queues")
app.add_typer(contracts.app, name="contracts")
app.add_typer(workers.app, name="workers")
projects.app.add_typer(secrets.app, name="secret")
admin.app.command("rotate-secrets")(secrets.rotate_secrets)
app.add_typer(projects.app, name="project")
tasks.app.command("watch")(watch.watch)
tasks.app.command("log")(runs.log)
admin.app.command("budget")(runs.budget)
app.add_typer(tasks.app, name="task")
app.add_typer(admin.app, name="admin")
app.command("up")(up.up)
app.command("run")(up.run)
app.command("chat")(chat.chat)
app.command("console")(console.console)
app.command("doctor")(doctor.doctor)
app.command("config")(config.config)
app.command("usage")(runs.usage)
app.command("status")(status.status)


def main() -> None:
    """Run the command line. Commands other than `up` and `run` log warnings and errors only
    (their output is for people), unless ORCHESTRATOR_LOG_LEVEL says otherwise."""
    try:
        configure_logging(
            os.environ.get("ORCHESTRATOR_LOG_LEVEL", "WARNING"),
            "json" if os.environ.get("ORCHESTRATOR_LOG_FORMAT") == "json" else "console",
        )
    except ValueError as error:
        sys.stderr.write(f"bad configuration ORCHESTRATOR_LOG_LEVEL: {error}\n")
        raise SystemExit(2) from None
    app()


if __name__ == "__main__":
    main()
