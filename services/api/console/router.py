"""The web console's pages: server-rendered templates over the API's own services.

Every page calls the same services as the REST routes (`services/api/<domain>/service.py`)
with the signed-in session's principal, so the console sees and may do exactly what that
credential may do through the API. Live data (a task's progress, queues, workers, dead
letters) comes from the same Redis streams and registry the CLI reads. Forms post
`application/x-www-form-urlencoded` bodies with the session's CSRF token and answer with a
redirect (post/redirect/get); errors of the services become HTML pages with their status.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import redis.asyncio as aioredis
from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.app_probe import AppProbe
from services.api.auth.service import AuthService
from services.api.console.chat import ConsoleChat, chat_stream
from services.api.console.sessions import ConsoleSession, ConsoleSessions, csrf_matches
from services.api.db import Database
from services.api.deploys.models import Deploy
from services.api.deploys.repository import DeployRepository
from services.api.deploys.service import DeployService
from services.api.deps import SessionDep
from services.api.errors import (
    ApiError,
    ForbiddenError,
    InvalidRequestError,
    NotFoundError,
    UnauthenticatedError,
)
from services.api.projects.models import Project
from services.api.projects.repository import ProjectRepository
from services.api.projects.service import ProjectService
from services.api.runs.models import AgentRun
from services.api.runs.service import RunService
from services.api.servers.service import ServerService
from services.api.tasks.service import TaskService
from services.api.users.service import UserService
from shared import registry
from shared.api_client.schemas import ApiKeyCreate, ProjectUpdate, UserCreate
from shared.chat import ChatUser
from shared.contracts import (
    ProgressEvent,
    ProjectCreate,
    ProjectStatus,
    TaskCreate,
    TaskStatus,
    TaskType,
)
from shared.git.errors import GitError
from shared.git.naming import repo_full_name
from shared.git.provider import CommitDiff, CommitSummary, GitProvider
from shared.messaging.transport import Entry
from shared.settings import ConsoleSettings

__all__ = ["COOKIE", "PAGE_SIZE", "router"]

COOKIE = "orc_console"
PAGE_SIZE = 25
HERE = Path(__file__).resolve().parent
TERMINAL = {TaskStatus.COMPLETED.value, TaskStatus.FAILED.value, TaskStatus.CANCELLED.value}
SSE_STATUS_POLL_S = 2.0
"""How often the event stream of a task re-reads its status (a cancel has no progress event)."""

_templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    enable_async=False,
)


def _when(value: datetime | float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float | int):
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(value))
    return value.strftime("%Y-%m-%d %H:%M:%S")


_templates.filters["when"] = _when


class _SignInNeededError(Exception):
    """The request has no valid console session."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _ConsoleRoute(APIRoute):
    """Console routes answer HTML: a missing session sends a page request to the sign-in
    form (401 for anything else); a service's error becomes an error page with its status."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except _SignInNeededError as error:
                if request.method == "GET" and not request.url.path.endswith("/events"):
                    target = quote(request.url.path, safe="/")
                    return RedirectResponse(f"/console/login?next={target}", status_code=303)
                return _page(request, "error.html", None, status=401, message=error.reason)
            except ApiError as error:
                return _page(
                    request, "error.html", None, status=error.status_code, message=error.message
                )

        return route


router = APIRouter(prefix="/console", include_in_schema=False, route_class=_ConsoleRoute)


# helpers ---------------------------------------------------------------------------------


def _settings(request: Request) -> ConsoleSettings:
    settings: ConsoleSettings = request.app.state.console_settings
    return settings


def _database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def redis_of(request: Request) -> aioredis.Redis | None:
    """The console's Redis client (None when the API runs without Redis)."""
    client: aioredis.Redis | None = request.app.state.console_redis
    return client


def _page(
    request: Request,
    template: str,
    session: ConsoleSession | None,
    *,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    html = _templates.get_template(template).render(
        session=session, path=request.url.path, **context
    )
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


async def _session(request: Request, db: AsyncSession) -> ConsoleSession:
    try:
        return await ConsoleSessions(db, _settings(request)).check(request.cookies.get(COOKIE))
    except UnauthenticatedError as error:
        raise _SignInNeededError(error.message) from None


async def _form(request: Request, session: ConsoleSession | None) -> dict[str, str]:
    """The posted form's fields (first value each); with a session, its CSRF token is
    checked first (403 without it)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    fields = {name: values[0] for name, values in parse_qs(body).items()}
    if session is not None and not csrf_matches(session.secret, fields.get("csrf")):
        raise ForbiddenError("the form's CSRF token is missing or wrong: reload the page")
    return fields


def _offset(request: Request, name: str = "offset") -> int:
    raw = request.query_params.get(name, "0")
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequestError(f"{name} must be a whole number, not {raw!r}") from None
    if value < 0 or value > 2**31 - 1:
        raise InvalidRequestError(f"{name} must be between 0 and {2**31 - 1}")
    return value


def _pages(total: int, offset: int) -> dict[str, int | None]:
    return {
        "total": total,
        "offset": offset,
        "first": offset + 1 if total else 0,
        "last": min(offset + PAGE_SIZE, total),
        "prev": max(offset - PAGE_SIZE, 0) if offset > 0 else None,
        "next": offset + PAGE_SIZE if offset + PAGE_SIZE < total else None,
    }


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _set_cookie(response: Response, request: Request, secret: str, expires: datetime) -> None:
    response.set_cookie(
        COOKIE,
        secret,
        expires=expires,
        path="/console",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def _tasks(request: Request, db: AsyncSession) -> TaskService:
    return TaskService(db, request.app.state.task_deadlines)


# sign-in ---------------------------------------------------------------------------------


def _safe_next(target: str | None) -> str:
    """Only a console path may follow sign-in (no open redirect)."""
    if target and target.startswith("/console/") and "//" not in target and "\\" not in target:
        return target
    return "/console/"


@router.get("/login")
async def login_form(request: Request) -> HTMLResponse:
    """The sign-in form (an API key)."""
    return _page(request, "login.html", None, next=_safe_next(request.query_params.get("next")))


@router.post("/login")
async def login(request: Request, db: SessionDep) -> Response:
    """Sign in with an API key: a session cookie, then the page asked for."""
    fields = await _form(request, None)
    try:
        secret, expires = await ConsoleSessions(db, _settings(request)).sign_in(
            fields.get("api_key", "")
        )
    except UnauthenticatedError as error:
        return _page(
            request,
            "login.html",
            None,
            status=401,
            error=error.message,
            next=_safe_next(fields.get("next")),
        )
    response = _redirect(_safe_next(fields.get("next")))
    _set_cookie(response, request, secret, expires)
    return response


@router.get("/link/{token}")
async def use_link(token: str, request: Request, db: SessionDep) -> Response:
    """Open a one-time sign-in link (`orchestrator console`)."""
    try:
        secret, expires = await ConsoleSessions(db, _settings(request)).use_link(token)
    except UnauthenticatedError as error:
        return _page(request, "login.html", None, status=401, error=error.message, next=None)
    response = _redirect("/console/")
    _set_cookie(response, request, secret, expires)
    return response


@router.post("/links")
async def create_link(request: Request, db: SessionDep) -> JSONResponse:
    """A one-time sign-in link for the caller's API key (`Authorization: Bearer`)."""
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret:
        raise UnauthenticatedError("send `Authorization: Bearer <API key>`")
    principal = await AuthService(db).authenticate(secret)
    token, expires = await ConsoleSessions(db, _settings(request)).create_link(principal)
    return JSONResponse(
        {"path": f"/console/link/{token}", "expires_at": expires.isoformat()},
        status_code=201,
        headers={"Cache-Control": "no-store"},
    )


@router.post("/logout")
async def logout(request: Request, db: SessionDep) -> Response:
    """Sign out: the session ends on the server, the cookie is cleared."""
    session = await _session(request, db)
    await _form(request, session)
    await ConsoleSessions(db, _settings(request)).sign_out(session.secret)
    response = _redirect("/console/login")
    response.delete_cookie(COOKIE, path="/console")
    return response


# projects --------------------------------------------------------------------------------


@router.get("/")
async def projects(request: Request, db: SessionDep) -> HTMLResponse:
    """The projects the session may see: status, repository, deployed URL, last deploy,
    the running release's health; archived projects only with `?archived=1`."""
    session = await _session(request, db)
    offset = _offset(request)
    archived = request.query_params.get("archived") == "1"
    rows, total = await ProjectService(db).list(
        session.principal,
        status=None,
        owner_id=None,
        limit=PAGE_SIZE,
        offset=offset,
        archived=archived,
    )
    deploys = DeployRepository(db)
    ids = [project.id for project in rows]
    last = await deploys.latest_of(ids)
    serving = await deploys.latest_of(ids, outcome="succeeded")
    items = [
        {
            "project": project,
            "last": last.get(project.id),
            "url": serving[project.id].url if project.id in serving else None,
            "health": _health(request, project, serving.get(project.id)),
        }
        for project in rows
    ]
    return _page(
        request,
        "projects.html",
        session,
        items=items,
        pages=_pages(total, offset),
        archived=archived,
    )


def _health(request: Request, project: Project, serving: Deploy | None) -> dict[str, Any] | None:
    """The running release's health: the API's probe of its `/health` (`app_probe.py`) when
    it has one, else what its deploy found; None when nothing serves."""
    if serving is None or project.status == "archived":
        return None
    probe: AppProbe | None = getattr(request.app.state, "app_probe", None)
    if probe is not None and project.id in probe.last:
        up, at = probe.last[project.id]
        return {"state": "up" if up else "down", "at": at, "source": "probe"}
    return {
        "state": "deployed",
        "at": serving.finished_at or serving.created_at,
        "source": "deploy",
    }


@router.post("/projects")
async def create_project(request: Request, db: SessionDep) -> Response:
    """Create a draft project owned by the session's user."""
    session = await _session(request, db)
    fields = await _form(request, session)
    name = fields.get("name", "").strip()
    if not name or len(name) > 100:
        raise InvalidRequestError("a project needs a name of 1 to 100 characters")
    description = fields.get("description", "").strip() or None
    project = await ProjectService(db).create(
        session.principal, ProjectCreate(name=name, description=description), owner_id=None
    )
    return _redirect(f"/console/projects/{project.id}")


@router.get("/projects/{project_id}")
async def project_page(project_id: str, request: Request, db: SessionDep) -> HTMLResponse:
    """One project: its tasks and deploy history (each paginated), and its actions."""
    session = await _session(request, db)
    project = await ProjectService(db).get(session.principal, project_id)
    offset = _offset(request)
    deploy_offset = _offset(request, "deploys_offset")
    tasks, total = await _tasks(request, db).list(
        session.principal,
        status=None,
        project_id=project.id,
        owner_id=None,
        task_type=None,
        limit=PAGE_SIZE,
        offset=offset,
    )
    deploys, deploy_total = await DeployService(db, _tasks(request, db)).list(
        session.principal, project.id, limit=PAGE_SIZE, offset=deploy_offset
    )
    serving = (await DeployRepository(db).latest_of([project.id], outcome="succeeded")).get(
        project.id
    )
    commits, commit_pages, commits_error = await _commits(
        request, project, _offset(request, "commits_offset")
    )
    return _page(
        request,
        "project.html",
        session,
        project=project,
        tasks=tasks,
        pages=_pages(total, offset),
        deploys=deploys,
        deploy_pages=_pages(deploy_total, deploy_offset),
        url=serving.url if serving else None,
        serving=serving,
        health=_health(request, project, serving),
        commits=commits,
        commit_pages=commit_pages,
        commits_error=commits_error,
        branch=request.app.state.console_git_branch,
    )


async def _commits(
    request: Request, project: Project, offset: int
) -> tuple[list[CommitSummary], dict[str, int | None], str | None]:
    """A page of the commits on the project's base branch, its pager, and why there are
    none to show (no access to the repositories, a provider's error)."""
    provider = _git(request)
    if provider is None:
        return [], _pages(0, 0), "this API has no access to the projects' repositories"
    try:
        found = await provider.commits(
            _repository(request, project),
            request.app.state.console_git_branch,
            limit=PAGE_SIZE + 1,
            offset=offset,
        )
    except (GitError, ValueError) as error:
        return [], _pages(0, 0), f"the commits cannot be read: {error}"
    return found[:PAGE_SIZE], _pages(offset + len(found), offset), None


@router.post("/projects/{project_id}/archive")
async def archive_project(project_id: str, request: Request, db: SessionDep) -> Response:
    """Archive a project (final), as `orchestrator project archive` does: the same change
    of status through the projects' service; the name typed again confirms it."""
    session = await _session(request, db)
    fields = await _form(request, session)
    projects = ProjectService(db)
    project = await projects.get(session.principal, project_id)
    if fields.get("confirm", "").strip() != project.name:
        raise InvalidRequestError(f"type the project's name ({project.name}) to archive it")
    await projects.update(
        session.principal, project.id, ProjectUpdate(status=ProjectStatus.ARCHIVED)
    )
    return _redirect(f"/console/projects/{project.id}")


@router.post("/projects/{project_id}/tasks")
async def start_task(project_id: str, request: Request, db: SessionDep) -> Response:
    """Start an engineering task from the spec box."""
    session = await _session(request, db)
    fields = await _form(request, session)
    spec = fields.get("spec", "").strip()
    if not spec:
        raise InvalidRequestError("an engineering task needs a spec")
    task = await _tasks(request, db).create(
        session.principal,
        TaskCreate(project_id=project_id, type=TaskType.ENGINEERING, spec=spec),
    )
    return _redirect(f"/console/tasks/{task.id}")


@router.post("/projects/{project_id}/deploy")
async def start_deploy(project_id: str, request: Request, db: SessionDep) -> Response:
    """Deploy the head of the project's main branch."""
    session = await _session(request, db)
    await _form(request, session)
    task = await _tasks(request, db).create(
        session.principal, TaskCreate(project_id=project_id, type=TaskType.DEPLOY)
    )
    return _redirect(f"/console/tasks/{task.id}")


@router.post("/projects/{project_id}/rollback")
async def rollback(project_id: str, request: Request, db: SessionDep) -> Response:
    """Roll back to an earlier release (the one before the current, or a named commit)."""
    session = await _session(request, db)
    fields = await _form(request, session)
    sha = fields.get("sha", "").strip() or None
    task = await DeployService(db, _tasks(request, db)).rollback(session.principal, project_id, sha)
    return _redirect(f"/console/tasks/{task.id}")


# tasks -----------------------------------------------------------------------------------


@router.get("/tasks/{task_id}")
async def task_page(task_id: str, request: Request, db: SessionDep) -> HTMLResponse:
    """A task: status, live progress (server-sent events), the agent's activity (its run
    records), the checks' output, the result with its commit's diff, cost, cancel."""
    session = await _session(request, db)
    tasks = _tasks(request, db)
    task = await tasks.get(session.principal, task_id)
    project = await ProjectService(db).get(session.principal, task.project_id)
    result = task.result or {}
    runs = await RunService(db, tasks).of_task(session.principal, task.id)
    deploy = await DeployRepository(db).of_task(task.id)
    sha = _result_sha(result) or (deploy.sha if deploy is not None else None)
    diff, diff_error = await _diff(request, project, sha)
    found = result.get("checks")
    checks: dict[str, Any] = found if isinstance(found, dict) else {}
    return _page(
        request,
        "task.html",
        session,
        task=task,
        project=project,
        terminal=task.status in TERMINAL,
        result={k: v for k, v in result.items() if k not in _SHOWN_APART},
        answer=result.get("agent_answer"),
        runs=[_run_view(run) for run in runs],
        cost=sum(run.cost_usd for run in runs),
        tokens=sum(run.input_tokens + run.output_tokens for run in runs),
        checks=[c for c in checks.get("runs", []) if isinstance(c, dict)],
        sha=sha,
        diff=diff,
        diff_error=diff_error,
    )


_SHOWN_APART = {"checks", "agent_answer"}
"""Result fields the task page shows in their own sections."""
DIFF_MAX_BYTES = 200_000
"""The largest patch a task page shows; a longer one is cut (and says so)."""


def _result_sha(result: dict[str, Any]) -> str | None:
    """The commit a task's result names: the merged one, else the task's own."""
    for key in ("merged_sha", "commit_sha"):
        value = result.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _git(request: Request) -> GitProvider | None:
    provider: GitProvider | None = getattr(request.app.state, "console_git", None)
    return provider


def _repository(request: Request, project: Project) -> str:
    owner: str = request.app.state.console_git_owner
    return repo_full_name(owner, project.id, project.name)


async def _diff(
    request: Request, project: Project, sha: str | None
) -> tuple[CommitDiff | None, str | None]:
    """The commit's diff (bounded), or why there is none to show."""
    if sha is None:
        return None, None
    provider = _git(request)
    if provider is None:
        return None, "this API has no access to the projects' repositories"
    try:
        return await provider.commit_diff(
            _repository(request, project), sha, max_bytes=DIFF_MAX_BYTES
        ), None
    except (GitError, ValueError) as error:
        return None, f"the diff of {sha[:12]} cannot be read: {error}"


def _run_view(run: AgentRun) -> dict[str, Any]:
    """A run record as the task page (and its event stream) shows it."""
    return {
        "id": run.id,
        "step": run.step,
        "agent": run.agent,
        "model": run.model or "",
        "status": run.status,
        "tools": [
            {
                "name": str(tool.get("name", "")),
                "target": str(tool.get("target", "")),
                "outcome": str(tool.get("outcome", "")),
            }
            for tool in run.tools or []
        ],
        "tools_dropped": run.tools_dropped,
        "tokens": run.input_tokens + run.output_tokens,
        "cost": f"{run.cost_usd:.4f}",
        "seconds": f"{run.duration_ms / 1000:.1f}",
        "error": run.error or "",
        "at": run.created_at.strftime("%H:%M:%S"),
    }


@router.post("/tasks/{task_id}/cancel")
async def cancel_task(task_id: str, request: Request, db: SessionDep) -> Response:
    """Cancel a queued or running task."""
    session = await _session(request, db)
    await _form(request, session)
    await _tasks(request, db).cancel(session.principal, task_id)
    return _redirect(f"/console/tasks/{task_id}")


@router.get("/tasks/{task_id}/events")
async def task_events(task_id: str, request: Request, db: SessionDep) -> Response:
    """The task's progress as server-sent events: `progress` per event of its stream (from
    its start), `run` per agent run recorded after the run id `after_run`, `status` when its
    status changes; the stream ends at a final status."""
    session = await _session(request, db)
    task = await _tasks(request, db).get(session.principal, task_id)
    redis = redis_of(request)
    after = _offset(request, "after_run")  # the runs the page already shows
    events = _event_stream(request, _database(request), redis, session, task.id, task.status, after)
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n".encode()


async def _event_stream(
    request: Request,
    database: Database,
    redis: aioredis.Redis | None,
    session: ConsoleSession,
    task_id: str,
    status: str,
    last_run: int,
) -> AsyncIterator[bytes]:
    from shared.messaging.envelope import Envelope, decode_message
    from shared.messaging.errors import DecodeError
    from shared.messaging.keys import progress_stream
    from shared.messaging.progress import PROGRESS_MAXLEN
    from shared.messaging.redis_transport import RedisTransport

    stream = progress_stream(task_id)
    spec = registry.resolve(stream)
    transport = RedisTransport(redis) if redis is not None else None

    def decoded(entries: list[Entry]) -> Iterator[bytes]:
        for entry in entries:
            if entry.fields is None:
                continue
            try:
                event = decode_message(spec, Envelope.from_fields(entry.fields))
            except DecodeError:
                continue
            if isinstance(event, ProgressEvent):
                yield _sse("progress", _progress(event))

    yield _sse("status", {"status": status})
    if status in TERMINAL:  # the steps as they were, then the end
        if transport is not None:
            entries = await transport.range(stream, start="-", end="+", count=PROGRESS_MAXLEN)
            for chunk in decoded(entries):
                yield chunk
        async with database.sessionmaker() as db:
            for run in await _runs_after(db, session, task_id, last_run):
                yield _sse("run", _run_view(run))
        yield _sse("end", {"status": status})
        return
    position = "0-0"
    checked = 0.0
    while not await request.is_disconnected():
        if transport is not None:
            entries = await transport.read({stream: position}, count=100, block_ms=1000)
            if entries:
                position = entries[-1].entry_id
            for chunk in decoded(entries):
                yield chunk
        else:
            await asyncio.sleep(1.0)
        if time.monotonic() - checked >= SSE_STATUS_POLL_S:
            checked = time.monotonic()
            async with database.sessionmaker() as db:
                task = await TaskService(db).get(session.principal, task_id)
                for run in await _runs_after(db, session, task_id, last_run):
                    last_run = run.id
                    yield _sse("run", _run_view(run))
                if task.status != status:
                    status = task.status
                    yield _sse("status", {"status": status, "result": task.result or {}})
            if status in TERMINAL:
                yield _sse("end", {"status": status})
                return


async def _runs_after(
    db: AsyncSession, session: ConsoleSession, task_id: str, after: int
) -> list[AgentRun]:
    """The task's runs recorded after the run id `after`, oldest first."""
    runs = await RunService(db, TaskService(db)).of_task(session.principal, task_id)
    return [run for run in runs if run.id > after]


def _progress(event: ProgressEvent) -> dict[str, Any]:
    return {
        "type": event.type,
        "step": event.current_step or event.type,
        "message": event.message or "",
        "pct": 100 if event.type == "completed" else event.progress_pct,
        "error": event.error or "",
        "at": event.timestamp.strftime("%H:%M:%S"),
    }


# chat ------------------------------------------------------------------------------------


def _chat(request: Request) -> ConsoleChat:
    chat: ConsoleChat | None = request.app.state.console_chat
    if chat is None:
        api_url = request.app.state.console_api_url or str(request.base_url).rstrip("/")
        chat = ConsoleChat(_need_redis(request), api_url)
        request.app.state.console_chat = chat
    return chat


async def _chat_user(session: ConsoleSession, db: AsyncSession) -> ChatUser:
    user = await UserService(db).me(session.principal)
    return ChatUser(user.id, user.telegram_id, user.id, user.is_admin)


@router.get("/chat")
async def chat_page(request: Request, db: SessionDep) -> HTMLResponse:
    """The conversation with the user's PO agent, with live task progress."""
    session = await _session(request, db)
    user = await _chat_user(session, db)
    messages = await _chat(request).history(user.user_id)
    after = max((m["entry"] for m in messages), key=_entry_key, default="0-0")
    return _page(request, "chat.html", session, messages=messages, after=after)


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _entry_key(entry_id: str) -> tuple[int, int]:
    millis, _, sequence = entry_id.partition("-")
    return int(millis), int(sequence or 0)


@router.post("/chat")
async def chat_send(request: Request, db: SessionDep) -> Response:
    """Send a message to the PO agent; its answer and task progress arrive on the page."""
    session = await _session(request, db)
    fields = await _form(request, session)
    text = fields.get("text", "").strip()
    if not text or len(text) > 4000:
        raise InvalidRequestError("a message has 1 to 4000 characters")
    user = await _chat_user(session, db)
    await _chat(request).ask(user, text, session.secret)
    return _redirect("/console/chat")


@router.get("/chat/events")
async def chat_events(request: Request, db: SessionDep) -> Response:
    """The user's chat stream after `after` as server-sent `message` events."""
    session = await _session(request, db)
    user = await _chat_user(session, db)
    redis = _need_redis(request)
    after = request.query_params.get("after", "0-0")
    try:
        _entry_key(after)
    except ValueError:
        raise InvalidRequestError(f"after must be a stream entry id, not {after!r}") from None

    async def events() -> AsyncIterator[bytes]:
        position = after
        stream = chat_stream(user.user_id)
        while not await request.is_disconnected():
            found: Any = await redis.xread({stream: position}, count=100, block=1000)
            for _, entries in found or []:
                for entry_id, fields in entries:
                    position = _s(entry_id)
                    message = {_s(k): _s(v) for k, v in fields.items()}
                    yield _sse("message", message)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


# admin -----------------------------------------------------------------------------------


async def _admin(request: Request, db: AsyncSession) -> ConsoleSession:
    session = await _session(request, db)
    if not session.principal.is_admin:
        raise ForbiddenError("the operations pages are for admins")
    return session


def _need_redis(request: Request) -> aioredis.Redis:
    redis = redis_of(request)
    if redis is None:
        raise ConsoleUnavailableError("this API runs without Redis: no live figures")
    return redis


class ConsoleUnavailableError(ApiError):
    """Redis is not configured for the console."""

    status_code = 503
    code = "unavailable"


@router.get("/admin")
async def admin_page(request: Request, db: SessionDep) -> HTMLResponse:
    """Operations: workers and queues (live from Redis)."""
    from services.worker_manager.registry import WorkerRegistry
    from shared.messaging.redis_transport import RedisTransport
    from shared.messaging.stats import concrete_streams, queue_stats

    session = await _admin(request, db)
    redis = _need_redis(request)
    now = time.time()
    workers = await WorkerRegistry(redis).all()
    offset = _offset(request)
    queue_offset = _offset(request, "queues_offset")
    streams = [stream for spec in registry.QUEUES for stream in await concrete_streams(redis, spec)]
    transport = RedisTransport(redis)
    queues = [
        await queue_stats(transport, stream)
        for stream in streams[queue_offset : queue_offset + PAGE_SIZE]
    ]
    return _page(
        request,
        "admin.html",
        session,
        now=now,
        workers=workers[offset : offset + PAGE_SIZE],
        pages=_pages(len(workers), offset),
        queues=queues,
        queue_pages=_pages(len(streams), queue_offset),
    )


@router.post("/admin/workers/{worker_id}/delete")
async def delete_worker(worker_id: str, request: Request, db: SessionDep) -> Response:
    """Ask the worker-manager to delete a worker (its files go, its token is revoked)."""
    from services.worker_manager.registry import WorkerRegistry
    from shared.contracts import DeleteWorkerCommand, new_id
    from shared.messaging import Bus

    session = await _admin(request, db)
    await _form(request, session)
    redis = _need_redis(request)
    if await WorkerRegistry(redis).get(worker_id) is None:
        raise NotFoundError(f"worker {worker_id!r} not found")
    bus = Bus(redis, actor=registry.Actor.TELEGRAM_BOT)
    command = DeleteWorkerCommand(request_id=new_id(), worker_id=worker_id)
    await bus.publish(registry.get("worker:commands").name, command)
    return _redirect("/console/admin")


@router.get("/admin/dlq")
async def dead_letters(request: Request, db: SessionDep) -> HTMLResponse:
    """The dead letters of one stream: reason, attempts, payload."""
    from shared.messaging.dlq import list_dead_letters
    from shared.messaging.redis_transport import RedisTransport

    session = await _admin(request, db)
    stream = _stream(request.query_params.get("stream", ""))
    offset = _offset(request)
    letters = await list_dead_letters(
        RedisTransport(_need_redis(request)), stream, count=offset + PAGE_SIZE + 1
    )
    shown = letters[offset : offset + PAGE_SIZE]
    total = offset + len(letters[offset:])
    return _page(
        request, "dlq.html", session, stream=stream, letters=shown, pages=_pages(total, offset)
    )


def _stream(name: str) -> str:
    try:
        registry.resolve(name)
    except registry.UnknownQueueError as error:
        raise InvalidRequestError(str(error)) from None
    return name


@router.post("/admin/dlq/replay")
async def replay(request: Request, db: SessionDep) -> Response:
    """Move one dead letter (or all) back onto its stream."""
    from shared.messaging.dlq import replay_dead_letters
    from shared.messaging.redis_transport import RedisTransport

    session = await _admin(request, db)
    fields = await _form(request, session)
    stream = _stream(fields.get("stream", ""))
    ids = [fields["id"]] if fields.get("id") else None
    await replay_dead_letters(RedisTransport(_need_redis(request)), stream, ids=ids)
    return _redirect(f"/console/admin/dlq?stream={quote(stream)}")


@router.post("/admin/dlq/purge")
async def purge(request: Request, db: SessionDep) -> Response:
    """Delete dead letters for good: only with the confirmation box ticked."""
    from shared.messaging.dlq import purge_dead_letters
    from shared.messaging.redis_transport import RedisTransport

    session = await _admin(request, db)
    fields = await _form(request, session)
    stream = _stream(fields.get("stream", ""))
    if fields.get("confirm") != stream:
        raise InvalidRequestError(f"type the stream's name ({stream}) to confirm the purge")
    ids = [fields["id"]] if fields.get("id") else None
    await purge_dead_letters(RedisTransport(_need_redis(request)), stream, ids=ids)
    return _redirect(f"/console/admin/dlq?stream={quote(stream)}")


@router.get("/admin/servers")
async def servers_page(request: Request, db: SessionDep) -> HTMLResponse:
    """Deploy servers: status, address, port range, how many ports are allocated."""
    session = await _admin(request, db)
    offset = _offset(request)
    servers, total = await ServerService(db, session.principal).page(
        status=None, limit=PAGE_SIZE, offset=offset
    )
    return _page(request, "servers.html", session, servers=servers, pages=_pages(total, offset))


@router.get("/admin/servers/{handle}")
async def server_page(handle: str, request: Request, db: SessionDep) -> HTMLResponse:
    """One server and its port allocations (each with its project)."""
    session = await _admin(request, db)
    service = ServerService(db, session.principal)
    server = await service.get(handle)
    offset = _offset(request)
    allocations = await service.allocations(server.handle)
    shown = allocations[offset : offset + PAGE_SIZE]
    projects = ProjectRepository(db)
    rows = [
        {"allocation": allocation, "project": await projects.get(allocation.project_id)}
        for allocation in shown
    ]
    return _page(
        request,
        "server.html",
        session,
        server=server,
        rows=rows,
        pages=_pages(len(allocations), offset),
    )


@router.get("/admin/users")
async def users_page(request: Request, db: SessionDep) -> HTMLResponse:
    """Users and API keys (each paginated)."""
    session = await _admin(request, db)
    offset = _offset(request)
    key_offset = _offset(request, "keys_offset")
    users, total = await UserService(db).list(telegram_id=None, limit=PAGE_SIZE, offset=offset)
    keys, key_total = await AuthService(db).list(limit=PAGE_SIZE, offset=key_offset)
    return _page(
        request,
        "users.html",
        session,
        users=users,
        pages=_pages(total, offset),
        keys=keys,
        key_pages=_pages(key_total, key_offset),
        created=None,
    )


@router.post("/admin/users")
async def create_user(request: Request, db: SessionDep) -> Response:
    """Create a user (by Telegram id)."""
    session = await _admin(request, db)
    fields = await _form(request, session)
    try:
        telegram_id = int(fields.get("telegram_id", ""))
    except ValueError:
        raise InvalidRequestError("telegram_id must be a whole number") from None
    await UserService(db).create(
        UserCreate(telegram_id=telegram_id, is_admin=fields.get("is_admin") == "on")
    )
    return _redirect("/console/admin/users")


@router.post("/admin/keys")
async def create_key(request: Request, db: SessionDep) -> HTMLResponse:
    """Create a key; its secret is shown on this page once."""
    session = await _admin(request, db)
    fields = await _form(request, session)
    raw_user = fields.get("user_id", "").strip()
    try:
        user_id = int(raw_user) if raw_user else None
    except ValueError:
        raise InvalidRequestError("user_id must be a whole number") from None
    scope = fields.get("scope", "user")
    if scope not in ("admin", "service", "user"):
        raise InvalidRequestError("scope must be admin, service or user")
    request_body = ApiKeyCreate.model_validate(
        {"name": fields.get("name", "").strip() or "console", "scope": scope, "user_id": user_id}
    )
    row, secret = await AuthService(db).create(session.principal, request_body)
    users, total = await UserService(db).list(telegram_id=None, limit=PAGE_SIZE, offset=0)
    keys, key_total = await AuthService(db).list(limit=PAGE_SIZE, offset=0)
    return _page(
        request,
        "users.html",
        session,
        users=users,
        pages=_pages(total, 0),
        keys=keys,
        key_pages=_pages(key_total, 0),
        created={"id": row.id, "secret": secret},
    )


@router.post("/admin/keys/{key_id}/revoke")
async def revoke_key(key_id: int, request: Request, db: SessionDep) -> Response:
    """Revoke a key (and what it minted)."""
    session = await _admin(request, db)
    await _form(request, session)
    await AuthService(db).revoke(key_id, session.principal)
    return _redirect("/console/admin/users")
