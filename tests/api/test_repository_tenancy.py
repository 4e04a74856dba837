"""The repository of a project is the system's to record: users cannot point a project at
any repository, and the system's own services only at the project's own one."""

from __future__ import annotations

import pytest

from shared.api_client import ForbiddenError, ValidationError
from shared.api_client.schemas import ProjectUpdate
from shared.contracts import ProjectCreate
from shared.git.naming import repo_name
from tests.support.api import ApiHarness


async def test_a_user_cannot_set_the_repository_of_their_own_project(api: ApiHarness) -> None:
    """The attack: A points A's project at B's repository. 403 naming the field; nothing is
    stored, and A's other changes in the same request are not applied either."""
    _, alice = await api.user(1)
    _, bob = await api.user(2)
    async with api.client(alice) as a, api.client(bob) as b:
        victim = await b.create_project(ProjectCreate(name="victim"))
        mine = await a.create_project(ProjectCreate(name="shop", description="before"))
        victim_url = f"file:///anything/projects/{repo_name(victim.id, victim.name)}.git"
        for url in (victim_url, f"file:///x/projects/{repo_name(mine.id, mine.name)}.git", None):
            with pytest.raises(ForbiddenError) as refused:
                await a.update_project(
                    mine.id, ProjectUpdate(repository_url=url, description="after")
                )
            assert refused.value.fields[0].field == "repository_url"
        after = await a.get_project(mine.id)
    assert (after.repository_url, after.description) == (None, "before")


@pytest.mark.parametrize(
    "url",
    [
        "file:///r/projects/other-12345678.git",
        "https://github.com/acme/shop",
        "https://token:x-oauth@github.com/acme/{name}.git",
        "https://github.com/acme/{name}.git?ref=x",
        "file:///r/projects/../victims/{name}.git",
        "ftp://host/acme/{name}.git",
        "{name}",
    ],
)
async def test_the_system_records_only_the_projects_own_repository(
    api: ApiHarness, url: str
) -> None:
    """Even a service credential cannot record another repository, credentials in a URL,
    or a path with `..`: 422 naming the field."""
    _, alice = await api.user(1)
    async with api.client(alice) as a:
        project = await a.create_project(ProjectCreate(name="shop"))
    bad = url.format(name=repo_name(project.id, project.name))
    for key in (api.service_key, api.admin_key):
        async with api.client(key) as system:
            with pytest.raises(ValidationError) as refused:
                await system.update_project(project.id, ProjectUpdate(repository_url=bad))
            assert refused.value.fields[0].field == "repository_url"
            assert repo_name(project.id, project.name) in refused.value.body.message


async def test_the_scaffolder_records_the_projects_repository(api: ApiHarness) -> None:
    """A service records the clone URL of `<owner>/<slug>-<id8>` (local and GitHub forms)."""
    _, alice = await api.user(1)
    async with api.client(alice) as a:
        project = await a.create_project(ProjectCreate(name="My Shop!"))
    name = repo_name(project.id, project.name)
    assert name.startswith("my-shop-")
    async with api.client(api.service_key) as system:
        for url in (
            f"file:///var/repos/projects/{name}.git",
            f"https://github.com/acme/{name}.git",
        ):
            updated = await system.update_project(project.id, ProjectUpdate(repository_url=url))
            assert updated.repository_url == url


@pytest.mark.parametrize("handle", ["../etc", "a/b", "-x", ".hidden", "a b", "$(id)"])
async def test_a_server_handle_is_a_plain_name(api: ApiHarness, handle: str) -> None:
    """Server handles become inventory names: anything but a plain name is 422, not stored."""
    async with api.http(api.admin_key) as http:
        refused = await http.post("/api/servers", json={"handle": handle, "address": "h"})
        listed = await http.get("/api/servers")
    assert refused.status_code == 422
    assert refused.json()["fields"][0]["field"] == "body.handle"
    assert listed.json()["total"] == 0
