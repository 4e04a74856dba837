"""Pinned deploys and safe releases with the real playbooks on the local server."""

from __future__ import annotations

import asyncio
import subprocess

import psutil
import pytest

from services.infra_service.handlers import handle_ansible_deploy_message
from services.infra_service.settings import InfraSettings
from shared.contracts import ProvisionerResult
from shared.deploys import pin_repo
from shared.redis_server import free_port
from tests.infra_service.conftest import app_files, make_deps, make_repo
from tests.infra_service.test_deploy import deploy_message, get_json

pytestmark = pytest.mark.slow


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
    infra_settings: InfraSettings, provisioned: ProvisionerResult
) -> None:
    """`owner/name@sha` deploys that commit, not the head, and the app gets it as APP_COMMIT."""
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
    infra_settings: InfraSettings, provisioned: ProvisionerResult
) -> None:
    """A pin to a commit the repository does not hold fails, naming the commit."""
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
    infra_settings: InfraSettings, provisioned: ProvisionerResult
) -> None:
    """A new release failing its health check fails the job with the app's output, and the
    previous release answers again on the same port with its own commit."""
    settings = infra_settings.model_copy(update={"health_timeout_s": 3.0})
    deps, _ = make_deps(settings)
    good = head_of(make_repo(settings, "acme/safe", app_files("good")))
    port = free_port()
    first = await handle_ansible_deploy_message(deploy_message("safe", "acme/safe", port), deps)
    assert first.status == "success", first.error
    bad = head_of(make_repo(settings, "acme/safe", app_files("bad", crash=True)))

    second = await handle_ansible_deploy_message(
        deploy_message("safe", pin_repo("acme/safe", bad), port), deps
    )

    assert second.status == "failed"
    error = second.error or ""
    assert f"the new release (commit {bad[:12]}) did not answer /health" in error
    assert "boom: this project refuses to start" in error
    assert f"the previous release (commit {good[:12]}) still serves on port {port}" in error
    assert second.deployed_url == f"http://127.0.0.1:{port}"
    body = await asyncio.to_thread(get_json, f"http://127.0.0.1:{port}/")
    assert (body["version"], body["commit"]) == ("good", good)
    assert psutil.pid_exists(int(str(body["pid"])))


async def test_a_first_release_that_crashes_leaves_nothing_serving(
    infra_settings: InfraSettings, provisioned: ProvisionerResult
) -> None:
    """With no previous release, a crashing first release fails with no URL."""
    settings = infra_settings.model_copy(update={"health_timeout_s": 2.0})
    deps, _ = make_deps(settings)
    make_repo(settings, "acme/firstcrash", app_files("1", crash=True))

    result = await handle_ansible_deploy_message(
        deploy_message("firstcrash", "acme/firstcrash", free_port()), deps
    )

    assert result.status == "failed"
    assert "still serves" not in (result.error or "")
    assert result.deployed_url is None
