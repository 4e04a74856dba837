"""`orchestrator admin|project|task` against a real API process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli.main import app
from tests.api.process import ApiProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A bootstrapped database (first admin by CLI), an API on it, and the CLI's env."""
    directory: Path = tmp_path_factory.mktemp("cli")
    db_env = {"ORCHESTRATOR_DATABASE_URL": f"sqlite+aiosqlite:///{directory / 'api.db'}"}
    created = CliRunner().invoke(app, ["admin", "create-admin", "--telegram-id", "7"], env=db_env)
    assert created.exit_code == 0, created.output
    admin_key = created.stdout.strip().splitlines()[-1]
    assert admin_key.startswith("orc_")
    process = ApiProcess(
        database_url=db_env["ORCHESTRATOR_DATABASE_URL"],
        redis_url=None,
        relay_enabled=False,
        log_path=directory / "api.log",
    ).start()
    try:
        yield {"ORCHESTRATOR_API__URL": process.url, "ORCHESTRATOR_API__KEY": admin_key, **db_env}
    finally:
        process.terminate()


def run(env: dict[str, str], *args: str) -> str:
    """Run the CLI; return stdout, failing the test on a non-zero exit."""
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_project_and_task_commands(cli_env: dict[str, str]) -> None:
    """create → list → show → cancel, as tables and as JSON."""
    project = json.loads(run(cli_env, "project", "create", "shop", "--description", "d", "--json"))
    assert (project["name"], project["status"], project["owner_id"]) == ("shop", "draft", 1)
    assert "shop" in run(cli_env, "project", "list")
    listed = json.loads(run(cli_env, "project", "list", "--json"))
    assert [p["id"] for p in listed] == [project["id"]]
    assert project["id"] in run(cli_env, "project", "show", project["id"])
    task = json.loads(
        run(cli_env, "task", "create", project["id"], "--spec", "add a cart", "--json")
    )
    assert (task["type"], task["status"], task["correlation_id"] != "") == (
        "engineering",
        "queued",
        True,
    )
    traced = json.loads(
        run(
            {**cli_env, "PO_CORRELATION_ID": "tg-42-7"},
            "task",
            "create",
            project["id"],
            "--type",
            "scaffolding",
            "--json",
        )
    )
    assert traced["correlation_id"] == "tg-42-7"  # a PO worker's chat turn
    table = run(cli_env, "task", "list", "--project", project["id"])
    assert "queued" in table
    assert "engineering" in table
    cancelled = json.loads(run(cli_env, "task", "cancel", task["id"], "--json"))
    assert cancelled["status"] == "cancelled"
    shown = json.loads(run(cli_env, "task", "show", task["id"], "--json"))
    assert shown["status"] == "cancelled"


def test_errors_are_clear(cli_env: dict[str, str]) -> None:
    """A refused change and a bad credential exit 1 with the API's message."""
    project = json.loads(run(cli_env, "project", "create", "p", "--json"))
    task = json.loads(
        run(cli_env, "task", "create", project["id"], "--type", "scaffolding", "--json")
    )
    run(cli_env, "task", "cancel", task["id"])
    again = CliRunner().invoke(app, ["task", "cancel", task["id"]], env=cli_env)
    assert again.exit_code == 1
    assert "409 invalid_transition" in again.stderr
    bad = CliRunner().invoke(
        app, ["project", "list"], env={**cli_env, "ORCHESTRATOR_API__KEY": "orc_wrong"}
    )
    assert bad.exit_code == 1
    assert "401 unauthenticated: invalid or revoked credential" in bad.stderr


def test_create_key_for_a_user(cli_env: dict[str, str]) -> None:
    """`admin create-key --scope user` mints a token that acts as that user."""
    token = run(
        cli_env, "admin", "create-key", "--name", "phone", "--scope", "user", "--user-id", "1"
    ).strip()
    listed = json.loads(
        run({**cli_env, "ORCHESTRATOR_API__KEY": token}, "project", "list", "--json")
    )
    assert all(p["owner_id"] == 1 for p in listed)
    refused = CliRunner().invoke(
        app, ["admin", "create-key", "--name", "x", "--scope", "user"], env=cli_env
    )
    assert refused.exit_code == 1
    assert "needs a user_id" in refused.stderr
