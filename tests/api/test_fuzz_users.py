"""A property-based sweep of every operation of the OpenAPI document with two users' tokens.

Each generated case (positive and negative data) is sent by alice, then again with the ids
of its path, query and body pointing at bob's resources; and the same for bob against
alice. Pinned: no 5xx; no response carries the other user's data; no value stored in the
database holds a character its field refuses; and at the end, each user's resources are as
they were. Bounded: a few examples per operation, no coverage phase (about 20 s on the
2-core machine).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import requests
import schemathesis
from schemathesis.config import SchemathesisConfig

from shared.api_client.text import refused_character
from tests.api.process import ApiProcess, mint_key

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 8

ONE_LINE_COLUMNS = {
    "projects": ["id", "name", "repository_url"],
    "tasks": ["id", "project_id"],
    "api_keys": ["name"],
    "servers": ["handle", "address", "ssh_user", "credentials_ref"],
}
"""Stored columns whose values are one line: no control character at all."""
FREE_TEXT_COLUMNS = {"projects": ["description"], "tasks": ["spec"]}
"""Stored columns of free text: tabs and line breaks only."""


@dataclass
class Tenant:
    """A user with a token, a session, and the resources it owns."""

    name: str
    user_id: int
    telegram_id: int
    token: str
    marker: str
    """A string in the name of each of its projects (and its task's spec)."""
    key_id: int
    project_ids: list[str] = field(default_factory=list)
    task_ids: list[str] = field(default_factory=list)
    session: requests.Session = field(default_factory=requests.Session)

    def owns(self, node: object) -> str | None:
        """What of this tenant's data `node` (a parsed response) shows, if anything."""
        ids = {*self.project_ids, *self.task_ids}
        pending = [node]
        while pending:
            item = pending.pop()
            if isinstance(item, str):
                if item in ids or self.marker in item:
                    return f"{item[:80]!r}"
            elif isinstance(item, dict):
                if item.get("owner_id") == self.user_id or item.get("user_id") == self.user_id:
                    return f"an object of user {self.user_id}: {str(item)[:120]}"
                if item.get("telegram_id") == self.telegram_id:
                    return f"user {self.user_id}"
                pending.extend(item.values())
            elif isinstance(item, list):
                pending.extend(item)
        return None

    def ids_for(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """`parameters` with each id this tenant has a value for replaced by its own."""
        mine: dict[str, Any] = {
            "project_id": self.project_ids[0],
            "task_id": self.task_ids[0],
            "user_id": self.user_id,
            "owner_id": self.user_id,
            "key_id": self.key_id,
        }
        return {name: mine.get(name, value) for name, value in parameters.items()}


@dataclass
class Sweep:
    """The running API, its database file and two tenants."""

    base_url: str
    database: Path
    admin: httpx.Client
    alice: Tenant
    bob: Tenant


def _tenant(admin: httpx.Client, name: str, telegram_id: int) -> Tenant:
    user = admin.post("/api/users", json={"telegram_id": telegram_id}).json()
    key = admin.post("/api/keys", json={"name": name, "scope": "user", "user_id": user["id"]})
    marker = f"{name}-secret-{uuid.uuid4().hex[:10]}"
    tenant = Tenant(name, user["id"], telegram_id, key.json()["key"], marker, key.json()["id"])
    headers = {"Authorization": f"Bearer {tenant.token}"}
    with httpx.Client(base_url=str(admin.base_url), headers=headers) as own:
        for index in range(2):
            project = own.post("/api/projects", json={"name": f"{marker} {index}"}).json()
            tenant.project_ids.append(project["id"])
        body = {"project_id": tenant.project_ids[0], "type": "scaffolding", "spec": marker}
        tenant.task_ids.append(own.post("/api/tasks", json=body).json()["id"])
    return tenant


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sweep]:
    """A real API on a fresh SQLite file; alice and bob with two projects and a task each."""
    directory: Path = tmp_path_factory.mktemp("sweep")
    database = directory / "api.db"
    url = f"sqlite+aiosqlite:///{database}"
    key = asyncio.run(mint_key(url, "admin", "admin"))
    process = ApiProcess(
        database_url=url, redis_url=None, relay_enabled=False, log_path=directory / "api.log"
    ).start()
    headers = {"Authorization": f"Bearer {key}"}
    try:
        with httpx.Client(base_url=process.url, headers=headers, timeout=30) as admin:
            alice, bob = _tenant(admin, "alice", 1001), _tenant(admin, "bob", 1002)
            yield Sweep(process.url, database, admin, alice, bob)
            alice.session.close()
            bob.session.close()
    finally:
        process.terminate()


def _stored_problems(database: Path) -> list[str]:
    """Every stored value that holds a character its column's rule refuses."""
    problems: list[str] = []
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        for rules, free_text in ((ONE_LINE_COLUMNS, False), (FREE_TEXT_COLUMNS, True)):
            for table, columns in rules.items():
                for column in columns:
                    query = f"SELECT {column} FROM {table} WHERE {column} IS NOT NULL"  # noqa: S608 - our own names
                    for (value,) in connection.execute(query):
                        problem = refused_character(str(value), free_text=free_text)
                        if problem is not None:
                            problems.append(f"{table}.{column} {problem}: {value!r:.80}")
    return problems


def _call(case: schemathesis.Case[Any], sweep: Sweep, caller: Tenant) -> Any:
    response = case.call(
        base_url=sweep.base_url,
        session=caller.session,
        headers={"Authorization": f"Bearer {caller.token}"},
        timeout=30,
    )
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text}"
    return response


def _check_no_leak(response: Any, case: schemathesis.Case[Any], other: Tenant) -> None:
    if not response.content:
        return
    try:
        parsed = json.loads(response.content)
    except ValueError:
        parsed = response.text
    leak = other.owns(parsed)
    where = f"{case.method} {case.formatted_path} {case.query}"
    assert leak is None, f"{where} showed {other.name}'s data: {leak}"


CONFIG = SchemathesisConfig.from_dict(
    {
        "phases": {"coverage": {"enabled": False}},
        "generation": {"max-examples": MAX_EXAMPLES, "mode": "all"},
    }
)
OPENAPI = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
schema = schemathesis.openapi.from_dict(json.loads(OPENAPI.read_text()), config=CONFIG)
"""The checked-in document (test_openapi.py pins it to what the code serves)."""


@schema.parametrize()
@hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    database=None,
)
def test_two_users_see_only_their_own(case: schemathesis.Case[Any], sweep: Sweep) -> None:
    """No 5xx, no response with the other user's data (also with the ids of its path, query
    and body pointing at the other's), no stored refused character, whatever the request."""
    generated = (dict(case.path_parameters or {}), case.query, case.body)
    for caller, other in ((sweep.alice, sweep.bob), (sweep.bob, sweep.alice)):
        _check_no_leak(_call(case, sweep, caller), case, other)
        path, query, body = generated
        case.path_parameters = other.ids_for(path)
        if isinstance(query, dict):
            case.query = other.ids_for(query)
        if isinstance(body, dict):
            case.body = other.ids_for(body)
        _check_no_leak(_call(case, sweep, caller), case, other)
        case.path_parameters, case.query, case.body = generated
    assert _stored_problems(sweep.database) == []


def test_after_the_sweep_each_user_still_has_its_data(sweep: Sweep) -> None:
    """Neither user's token was revoked, nor a project or task of theirs taken or renamed
    by the other (runs after the sweep in this module)."""
    for tenant in (sweep.alice, sweep.bob):
        headers = {"Authorization": f"Bearer {tenant.token}"}
        with httpx.Client(base_url=sweep.base_url, headers=headers) as own:
            for project_id in tenant.project_ids:
                project = own.get(f"/api/projects/{project_id}")
                assert project.status_code == 200, project.text
                assert tenant.marker in project.json()["name"]
                assert project.json()["owner_id"] == tenant.user_id
            for task_id in tenant.task_ids:
                task = own.get(f"/api/tasks/{task_id}")
                assert (task.status_code, task.json()["spec"]) == (200, tenant.marker)
    assert _stored_problems(sweep.database) == []
