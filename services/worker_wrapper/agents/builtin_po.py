"""The built-in agent in the Product-Owner role: a small fixed grammar, no LLM.

A worker started with the PO profile (`AGENT_PROFILE=po` in its environment, see
`shared.chat.po_profile`) answers the user's messages with this agent when no LLM agent is
configured. It acts through the REST API with the user-scoped token of its environment
(`PO_API_URL`, `PO_API_TOKEN`): creating a project, an engineering task, a deploy task, or
reporting status. The current project is remembered in the workspace (`.po-state.json`).
Requests of any other profile go to the wrapped agent unchanged.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from services.worker_wrapper.agents.base import (
    ActivitySink,
    Agent,
    AgentActivity,
    AgentRequest,
    AgentResult,
)
from services.worker_wrapper.agents.builtin import BUILTIN_AGENT_NOTICE
from shared.chat.po_profile import (
    PO_API_TOKEN_ENV,
    PO_API_URL_ENV,
    PO_GRAMMAR_HELP,
    PO_PROFILE,
    PROFILE_ENV,
    ask_secret_line,
)
from shared.contracts import ProjectDTO, TaskCreate, TaskStatus, TaskType

if TYPE_CHECKING:
    from shared.api_client import ApiClient
    from shared.api_client.schemas import ProjectModule
    from shared.chat.sink import ChatUser

__all__ = ["BuiltinPoAgent", "PoGrammar"]

_STATE_FILE = ".po-state.json"
_CREATE = re.compile(r"^(?:create|new)\s+project\s+(?P<name>.+)$", re.IGNORECASE | re.DOTALL)
_USE = re.compile(r"^(?:use|switch to)\s+project\s+(?P<name>.+)$", re.IGNORECASE | re.DOTALL)
_DEVELOP = re.compile(r"^(?:develop|build|implement)\s+(?P<spec>.+)$", re.IGNORECASE | re.DOTALL)
_DEPLOY = re.compile(r"^deploy\b", re.IGNORECASE)
_STATUS = re.compile(r"^status\b", re.IGNORECASE)
_SECRETS = re.compile(r"^/?secrets\b", re.IGNORECASE)
_IMPORT = re.compile(r"^import\s+(?P<url>\S+)(?:\s+as\s+(?P<name>.+))?$", re.IGNORECASE)
_SECRET = re.compile(r"^(?:set\s+)?secret\s+(?P<name>\S+)\s*$", re.IGNORECASE)
_WITH_BOT = re.compile(
    r"^(?P<name>.+?)\s+with\s+(?P<only>only\s+|just\s+)?(?:an?\s+)?"
    r"(?:telegram\s+bot|telegram|bot)(?:\s+module)?(?P<alone>\s+only)?$",
    re.IGNORECASE | re.DOTALL,
)
"""`shop with a telegram bot` (backend and bot), `shop with only a telegram bot` (the bot)."""
_CANCEL = re.compile(r"^/?cancel(?:\s+(?:task\s+)?(?P<task>\S+))?\s*$", re.IGNORECASE)
_ROLLBACK = re.compile(r"^/?roll\s*back(?:\s+(?:to\s+)?(?P<sha>\S+))?\s*$", re.IGNORECASE)
_DEPLOYS = re.compile(r"^/?deploys\s*$", re.IGNORECASE)
_QUEUE = re.compile(r"^/?queue\s*$", re.IGNORECASE)
_CORRELATION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
"""What the API takes as a caller's correlation id (`X-Correlation-ID`); another is not sent."""
_INTRO = "I am the built-in PO agent, without an LLM: I follow a fixed grammar."


class PoGrammar:
    """Turns one message into API calls as the user; answers what it did."""

    def __init__(
        self, api: ApiClient, state_path: Path, *, correlation_id: str | None = None
    ) -> None:
        self.api = api
        self.state_path = state_path
        self.correlation_id = (
            correlation_id if correlation_id and _CORRELATION_ID.match(correlation_id) else None
        )
        """The chat turn's correlation id, given to the tasks this turn creates."""

    def _current(self) -> dict[str, str]:
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _remember(self, project: ProjectDTO) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        state = {"project_id": project.id, "project_name": project.name}
        self.state_path.write_text(json.dumps(state), encoding="utf-8")

    async def _project(self) -> ProjectDTO | None:
        current = self._current().get("project_id")
        if current:
            return await self.api.get_project(current)
        page = await self.api.list_projects(limit=1)
        return page.items[0] if page.items else None

    async def handle(self, prompt: str) -> str:
        """The answer to one message; a request the API refuses is answered with why."""
        from shared.api_client import (  # the client needs httpx, which PO workers load lazily
            ConflictError,
            ForbiddenError,
            NotFoundError,
            ValidationError,
            refusal_text,
        )

        try:
            return await self._answer(prompt.strip())
        except ConflictError as error:
            if error.code == "budget_exceeded":  # the user's monthly cap: say it as it is
                return f"I cannot start that task: {error.body.message}"
            return f"I could not do that: {refusal_text(error)}"
        except (ValidationError, NotFoundError, ForbiddenError) as error:
            return f"I could not do that: {refusal_text(error)}"

    async def _answer(self, text: str) -> str:
        if match := _CREATE.match(text):
            return await self._create(match["name"].strip())
        if _SECRETS.match(text):
            return await self._secrets()
        if match := _IMPORT.match(text):
            return await self._import(match["url"], (match["name"] or "").strip().strip("\"'"))
        if match := _SECRET.match(text):
            return await self._ask_secret(match["name"])
        if match := _USE.match(text):
            return await self._use(match["name"].strip().strip("\"'"))
        if match := _DEVELOP.match(text):
            return await self._task(TaskType.ENGINEERING, match["spec"].strip())
        if match := _CANCEL.match(text):
            return await self._cancel(match["task"])
        if match := _ROLLBACK.match(text):
            return await self._rollback(match["sha"])
        if _DEPLOYS.match(text):
            return await self._deploys()
        if _QUEUE.match(text):
            return await self._queue()
        if _DEPLOY.match(text):
            return await self._task(TaskType.DEPLOY, None)
        if _STATUS.match(text):
            return await self._status()
        return f"{_INTRO}\n{PO_GRAMMAR_HELP}"

    async def _create(self, phrase: str) -> str:
        from shared.api_client.schemas import ProjectCreateBody  # the client's package: httpx

        modules: list[ProjectModule] = ["backend"]
        if bot := _WITH_BOT.match(phrase):
            alone = bool(bot["only"] or bot["alone"])
            phrase, modules = (
                bot["name"].strip(),
                ["telegram"] if alone else ["backend", "telegram"],
            )
        name = phrase.strip("\"'")
        body = ProjectCreateBody.model_construct(name=name, description=None, modules=modules)
        # not validated here: the API refuses a bad name with a reason the user is told
        project = await self.api.create_project(body)
        self._remember(project)
        answer = (
            f"Created project {project.name} (id {project.id}, modules "
            f"{', '.join(project.modules)}). It is the current one."
        )
        if "telegram" in project.modules:
            answer += (
                " The bot needs BOT_TOKEN (from @BotFather). (Or later: "
                f"`orchestrator project secret set {project.id} BOT_TOKEN`, which asks for "
                "the value.)\n" + ask_secret_line(project.id, "BOT_TOKEN")
            )
        return answer

    async def _import(self, url: str, name: str) -> str:
        from shared.api_client.schemas import ProjectImportBody  # the client's package: httpx
        from shared.git.importer import source_name

        body = ProjectImportBody.model_construct(
            name=name or source_name(url), description=None, modules=["backend"], repo_url=url
        )
        # not validated here: the API refuses a bad URL or name with a reason the user is told
        project = await self.api.import_project(body)
        self._remember(project)
        return (
            f"Imported {url} as project {project.name} (id {project.id}): its branches are in "
            f"the project's own repository, ready for work. It is the current one: "
            "develop <spec> or deploy."
        )

    async def _ask_secret(self, name: str) -> str:
        project = await self._project()
        if project is None:
            return "There is no project yet. Start with: create project <name>"
        # the front door replaces this line with its prompt; the value never comes here
        return f"{name} of {project.name}:\n" + ask_secret_line(project.id, name)

    async def _secrets(self) -> str:
        project = await self._project()
        if project is None:
            return "There is no project yet. Start with: create project <name>"
        names = [secret.name for secret in await self.api.list_secrets(project.id)]
        if not names:
            return f"Project {project.name} has no secrets."
        return f"Secrets of {project.name} (names only, values are never shown): " + ", ".join(
            names
        )

    async def _use(self, name: str) -> str:
        page = await self.api.list_projects(limit=200)
        for project in page.items:
            if project.name == name or project.id == name:
                self._remember(project)
                return f"The current project is now {project.name} (id {project.id})."
        return f"You have no project named {name!r}. Create it with: create project {name}"

    async def _task(self, task_type: TaskType, spec: str | None) -> str:
        project = await self._project()
        if project is None:
            return "There is no project yet. Start with: create project <name>"
        task = await self.api.create_task(
            TaskCreate(project_id=project.id, type=task_type, spec=spec),
            correlation_id=self.correlation_id,  # the chat turn's: its flow carries it
        )
        what = "Development" if task_type == TaskType.ENGINEERING else "Deploy"
        answer = (
            f"{what} of {project.name} started: task {task.id}. "
            "You will see its progress and result here."
        )
        if task_type == TaskType.DEPLOY and "telegram" in getattr(project, "modules", []):
            names = {secret.name for secret in await self.api.list_secrets(project.id)}
            if "BOT_TOKEN" not in names:
                answer += "\nThe bot needs BOT_TOKEN (from @BotFather).\n" + ask_secret_line(
                    project.id, "BOT_TOKEN"
                )
        if task_type == TaskType.ENGINEERING:
            others = 0
            for status in (TaskStatus.RUNNING, TaskStatus.QUEUED):
                page = await self.api.list_tasks(
                    project_id=project.id, task_type=TaskType.ENGINEERING, status=status
                )
                others += sum(1 for t in page.items if t.id != task.id)
            if others:
                from shared.chat.control import queue_text

                answer += " It runs after the earlier ones, in order.\n" + await queue_text(
                    self.api, project
                )
        return answer

    async def _me(self) -> ChatUser:
        from shared.chat.sink import ChatUser

        me = await self.api.me()
        return ChatUser(me.id, me.telegram_id, 0, me.is_admin)

    async def _cancel(self, task: str | None) -> str:
        from shared.chat.control import ChatControl  # needs the API client (httpx)

        return await ChatControl(self.api).cancel(
            await self._me(), [task] if task else [], correlation_id=self.correlation_id
        )

    async def _rollback(self, sha: str | None) -> str:
        project = await self._project()
        if project is None:
            return "There is no project yet. Start with: create project <name>"
        created = await self.api.rollback(project.id, sha, correlation_id=self.correlation_id)
        target = f"commit {sha}" if sha else "the previous release"
        return f"Rolling back {project.name} to {target}: deploy task {created.id} started."

    async def _deploys(self) -> str:
        from shared.chat.control import ChatControl

        project = await self._project()
        if project is None:
            return "There is no project yet. Start with: create project <name>"
        return await ChatControl(self.api).deploys(await self._me(), [project.id])

    async def _queue(self) -> str:
        from shared.chat.control import queue_text

        project = await self._project()
        if project is None:
            return "There is no project yet. Start with: create project <name>"
        return await queue_text(self.api, project)

    async def _status(self) -> str:
        project = await self._project()
        if project is None:
            return "There is no project yet. Start with: create project <name>"
        page = await self.api.list_tasks(project_id=project.id, limit=10)
        lines = [f"Project {project.name}: {project.status.value}"]
        lines += [f"- {t.id[:8]} {t.type.value}: {t.status.value}" for t in page.items]
        return "\n".join(lines)


class BuiltinPoAgent:
    """The built-in agent: the PO grammar for PO workers, the wrapped agent for the rest."""

    name = "builtin"
    supports_sessions = False

    def __init__(self, fallback: Agent) -> None:
        self.fallback = fallback

    async def run(self, request: AgentRequest, on_activity: ActivitySink) -> AgentResult:
        """Answer a PO message through the API; delegate any other profile."""
        if request.env.get(PROFILE_ENV) != PO_PROFILE:
            return await self.fallback.run(request, on_activity)
        url, token = request.env.get(PO_API_URL_ENV), request.env.get(PO_API_TOKEN_ENV)
        if not url or not token:
            return AgentResult(
                status="error",
                error=f"the PO worker has no API credential ({PO_API_URL_ENV}, {PO_API_TOKEN_ENV})",
            )
        await on_activity(AgentActivity("tool", "orchestrator API"))
        # Imported here: a developer worker never talks to the API, and this import is a
        # third of the wrapper's start-up time.
        from shared.api_client import ApiClient, ApiClientError

        try:
            async with ApiClient(url, key=token) as api:
                grammar = PoGrammar(
                    api, request.workspace / _STATE_FILE, correlation_id=request.correlation_id
                )
                answer = await grammar.handle(request.prompt)
        except ApiClientError as error:
            answer = f"The orchestrator API refused that: {error}"
        return AgentResult(status="success", response=f"{BUILTIN_AGENT_NOTICE} {answer}")
