"""The console's rules without a browser: the real application on a SQLite file, requests
through httpx's ASGI transport (bad input, one-time links, expiry, CSRF, redirects)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from services.api.app import create_app
from services.api.app_probe import AppProbe
from services.api.auth.models import ApiKey
from services.api.auth.service import AuthService
from services.api.console.router import COOKIE
from services.api.console.sessions import LINK_NAME, SESSION_NAME
from services.api.db import Database
from services.api.deploys.models import Deploy
from services.api.migrate import upgrade
from services.api.projects.models import Project
from services.api.tasks.models import Task
from services.api.users.models import User
from shared.contracts import new_id
from shared.git import LocalGitProvider, commit_all, init_worktree, push
from shared.git.naming import repo_full_name


@dataclass
class Console:
    client: httpx.AsyncClient
    database: Database
    user_key: str
    admin_key: str
    repos: Path
    app: FastAPI

    async def csrf(self) -> str:
        page = await self.client.get("/console/")
        return page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]

    async def project(self, name: str = "shop") -> str:
        """A project made through the console: its id."""
        made = await self.client.post(
            "/console/projects", data={"name": name, "csrf": await self.csrf()}
        )
        assert made.status_code == 303, made.text
        return str(made.headers["location"]).rsplit("/", 1)[1]

    async def task(self, project_id: str, result: dict[str, Any] | None, status: str) -> str:
        """An engineering task of the project as its flow left it: its id."""
        async with self.database.sessionmaker() as session:
            project = await session.get(Project, project_id)
            assert project is not None
            task = Task(
                id=new_id(),
                project_id=project_id,
                user_id=project.owner_id,
                type="engineering",
                status=status,
                spec="add /hello",
                result=result,
                correlation_id=new_id(),
            )
            session.add(task)
            await session.commit()
            return task.id

    async def sign_in(self, key: str) -> httpx.Response:
        return await self.client.post("/console/login", data={"api_key": key})

    async def age(self, name: str) -> None:
        """Make every live key called `name` years old."""
        async with self.database.sessionmaker() as session:
            await session.execute(
                update(ApiKey)
                .where(ApiKey.name == name, ApiKey.revoked_at.is_(None))
                .values(created_at=datetime(2020, 1, 1, tzinfo=UTC))
            )
            await session.commit()


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'console.db'}")
    await upgrade(database)
    async with database.sessionmaker() as session:
        user = User(telegram_id=7, is_admin=False)
        session.add(user)
        await session.flush()
        _, user_key = await AuthService(session).create_key("u", "user", user.id)
        _, admin_key = await AuthService(session).create_key("a", "admin", None)
        await session.commit()
    app = create_app(database, git=LocalGitProvider(tmp_path / "repos", owner="projects"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://console") as client:
        yield Console(client, database, user_key, admin_key, tmp_path / "repos", app)
    await database.close()


async def test_sign_in_sets_a_strict_http_only_cookie(console: Console) -> None:
    answer = await console.sign_in(console.user_key)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/"
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert "path=/console" in cookie
    assert console.user_key not in answer.headers["set-cookie"]  # a session key, not the key
    page = await console.client.get("/console/")
    assert page.status_code == 200
    assert "No project yet" in page.text


async def test_bad_keys_and_console_secrets_do_not_sign_in(console: Console) -> None:
    for key in ("", "orc_unknown", "x" * 300):
        answer = await console.sign_in(key)
        assert answer.status_code == 401, key
        assert "set-cookie" not in answer.headers
    await console.sign_in(console.user_key)
    session_secret = console.client.cookies[COOKIE]
    console.client.cookies.clear()
    refused = await console.sign_in(session_secret)
    assert refused.status_code == 401
    assert "not a console credential" in refused.text


async def test_next_is_only_a_console_path(console: Console) -> None:
    for target, expected in (
        ("/console/admin", "/console/admin"),
        ("//evil.example/console/", "/console/"),
        ("https://evil.example/", "/console/"),
        ("/console/\\\\evil", "/console/"),
    ):
        answer = await console.client.post(
            "/console/login", data={"api_key": console.user_key, "next": target}
        )
        assert answer.headers["location"] == expected, target


async def test_a_link_works_once_and_expires(console: Console) -> None:
    bearer = {"Authorization": f"Bearer {console.user_key}"}
    made = await console.client.post("/console/links", headers=bearer)
    assert made.status_code == 201
    path = made.json()["path"]
    first = await console.client.get(path)
    assert first.status_code == 303
    assert COOKIE in first.cookies
    console.client.cookies.clear()
    again = await console.client.get(path)
    assert again.status_code == 401
    assert "used already" in again.text

    late = (await console.client.post("/console/links", headers=bearer)).json()["path"]
    await console.age(LINK_NAME)
    expired = await console.client.get(late)
    assert expired.status_code == 401
    assert "expired" in expired.text


async def test_a_session_cannot_ask_for_links(console: Console) -> None:
    await console.sign_in(console.user_key)
    secret = console.client.cookies[COOKIE]
    refused = await console.client.post(
        "/console/links", headers={"Authorization": f"Bearer {secret}"}
    )
    assert refused.status_code == 401
    missing = await console.client.post("/console/links", headers={"Authorization": "Basic x"})
    assert missing.status_code == 401


async def test_expired_and_signed_out_sessions_are_refused(console: Console) -> None:
    await console.sign_in(console.user_key)
    await console.age(SESSION_NAME)
    expired = await console.client.get("/console/")
    assert expired.status_code == 303
    assert expired.headers["location"].startswith("/console/login")
    posted = await console.client.post("/console/projects", data={"name": "x"})
    assert posted.status_code == 401

    await console.sign_in(console.user_key)
    page = await console.client.get("/console/")
    token = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    secret = console.client.cookies[COOKIE]
    assert (await console.client.post("/console/logout", data={"csrf": token})).status_code == 303
    console.client.cookies.set(COOKIE, secret)
    after = await console.client.get("/console/")
    assert after.status_code == 303


async def test_forms_need_their_csrf_token_and_valid_input(console: Console) -> None:
    await console.sign_in(console.user_key)
    page = await console.client.get("/console/")
    token = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    refused = await console.client.post("/console/projects", data={"name": "a"})
    assert refused.status_code == 403
    assert "CSRF" in refused.text
    blank = await console.client.post("/console/projects", data={"name": " ", "csrf": token})
    assert blank.status_code == 422
    made = await console.client.post("/console/projects", data={"name": "shop", "csrf": token})
    assert made.status_code == 303
    project_path = made.headers["location"]
    no_spec = await console.client.post(
        f"{project_path}/tasks",
        data={"spec": "", "csrf": token},
    )
    assert no_spec.status_code == 422
    bad_offset = await console.client.get("/console/?offset=abc")
    assert bad_offset.status_code == 422
    assert "offset must be a whole number" in bad_offset.text
    negative = await console.client.get("/console/?offset=-1")
    assert negative.status_code == 422
    bad_sha = await console.client.post(
        f"{project_path}/rollback", data={"sha": "zz", "csrf": token}
    )
    assert bad_sha.status_code == 422
    unknown = await console.client.get("/console/tasks/nope")
    assert unknown.status_code == 404


async def test_admin_pages(console: Console) -> None:
    await console.sign_in(console.user_key)
    assert (await console.client.get("/console/admin/users")).status_code == 403
    console.client.cookies.clear()
    await console.sign_in(console.admin_key)
    users = await console.client.get("/console/admin/users")
    assert users.status_code == 200
    token = users.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    created = await console.client.post(
        "/console/admin/keys", data={"name": "ci", "scope": "service", "csrf": token}
    )
    assert created.status_code == 200
    assert 'id="new-secret">orc_' in created.text
    bad_scope = await console.client.post(
        "/console/admin/keys", data={"name": "x", "scope": "root", "csrf": token}
    )
    assert bad_scope.status_code == 422
    no_redis = await console.client.get("/console/admin")
    assert no_redis.status_code == 503
    assert "without Redis" in no_redis.text


async def _pushed_commit(console: Console, project_id: str, name: str, work: Path) -> str:
    """A commit on the main branch of the project's own repository: its sha."""
    provider = LocalGitProvider(console.repos, owner="projects")
    repo = await provider.create_repo(repo_full_name("projects", project_id, name))
    await init_worktree(work, branch="main")
    (work / "app.py").write_text("def hello():\n    return 'hello'\n")
    sha = await commit_all(work, "add /hello")
    assert sha is not None
    await push(work, repo.clone_url, "main")
    return sha


async def test_the_task_page_shows_runs_checks_cost_and_the_diff(
    console: Console, tmp_path: Path
) -> None:
    await console.sign_in(console.user_key)
    project_id = await console.project("shop")
    sha = await _pushed_commit(console, project_id, "shop", tmp_path / "work")
    checks = {
        "rounds": 2,
        "passed": True,
        "runs": [
            {"round": 1, "after": "spec", "passed": False, "problems": [], "note": "",
             "checks": [{"command": "pytest -q", "cwd": ".", "exit_code": 1, "passed": False,
                         "output_tail": "FAILED test_hello - <assert>"}]},
            {"round": 2, "after": "fix", "passed": True, "problems": [], "note": "",
             "checks": [{"command": "pytest -q", "cwd": ".", "exit_code": 0, "passed": True,
                         "output_tail": "1 passed"}]},
        ],
    }  # fmt: skip
    result = {"status": "success", "merged_sha": sha, "checks": checks, "agent_answer": "done"}
    task_id = await console.task(project_id, result, "completed")
    run = {
        "step": "send_spec", "agent": "claude", "status": "success", "prompt_chars": 10,
        "tools": [{"name": "Edit", "target": "app.py", "outcome": "ok"}],
        "input_tokens": 1000, "output_tokens": 200, "cost_usd": 0.0125, "duration_ms": 4200,
    }  # fmt: skip
    recorded = await console.client.post(
        f"/api/tasks/{task_id}/runs",
        json=run,
        headers={"Authorization": f"Bearer {console.admin_key}"},
    )
    assert recorded.status_code == 201, recorded.text
    page = await console.client.get(f"/console/tasks/{task_id}")
    assert page.status_code == 200
    text = page.text
    assert "1 agent run · 1200 tokens · $0.0125" in text
    assert "<code>Edit</code>" in text
    assert "app.py" in text
    assert "FAILED test_hello - &lt;assert&gt;" in text  # the checks' output, escaped
    assert "1 passed" in text
    assert f'Commit <span class="mono">{sha[:12]}</span>' in text
    assert '<span class="add">+    return &#39;hello&#39;</span>' in text
    assert 'id="diff-cut"' not in text
    assert f"after_run={recorded.json()['id']}" in text  # the live stream sends later runs only


async def test_a_missing_commit_and_a_long_diff_are_said(
    console: Console, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await console.sign_in(console.user_key)
    project_id = await console.project("shop")
    gone = await console.task(project_id, {"merged_sha": "a" * 40}, "completed")
    page = await console.client.get(f"/console/tasks/{gone}")
    assert page.status_code == 200
    assert "cannot be read" in page.text
    assert 'id="diff-missing"' in page.text
    sha = await _pushed_commit(console, project_id, "shop", tmp_path / "work")
    bad = await console.task(project_id, {"merged_sha": "--output=/tmp/x"}, "completed")
    refused = await console.client.get(f"/console/tasks/{bad}")
    assert refused.status_code == 200
    assert "not a commit id" in refused.text
    monkeypatch.setattr("services.api.console.router.DIFF_MAX_BYTES", 40)
    long = await console.task(project_id, {"merged_sha": sha}, "completed")
    cut = await console.client.get(f"/console/tasks/{long}")
    assert 'id="diff-cut"' in cut.text


async def test_another_users_task_page_is_not_found(console: Console) -> None:
    await console.sign_in(console.admin_key)
    async with console.database.sessionmaker() as session:
        other = User(telegram_id=8, is_admin=False)
        session.add(other)
        await session.commit()
        other_id = other.id
    async with console.database.sessionmaker() as session:
        project = Project(id=new_id(), name="theirs", status="draft", owner_id=other_id,
                          modules_text="backend")  # fmt: skip
        session.add(project)
        await session.commit()
        project_id = project.id
    task_id = await console.task(project_id, None, "queued")
    console.client.cookies.clear()
    await console.sign_in(console.user_key)
    assert (await console.client.get(f"/console/tasks/{task_id}")).status_code == 404
    assert (await console.client.get(f"/console/projects/{project_id}")).status_code == 404


async def _deployed(console: Console, project_id: str, sha: str, url: str) -> None:
    """A succeeded deploy of `sha` in the project's history."""
    task_id = await console.task(project_id, None, "completed")
    async with console.database.sessionmaker() as session:
        session.add(
            Deploy(
                project_id=project_id,
                task_id=task_id,
                sha=sha,
                kind="deploy",
                outcome="succeeded",
                url=url,
            )
        )
        await session.commit()


async def test_the_project_page_pages_its_commits_and_shows_health(
    console: Console, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await console.sign_in(console.user_key)
    project_id = await console.project("shop")
    work = tmp_path / "work"
    first = await _pushed_commit(console, project_id, "shop", work)
    for number in range(2):
        (work / "n.txt").write_text(f"{number}\n")
        await commit_all(work, f"change {number}")
    provider = LocalGitProvider(console.repos, owner="projects")
    await push(
        work, provider.path_of(repo_full_name("projects", project_id, "shop")).as_uri(), "main"
    )
    monkeypatch.setattr("services.api.console.router.PAGE_SIZE", 2)
    page = await console.client.get(f"/console/projects/{project_id}")
    assert page.status_code == 200
    assert "Commits on main" in page.text
    assert "change 1" in page.text
    assert "change 0" in page.text
    assert "add /hello" not in page.text.split('id="commits"', 1)[1]
    assert "commits_offset=2" in page.text  # older commits on the next page
    older = await console.client.get(f"/console/projects/{project_id}?commits_offset=2")
    assert first[:12] in older.text.split('id="commits"', 1)[1]
    bad = await console.client.get(f"/console/projects/{project_id}?commits_offset=x")
    assert bad.status_code == 422

    await _deployed(console, project_id, first, "http://127.0.0.1:9")  # nothing listens
    deployed = await console.client.get(f"/console/projects/{project_id}")
    assert "healthy at deploy" in deployed.text  # no probe yet: what the deploy found
    probe = AppProbe(console.database, interval_s=60, timeout_s=2)
    assert await probe.probe_once() == {project_id: False}
    console.app.state.app_probe = probe
    probed = await console.client.get(f"/console/projects/{project_id}")
    health = probed.text.split('id="health">', 1)[1].split("</dd>", 1)[0]
    assert first[:12] in health
    assert ">down</span>" in health
    listed = await console.client.get("/console/")
    assert ">down</span>" in listed.text


async def test_an_earlier_release_offers_a_roll_back(console: Console, tmp_path: Path) -> None:
    await console.sign_in(console.user_key)
    project_id = await console.project("shop")
    await _deployed(console, project_id, "a" * 40, "http://127.0.0.1:9")
    await _deployed(console, project_id, "b" * 40, "http://127.0.0.1:9")
    page = await console.client.get(f"/console/projects/{project_id}")
    assert page.text.count('class="rollback"') == 1
    assert f'name="sha" value="{"a" * 40}"' in page.text


async def test_archive_a_project_from_its_page(console: Console) -> None:
    await console.sign_in(console.user_key)
    project_id = await console.project("shop")
    token = await console.csrf()
    path = f"/console/projects/{project_id}/archive"
    no_token = await console.client.post(path, data={"confirm": "shop"})
    assert no_token.status_code == 403
    wrong = await console.client.post(path, data={"confirm": "shoe", "csrf": token})
    assert wrong.status_code == 422
    assert "type the project&#39;s name (shop)" in wrong.text
    done = await console.client.post(path, data={"confirm": "shop", "csrf": token})
    assert done.status_code == 303
    shown = await console.client.get(f"/console/projects/{project_id}")
    assert 'id="archived-note"' in shown.text
    assert 'id="spec"' not in shown.text
    rest = await console.client.get(
        f"/api/projects/{project_id}", headers={"Authorization": f"Bearer {console.user_key}"}
    )
    assert rest.json()["status"] == "archived"  # the same change as the CLI's archive
    listed = await console.client.get("/console/")
    assert f"/console/projects/{project_id}" not in listed.text
    assert 'id="show-archived"' in listed.text
    everything = await console.client.get("/console/?archived=1")
    assert f"/console/projects/{project_id}" in everything.text
    refused = await console.client.post(
        f"/console/projects/{project_id}/tasks", data={"spec": "more", "csrf": token}
    )
    assert refused.status_code == 422
    assert "the project is archived" in refused.text
    again = await console.client.post(path, data={"confirm": "shop", "csrf": token})
    assert again.status_code == 303  # archived already: nothing changes


async def test_another_users_project_cannot_be_archived(console: Console) -> None:
    async with console.database.sessionmaker() as session:
        other = User(telegram_id=9, is_admin=False)
        session.add(other)
        await session.flush()
        project = Project(id=new_id(), name="theirs", status="draft", owner_id=other.id,
                          modules_text="backend")  # fmt: skip
        session.add(project)
        await session.commit()
        project_id = project.id
    console.client.cookies.clear()
    await console.sign_in(console.user_key)
    answer = await console.client.post(
        f"/console/projects/{project_id}/archive",
        data={"confirm": "theirs", "csrf": await console.csrf()},
    )
    assert answer.status_code == 404


async def test_the_servers_pages_show_status_and_allocations(
    console: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    await console.sign_in(console.user_key)
    project_id = await console.project("shop")
    other_id = await console.project("blog")
    assert (await console.client.get("/console/admin/servers")).status_code == 403
    assert (await console.client.get("/console/admin/servers/web-1")).status_code == 403
    admin = {"Authorization": f"Bearer {console.admin_key}"}
    body = {"handle": "web-1", "address": "10.0.0.5", "status": "ready",
            "port_range_start": 20000, "port_range_end": 20009}  # fmt: skip
    assert (await console.client.post("/api/servers", json=body, headers=admin)).is_success
    for project in (project_id, other_id):
        allocated = await console.client.post(
            "/api/servers/web-1/allocations", json={"project_id": project}, headers=admin
        )
        assert allocated.is_success, allocated.text
    console.client.cookies.clear()
    await console.sign_in(console.admin_key)
    listed = await console.client.get("/console/admin/servers")
    assert listed.status_code == 200
    row = listed.text.split('id="servers"', 1)[1]
    assert "web-1" in row
    assert "s-ready" in row
    assert "root@10.0.0.5" in row
    assert "2 of 10" in row
    monkeypatch.setattr("services.api.console.router.PAGE_SIZE", 1)
    one = await console.client.get("/console/admin/servers/web-1")
    assert one.status_code == 200
    table = one.text.split('id="allocations"', 1)[1]
    assert "20000" in table
    assert f"/console/projects/{project_id}" in table
    assert "1–1 of 2" in one.text
    second = await console.client.get("/console/admin/servers/web-1?offset=1")
    assert "20001" in second.text.split('id="allocations"', 1)[1]
    missing = await console.client.get("/console/admin/servers/nope")
    assert missing.status_code == 404


async def test_runs_after_those_the_page_shows_arrive_on_the_event_stream(
    console: Console,
) -> None:
    await console.sign_in(console.user_key)
    project_id = await console.project("shop")
    task_id = await console.task(project_id, None, "running")
    admin = {"Authorization": f"Bearer {console.admin_key}"}
    run = {"step": "send_spec", "agent": "claude", "status": "success", "prompt_chars": 1,
           "tools": [{"name": "Bash", "target": "pytest -q", "outcome": "exit 0"}]}  # fmt: skip
    first = await console.client.post(f"/api/tasks/{task_id}/runs", json=run, headers=admin)
    second = await console.client.post(
        f"/api/tasks/{task_id}/runs", json={**run, "step": "fix"}, headers=admin
    )
    assert first.status_code == second.status_code == 201
    async with console.database.sessionmaker() as session:
        await session.execute(update(Task).where(Task.id == task_id).values(status="completed"))
        await session.commit()
    # the page showed the first run already: the stream sends the later one, then the end
    path = f"/console/tasks/{task_id}/events?after_run={first.json()['id']}"
    streamed = await console.client.get(path)
    assert streamed.status_code == 200
    events = [block for block in streamed.text.split("\n\n") if block]
    runs = [block for block in events if block.startswith("event: run")]
    assert len(runs) == 1
    assert '"step": "fix"' in runs[0]
    assert '"target": "pytest -q"' in runs[0]
    assert events[-1].startswith("event: end")
    bad = await console.client.get(f"/console/tasks/{task_id}/events?after_run=x")
    assert bad.status_code == 422
