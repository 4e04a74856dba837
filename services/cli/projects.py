"""`orchestrator project create|list|show|archive|deploys|rollback`: projects through the
REST API.

The API is found at `ORCHESTRATOR_API__URL` (or host/port), else at the URL a running
`orchestrator up` recorded; the credential is `ORCHESTRATOR_API__KEY` (never an argument,
so it stays out of process lists), else the local admin's key that `orchestrator up` keeps in
`<data_dir>/secrets/cli.key`. `--json` prints the DTOs for scripts.

`deploys ID` prints the project's deploy history (newest first: commit, task, outcome, URL,
when); `rollback ID [--to SHA]` queues a deploy task of an earlier successful release (the
one before the current, or SHA: a full sha or an unambiguous prefix of a commit the project
deployed successfully) and prints it; `orchestrator task watch` follows it.

`archive` moves a project to `archived` (final: no task can be created for it any more);
infra-service then stops its deployment and releases its port on its next reconcile pass.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from shared.api_client import ApiClient, ApiClientError, ApiStatusError
from shared.api_client.schemas import (
    MODULES,
    DeployDTO,
    ProjectCreateBody,
    ProjectImportBody,
    ProjectUpdate,
)
from shared.chat.po_profile import CORRELATION_ID_ENV
from shared.contracts import ProjectDTO, ProjectStatus
from shared.embedded import CLI_KEY, read_runtime, read_secret
from shared.settings import Settings

__all__ = ["JsonFlag", "app", "call_api", "emit"]

app = typer.Typer(
    help="Projects: create, list, show, archive; their deploys and rollback.",
    no_args_is_help=True,
)
T = TypeVar("T")
err = Console(stderr=True)


CLI_TIMEOUT_S = 30.0
"""How long a command waits for the API: an `orchestrator up` still starting its actors, on a
busy machine, can take longer than a client's usual 10 s to answer its first request."""


def _client(settings: Settings) -> ApiClient:
    """A client for the configured API, or for the one a running `orchestrator up` recorded."""
    url = settings.api.base_url
    if not settings.api.url and "ORCHESTRATOR_API__PORT" not in os.environ:
        info = read_runtime(settings)
        url = info.api_url if info else url
    secret = settings.api.key or settings.api.service_key
    key = secret.get_secret_value() if secret else read_secret(settings, CLI_KEY)
    return ApiClient(url, key=key, timeout_s=CLI_TIMEOUT_S)


def call_api(work: Callable[[ApiClient], Awaitable[T]]) -> T:
    """Run one call against the API; a clear message and exit code 1 on failure."""

    async def _run() -> T:
        async with _client(Settings()) as client:
            return await work(client)

    try:
        return asyncio.run(_run())
    except ApiStatusError as error:
        err.print(f"[red]error[/] {error.status_code} {error.code}: {error.body.message}")
        for problem in error.fields:
            err.print(f"  {problem.field}: {problem.problem}")
        raise typer.Exit(1) from None
    except ApiClientError as error:
        err.print(f"[red]error[/] {error}")
        raise typer.Exit(1) from None


def emit(items: BaseModel | Sequence[BaseModel], table: Table, *, as_json: bool) -> None:
    """Print DTOs as JSON (one document) or as the given rich table."""
    if as_json:
        if isinstance(items, BaseModel):
            typer.echo(items.model_dump_json(indent=2))
        else:
            typer.echo("[" + ",".join(item.model_dump_json() for item in items) + "]")
        return
    Console(width=160).print(table)


def project_table(projects: Sequence[ProjectDTO], *, title: str = "Projects") -> Table:
    """Projects as a table."""
    table = Table(title=title)
    for column in ("id", "name", "status", "owner", "repository", "description"):
        table.add_column(column)
    for project in projects:
        table.add_row(
            project.id,
            project.name,
            project.status.value,
            str(project.owner_id or "-"),
            project.repository_url or "-",
            (project.description or "")[:60],
        )
    return table


JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _modules(modules: str) -> list[str]:
    """The `--modules` list; exit 2 naming the unknown ones (or that none was given)."""
    wanted = [part.strip() for part in modules.split(",") if part.strip()]
    unknown = [part for part in wanted if part not in MODULES]
    if unknown or not wanted:
        err.print(
            f"[red]error[/] --modules: unknown module(s) {', '.join(unknown) or '(none given)'}"
            f" (known: {', '.join(MODULES)})"
        )
        raise typer.Exit(2)
    return wanted


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Project name.")],
    description: Annotated[str | None, typer.Option(help="What the project is.")] = None,
    owner_id: Annotated[
        int | None, typer.Option(help="Owner's user id (admin/service keys).")
    ] = None,
    modules: Annotated[
        str, typer.Option(help="Comma-separated modules: backend, telegram (a bot), or both.")
    ] = "backend",
    as_json: JsonFlag = False,
) -> None:
    """Create a draft project with its modules (`--modules backend,telegram`)."""
    wanted = _modules(modules)
    body = ProjectCreateBody.model_validate(
        {"name": name, "description": description, "modules": wanted}
    )
    project = call_api(lambda api: api.create_project(body, owner_id=owner_id))
    emit(project, project_table([project], title="Created"), as_json=as_json)


@app.command("import")
def import_(
    name: Annotated[str, typer.Argument(help="Project name.")],
    repo: Annotated[
        str,
        typer.Option(
            "--repo",
            help="The existing repository: a git URL (https, ssh, git, user@host:path) or a "
            "local path inside the API's import roots.",
        ),
    ],
    description: Annotated[str | None, typer.Option(help="What the project is.")] = None,
    owner_id: Annotated[
        int | None, typer.Option(help="Owner's user id (admin/service keys).")
    ] = None,
    modules: Annotated[
        str, typer.Option(help="Comma-separated modules the deploy runs: backend, telegram.")
    ] = "backend",
    as_json: JsonFlag = False,
) -> None:
    """Create a project from an existing git repository (not scaffolded): its branches are
    mirrored into the project's own repository, ready for tasks and deploys."""
    wanted = _modules(modules)
    local = Path(repo).expanduser()
    if "://" not in repo and not repo.startswith("-") and local.exists():
        repo = str(local.resolve())  # the API resolves nothing relative to this shell
    body = ProjectImportBody.model_validate(
        {"name": name, "description": description, "modules": wanted, "repo_url": repo}
    )
    project = call_api(lambda api: api.import_project(body, owner_id=owner_id))
    emit(project, project_table([project], title="Imported"), as_json=as_json)


@app.command("list")
def list_projects(
    status: Annotated[ProjectStatus | None, typer.Option(help="Only this status.")] = None,
    owner_id: Annotated[int | None, typer.Option(help="Only this owner's.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: JsonFlag = False,
) -> None:
    """List projects, newest first."""
    page = call_api(
        lambda api: api.list_projects(status=status, owner_id=owner_id, limit=limit, offset=offset)
    )
    title = f"Projects {offset + 1}-{offset + len(page.items)} of {page.total}"
    emit(page.items, project_table(page.items, title=title), as_json=as_json)


@app.command("show")
def show(project_id: str, as_json: JsonFlag = False) -> None:
    """Show one project."""
    project = call_api(lambda api: api.get_project(project_id))
    emit(project, project_table([project], title=project.name), as_json=as_json)


@app.command("archive")
def archive(project_id: str, as_json: JsonFlag = False) -> None:
    """Archive a project: final; its deployment is stopped and its port released."""

    async def _archive(api: ApiClient) -> tuple[ProjectDTO, bool]:
        project = await api.get_project(project_id)
        if project.status == ProjectStatus.ARCHIVED:
            return project, False
        change = ProjectUpdate(status=ProjectStatus.ARCHIVED)
        return await api.update_project(project_id, change), True

    project, changed = call_api(_archive)
    if not as_json:
        note = "archived" if changed else "already archived"
        err.print(
            f"project {project.name} ({project.id}) {note}; infra-service removes its"
            " deployment and releases its port on its next reconcile pass"
        )
    emit(project, project_table([project], title="Archived"), as_json=as_json)


def deploy_table(deploys: Sequence[DeployDTO], *, title: str) -> Table:
    """Deploys as a table."""
    table = Table(title=title)
    for column in ("when", "commit", "kind", "outcome", "health", "restarts", "task", "url"):
        table.add_column(column)
    for deploy in deploys:
        outcome = deploy.outcome.value
        if deploy.previous_serves:
            outcome += " (previous release serves)"
        table.add_row(
            deploy.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            deploy.sha[:12],
            deploy.kind,
            outcome,
            deploy.health.value if deploy.health else "-",
            "-" if deploy.restarts is None else str(deploy.restarts),
            deploy.task_id,
            deploy.url or "-",
        )
    return table


@app.command("deploys")
def deploys(
    project_id: str,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: JsonFlag = False,
) -> None:
    """The deploy history of a project, newest first."""
    page = call_api(lambda api: api.list_deploys(project_id, limit=limit, offset=offset))
    title = f"Deploys {offset + 1}-{offset + len(page.items)} of {page.total}"
    emit(page.items, deploy_table(page.items, title=title), as_json=as_json)


@app.command("rollback")
def rollback(
    project_id: str,
    to: Annotated[
        str | None,
        typer.Option("--to", help="Commit (sha or prefix) deployed successfully before."),
    ] = None,
    correlation_id: Annotated[
        str | None,
        typer.Option(
            envvar=CORRELATION_ID_ENV,
            help="Keep this correlation id on the rollback task (a chat turn's; a PO worker's "
            f"agent has it in {CORRELATION_ID_ENV}). Default: a new one.",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Redeploy the release before the current one (or --to SHA) through the deploy flow."""
    task = call_api(lambda api: api.rollback(project_id, to, correlation_id=correlation_id or None))
    if as_json:
        typer.echo(task.model_dump_json(indent=2))
        return
    typer.echo(f"rollback task {task.id} queued ({task.spec}); follow it with:")
    typer.echo(f"  orchestrator task watch {task.id}")
