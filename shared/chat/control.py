"""`ChatControl`: the chat's control commands, answered at once through the API.

`/cancel [task]`, `/rollback [project] [sha]`, `/deploys [project]` and `/queue [project]` do
not go to the PO agent: a front door (the Telegram bot, `orchestrator chat`) calls the API
with the user's credential (or, for the bot, its own on the user's behalf: every lookup is
filtered by the user's id) and answers with what happened, or why nothing did.

- `/cancel` without an argument cancels the user's only queued or running task; with
  several, it lists them and asks for one (an id or its first characters).
- `/rollback` and `/deploys` without a project use the user's project that deployed last
  (or their only project).
- A command keeps the correlation id of its chat turn (`handle(..., correlation_id=)`): a
  rollback's deploy task carries it, and the API logs a cancel with it.
- `/secret [project] NAME` opens a secret prompt (`shared.chat.secret_prompt`, when the
  front door gives one); `/secrets [project]` lists the names of the project's secrets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from shared.api_client import (
    ApiClient,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    ValidationError,
    refusal_text,
)
from shared.api_client.schemas import DeployDTO
from shared.chat.sink import ChatUser
from shared.contracts import ProjectDTO, TaskDTO, TaskStatus, TaskType

if TYPE_CHECKING:
    from shared.chat.secret_prompt import SecretPrompts

__all__ = ["CONTROL_COMMANDS", "CONTROL_HELP", "ChatControl", "parse_control"]

CONTROL_COMMANDS = ("cancel", "rollback", "deploys", "queue", "secret", "secrets")
CONTROL_HELP = (
    "/cancel [task] — cancel a queued or running task (yours, by id or its first characters)\n"
    "/rollback [project] [sha] — redeploy the previous release, or the one of that commit\n"
    "/deploys [project] — the latest deploys of your project\n"
    "/queue [project] — the engineering tasks waiting to run, in order\n"
    "/secret [project] NAME — set a secret: your next message is its value (then deleted)\n"
    "/secrets [project] — the names of your project's secrets (never a value)"
)
_ACTIVE = (TaskStatus.QUEUED, TaskStatus.RUNNING)
_SCAN = 200
"""How many of the user's newest tasks a lookup reads."""
_SHOWN_DEPLOYS = 5


def parse_control(text: str) -> tuple[str, list[str]] | None:
    """`("cancel", ["ab12"])` for "/cancel ab12" (also "/cancel@bot ab12"); None when the
    text is not a control command."""
    words = text.strip().split()
    if not words or not words[0].startswith("/"):
        return None
    name = words[0][1:].split("@", 1)[0].lower()
    return (name, words[1:]) if name in CONTROL_COMMANDS else None


def _short(task: TaskDTO) -> str:
    return f"{task.id[:8]} {task.type.value}: {task.status.value}"


class ChatControl:
    """Answers control commands for a user; every call is one or a few API requests."""

    def __init__(self, api: ApiClient, prompts: SecretPrompts | None = None) -> None:
        self.api = api
        self.prompts = prompts

    async def handle(
        self, user: ChatUser, text: str, *, correlation_id: str | None = None
    ) -> str | None:
        """The answer to a control command, or None when `text` is not one. `correlation_id`:
        the chat turn's, kept by what the command asks of the API."""
        parsed = parse_control(text)
        if parsed is None:
            return None
        name, args = parsed
        try:
            if name == "cancel":
                return await self.cancel(user, args, correlation_id=correlation_id)
            if name == "rollback":
                return await self.rollback(user, args, correlation_id=correlation_id)
            if name == "deploys":
                return await self.deploys(user, args)
            if name == "secret":
                return await self.secret(user, args)
            if name == "secrets":
                return await self.secrets(user, args)
            return await self.queue(user, args)
        except (
            ValidationError,
            ConflictError,
            NotFoundError,
            ForbiddenError,
        ) as error:
            return f"Nothing done: {refusal_text(error)}"

    async def cancel(
        self, user: ChatUser, args: Sequence[str], *, correlation_id: str | None = None
    ) -> str:
        """Cancel the named task, or the user's only active one."""
        if len(args) > 1:
            return "Usage: /cancel [task id]"
        tasks = (await self.api.list_tasks(owner_id=user.user_id, limit=_SCAN)).items
        if args:
            wanted = args[0].lower()
            found = [t for t in tasks if t.id.startswith(wanted)]
            if len(found) != 1:
                reason = "No task of yours" if not found else "Several of your tasks"
                return f"{reason} matches {args[0]!r}."
            target = found[0]
            if target.status not in _ACTIVE:
                return f"Task {target.id[:8]} is already {target.status.value}: nothing to cancel."
        else:
            active = [t for t in tasks if t.status in _ACTIVE]
            if not active:
                return "You have no queued or running task: nothing to cancel."
            if len(active) > 1:
                lines = "\n".join(f"• {_short(t)}" for t in active)
                return f"You have {len(active)} active tasks; name one: /cancel <id>\n{lines}"
            target = active[0]
        cancelled = await self.api.cancel_task(target.id, correlation_id=correlation_id)
        was = target.status.value
        return f"Cancelled task {cancelled.id[:8]} ({cancelled.type.value}, was {was})."

    async def rollback(
        self, user: ChatUser, args: Sequence[str], *, correlation_id: str | None = None
    ) -> str:
        """Create a rollback deploy task of the user's project (with the turn's id)."""
        project, rest = await self._project(user, args)
        if project is None:
            return "You have no project to roll back."
        if len(rest) > 1:
            return "Usage: /rollback [project] [sha]"
        sha = rest[0] if rest else None
        created = await self.api.rollback(project.id, sha, correlation_id=correlation_id)
        target = f"commit {sha}" if sha else "the previous release"
        return (
            f"Rolling back {project.name} to {target}: deploy task {created.id[:8]} started. "
            "You will see its progress here."
        )

    async def deploys(self, user: ChatUser, args: Sequence[str]) -> str:
        """The latest deploys of the user's project."""
        project, rest = await self._project(user, args)
        if project is None:
            return "You have no project yet."
        if rest:
            return "Usage: /deploys [project]"
        page = await self.api.list_deploys(project.id, limit=_SHOWN_DEPLOYS)
        if not page.items:
            return f"{project.name} has not been deployed yet."
        lines = [f"Deploys of {project.name} ({page.total} in all, newest first):"]
        lines += [_deploy_line(d) for d in page.items]
        return "\n".join(lines)

    async def queue(self, user: ChatUser, args: Sequence[str]) -> str:
        """The engineering tasks of the user's project that wait, in the order they run."""
        project, rest = await self._project(user, args)
        if project is None:
            return "You have no project yet."
        if rest:
            return "Usage: /queue [project]"
        return await queue_text(self.api, project)

    async def secret(self, user: ChatUser, args: Sequence[str]) -> str:
        """Open a prompt: the user's next message is the value of the named secret."""
        if self.prompts is None or not 1 <= len(args) <= 2:
            return "Usage: /secret [project] NAME"
        if len(args) == 2:
            return await self.prompts.ask(user, args[0], args[1])
        project, _ = await self._project(user, [])
        if project is None:
            return "You have no project yet."
        return await self.prompts.ask(user, project.id, args[0])

    async def secrets(self, user: ChatUser, args: Sequence[str]) -> str:
        """The names of the secrets of the user's project."""
        project, rest = await self._project(user, args)
        if project is None:
            return "You have no project yet."
        if rest:
            return f"You have no project {rest[0][:64]!r}. Usage: /secrets [project]"
        names = [secret.name for secret in await self.api.list_secrets(project.id)]
        if not names:
            return f"{project.name} has no secrets. /secret {project.name} NAME sets one."
        return f"Secrets of {project.name} (names only): " + ", ".join(names)

    async def _project(
        self, user: ChatUser, args: Sequence[str]
    ) -> tuple[ProjectDTO | None, list[str]]:
        """The project named by the first argument, else the one that deployed last."""
        projects = (await self.api.list_projects(owner_id=user.user_id, limit=_SCAN)).items
        if args:
            for project in projects:
                if args[0] in (project.name, project.id):
                    return project, list(args[1:])
        if len(projects) == 1:
            return projects[0], list(args)
        deploys = await self.api.list_tasks(
            owner_id=user.user_id, task_type=TaskType.DEPLOY, limit=1
        )
        by_id = {p.id: p for p in projects}
        if deploys.items and deploys.items[0].project_id in by_id:
            return by_id[deploys.items[0].project_id], list(args)
        return (projects[0] if projects else None), list(args)


async def queue_text(api: ApiClient, project: ProjectDTO) -> str:
    """ "3 tasks queued: ..." for a project's waiting engineering tasks (oldest first)."""
    page = await api.list_tasks(
        project_id=project.id, task_type=TaskType.ENGINEERING, status=TaskStatus.QUEUED, limit=_SCAN
    )
    running = await api.list_tasks(
        project_id=project.id, task_type=TaskType.ENGINEERING, status=TaskStatus.RUNNING, limit=10
    )
    lines = []
    for task in running.items:
        lines.append(f"running: {task.id[:8]} {_spec(task)}")
    waiting = sorted(page.items, key=lambda t: (t.created_at, t.id))
    if waiting:
        noun = "task" if len(waiting) == 1 else "tasks"
        lines.append(f"{len(waiting)} {noun} queued:")
        lines += [f"{n}. {t.id[:8]} {_spec(t)}" for n, t in enumerate(waiting, 1)]
    if not lines:
        return f"No engineering task of {project.name} is waiting or running."
    return f"{project.name}:\n" + "\n".join(lines)


def _spec(task: TaskDTO) -> str:
    spec = (task.spec or "").strip().splitlines()
    first = spec[0] if spec else ""
    return first if len(first) <= 60 else first[:57] + "..."


def _deploy_line(deploy: DeployDTO) -> str:
    when = deploy.created_at.strftime("%Y-%m-%d %H:%M")
    line = f"• {deploy.sha[:8]} {deploy.kind} {deploy.outcome.value} {when}"
    if deploy.url:
        line += f" {deploy.url}"
    if deploy.error:
        line += f" — {deploy.error[:80]}"
    return line
