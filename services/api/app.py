"""The FastAPI application: routers, error handlers, OpenAPI document."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from services.api.auth.cache import CredentialCache
from services.api.auth.router import router as keys_router
from services.api.body_limit import DEFAULT_MAX_BODY_BYTES, BodyLimit
from services.api.console import install_console
from services.api.db import Database
from services.api.deploys.router import releases_router
from services.api.deploys.router import router as deploys_router
from services.api.error_handlers import ERROR_RESPONSES, install_error_handlers
from services.api.health import router as health_router
from services.api.observe import Observe
from services.api.projects.importer import ProjectImporter
from services.api.projects.router import router as projects_router
from services.api.runs.router import router as runs_router
from services.api.secrets.router import router as secrets_router
from services.api.servers.router import router as servers_router
from services.api.tasks.router import router as tasks_router
from services.api.users.router import router as users_router
from shared.git.provider import GitProvider
from shared.secret_box import SecretBox
from shared.settings import ConsoleSettings, TaskDeadlines

__all__ = ["API_VERSION", "create_app"]

API_VERSION = "1.0.0"


def create_app(
    database: Database,
    *,
    relay_wake: asyncio.Event | None = None,
    task_deadlines: TaskDeadlines | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    secret_box: SecretBox | None = None,
    console: ConsoleSettings | None = None,
    redis_url: str | None = None,
    api_url: str | None = None,
    monthly_budget_usd: float | None = None,
    task_hold_usd: float | None = None,
    auth_cache_ttl_s: float = 5.0,
    git: GitProvider | None = None,
    git_owner: str = "projects",
    git_branch: str = "main",
    importer: ProjectImporter | None = None,
) -> FastAPI:
    """The API on `database`; `relay_wake` is set after each commit that wrote outbox rows;
    `task_deadlines` give each new task its deadline (default: `TaskDeadlines()`); a request
    body over `max_body_bytes` is refused with 413; `secret_box` seals project secrets (without
    it, setting one answers 503); credentials are trusted for `auth_cache_ttl_s` once looked
    up (`auth/cache.py`); the console reads projects' repositories (owner `git_owner`) through
    `git` (without it, it shows no commits), whose base branch is `git_branch`."""
    app = FastAPI(
        title="Codegen orchestrator API",
        version=API_VERSION,
        description=(
            "Users, projects, tasks, servers and port allocations. Every route except "
            "`/health` and `/ready` needs `Authorization: Bearer <API key or user token>`. "
            "Every error has the body `ErrorBody`. A request body may hold at most "
            f"{max_body_bytes} bytes (413 `body_too_large`)."
        ),
        license_info={"name": "MIT", "identifier": "MIT"},
        servers=[{"url": "/", "description": "The API that serves this document"}],
    )
    app.state.db = database
    app.state.relay_wake = relay_wake or asyncio.Event()
    app.state.task_deadlines = task_deadlines or TaskDeadlines()
    app.state.secret_box = secret_box
    app.state.importer = importer
    app.state.monthly_budget_usd = monthly_budget_usd
    app.state.task_hold_usd = task_hold_usd
    app.state.credentials = CredentialCache(ttl_s=auth_cache_ttl_s)
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(Observe)
    app.include_router(health_router)
    routers = (
        # the tasks' routes first: a request is matched against the routes in order, and
        # the hottest ones (a task's read, a create) no longer try every other router's
        tasks_router,
        users_router,
        keys_router,
        projects_router,
        deploys_router,
        releases_router,
        secrets_router,
        runs_router,
        servers_router,
    )
    for router in routers:
        app.include_router(router, responses=ERROR_RESPONSES)
    install_console(  # the web console, `/console/`, not in the schema
        app, console, redis_url, api_url, git=git, git_owner=git_owner, git_branch=git_branch
    )
    return app
