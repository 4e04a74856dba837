"""Pinned deploys and safe releases with the real playbooks on the local server."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from services.infra_service.handlers import (
    InfraDeps,
    handle_ansible_deploy_message,
    remove_project,
)
from services.infra_service.settings import InfraSettings
from shared.contracts import ProvisionerResult
from shared.deploys import pin_repo
from shared.redis_server import free_port
from tests.infra_service.test_deploy import deploy_message, get_json
from tests.support.infra_service import app_files, gated_app, make_deps, make_repo

pytestmark = pytest.mark.slow


@pytest.fixture
async def removed(infra_settings: InfraSettings) -> AsyncIterator[list[str]]:
    """Projects the test deployed, removed from the session's server at its end (the
    session's other tests check that nothing of theirs is left running)."""
    names: list[str] = []
    yield names
    deps: InfraDeps = make_deps(infra_settings)[0]
    for name in names:
        await remove_project(name, "127.0.0.1", deps)


def head_of(bare: object) -> str:
    """The commit `main` of a bare repository points at."""
    done = subprocess.run(
        ["git", "--git-dir", str(bare), "rev-parse", "main"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


async def test_a_pinned_deploy_serves_exactly_that_commit(
    infra_settings: InfraSettings, provisioned: ProvisionerResult, removed: list[str]
) -> None:
    """`owner/name@sha` deploys that commit, not the head, and the app gets it as APP_COMMIT."""
    removed.append("pinned")
    deps, _ = make_deps(infra_settings)
    old = head_of(make_repo(infra_settings, "acme/pinned", app_files("old")))
    new = head_of(make_repo(infra_settings, "acme/pinned", app_files("new")))
    port = free_port()

    result = await handle_ansible_deploy_message(
        deploy_message("pinned", pin_repo("acme/pinned", old), port), deps
    )

    assert result.status == "success", result.error
    body = await asyncio.to_thread(get_json, f"{result.deployed_url}/")
    assert (body["version"], body["commit"]) == ("old", old)

    unpinned = await handle_ansible_deploy_message(
        deploy_message("pinned", "acme/pinned", port), deps
    )

    assert unpinned.status == "success", unpinned.error
    body = await asyncio.to_thread(get_json, f"{unpinned.deployed_url}/")
    assert (body["version"], body["commit"]) == ("new", new)


async def test_a_commit_not_in_the_repository_fails_naming_it(
    infra_settings: InfraSettings, provisioned: ProvisionerResult, removed: list[str]
) -> None:
    """A pin to a commit the repository does not hold fails, naming the commit."""
    removed.append("nosuch")
    deps, _ = make_deps(infra_settings)
    make_repo(infra_settings, "acme/nosuch", app_files("1"))
    ghost = "0123456789abcdef0123456789abcdef01234567"

    result = await handle_ansible_deploy_message(
        deploy_message("nosuch", pin_repo("acme/nosuch", ghost), free_port()), deps
    )

    assert result.status == "failed"
    assert f"commit {ghost} is not in the repository" in (result.error or "")
    assert result.deployed_url is None


async def test_a_release_that_crashes_puts_the_previous_one_back(
    infra_settings: InfraSettings, provisioned: ProvisionerResult, removed: list[str]
) -> None:
    """A new release that crashes at start fails the job at once (not after the health
    timeout) with the app's output, and the previous release answers again on the same port
    with its own commit."""
    settings = infra_settings.model_copy(update={"health_timeout_s": 120.0})
    removed.append("safe")
    deps, _ = make_deps(settings)
    good = head_of(make_repo(settings, "acme/safe", app_files("good")))
    port = free_port()
    first = await handle_ansible_deploy_message(deploy_message("safe", "acme/safe", port), deps)
    assert first.status == "success", first.error
    bad = head_of(make_repo(settings, "acme/safe", app_files("bad", crash=True)))

    started = time.monotonic()
    second = await handle_ansible_deploy_message(
        deploy_message("safe", pin_repo("acme/safe", bad), port), deps
    )

    assert time.monotonic() - started < 60
    assert second.status == "failed"
    error = second.error or ""
    assert (
        f"the new release (commit {bad[:12]}) did not answer /health with 200 (it exited" in error
    )
    assert "boom: this project refuses to start" in error
    assert f"the previous release (commit {good[:12]}) still serves on port {port}" in error
    assert second.deployed_url == f"http://127.0.0.1:{port}"
    body = await asyncio.to_thread(get_json, f"http://127.0.0.1:{port}/")
    assert (body["version"], body["commit"]) == ("good", good)
    assert psutil.pid_exists(int(str(body["pid"])))


async def test_a_release_that_never_gets_healthy_is_replaced_after_the_timeout(
    infra_settings: InfraSettings,
    provisioned: ProvisionerResult,
    tmp_path: Path,
    removed: list[str],
) -> None:
    """A new release that runs but never answers 200 is given the health timeout, then the
    previous release is put back."""
    settings = infra_settings.model_copy(update={"health_timeout_s": 2.0})
    removed.append("stuck")
    deps, _ = make_deps(settings)
    good = head_of(make_repo(settings, "acme/stuck", app_files("good")))
    port = free_port()
    first = await handle_ansible_deploy_message(deploy_message("stuck", "acme/stuck", port), deps)
    assert first.status == "success", first.error
    make_repo(settings, "acme/stuck", gated_app(tmp_path / "never-opened"))

    second = await handle_ansible_deploy_message(deploy_message("stuck", "acme/stuck", port), deps)

    assert second.status == "failed"
    assert "with 200 (not within 2 s; last status: 503)" in (second.error or "")
    assert "still serves" in (second.error or "")
    body = await asyncio.to_thread(get_json, f"http://127.0.0.1:{port}/")
    assert (body["version"], body["commit"]) == ("good", good)


async def test_a_first_release_that_crashes_leaves_nothing_serving(
    infra_settings: InfraSettings, provisioned: ProvisionerResult, removed: list[str]
) -> None:
    """With no previous release, a crashing first release fails with no URL."""
    settings = infra_settings.model_copy(update={"health_timeout_s": 2.0})
    removed.append("firstcrash")
    deps, _ = make_deps(settings)
    make_repo(settings, "acme/firstcrash", app_files("1", crash=True))

    result = await handle_ansible_deploy_message(
        deploy_message("firstcrash", "acme/firstcrash", free_port()), deps
    )

    assert result.status == "failed"
    assert "still serves" not in (result.error or "")
    assert result.deployed_url is None
