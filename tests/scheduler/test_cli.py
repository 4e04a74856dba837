"""`orchestrator task schedule|redrive` against a real API process, its relay and Redis, with
task deadlines configured through the environment."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import cast

import pytest
import redis
from typer.testing import CliRunner

from services.cli.main import app
from shared.contracts import DeployMessage
from tests.api.process import ApiProcess

pytestmark = pytest.mark.slow


def run(env: dict[str, str], *args: str) -> str:
    """Run the CLI; return stdout, failing the test on a non-zero exit."""
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.stdout


def deploy_messages(client: redis.Redis, count: int) -> list[DeployMessage]:
    """The messages on deploy:queue once there are `count` (the relay runs in the API)."""
    for _ in range(200):
        entries = cast(list[tuple[bytes, dict[bytes, bytes]]], client.xrange("deploy:queue"))
        if len(entries) >= count:
            return [DeployMessage.model_validate_json(fields[b"payload"]) for _, fields in entries]
        time.sleep(0.05)
    raise TimeoutError(f"deploy:queue has fewer than {count} entries")


def test_schedule_and_redrive(tmp_path: Path, redis_url: str) -> None:
    """The configured deploy allowance sets the deadline; a re-drive puts the same message on
    the queue again; a running task is refused with the API's reason."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    db_env = {"ORCHESTRATOR_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'api.db'}"}
    created = CliRunner().invoke(app, ["admin", "create-admin", "--telegram-id", "7"], env=db_env)
    assert created.exit_code == 0, created.output
    admin_key = created.stdout.strip().splitlines()[-1]
    process = ApiProcess(
        database_url=db_env["ORCHESTRATOR_DATABASE_URL"],
        redis_url=redis_url,
        log_path=tmp_path / "api.log",
    )
    process.env["ORCHESTRATOR_API__TASK_DEADLINES__DEPLOY_S"] = "600"
    process.start()
    try:
        env = {"ORCHESTRATOR_API__URL": process.url, "ORCHESTRATOR_API__KEY": admin_key, **db_env}
        project = json.loads(run(env, "project", "create", "shop", "--json"))
        task = json.loads(run(env, "task", "create", project["id"], "--type", "deploy", "--json"))
        schedule = json.loads(run(env, "task", "schedule", task["id"], "--json"))
        allowance = datetime.fromisoformat(schedule["deadline_at"]) - datetime.fromisoformat(
            schedule["created_at"]
        )
        allowance_s = allowance.total_seconds()
        assert (allowance_s, schedule["redrive_count"]) == (600, 0)
        assert "deadline" in run(env, "task", "schedule", task["id"])
        redriven = json.loads(run(env, "task", "redrive", task["id"], "--json"))
        assert (redriven["status"], redriven["redrive_count"]) == ("queued", 1)
        first, again = deploy_messages(client, 2)
        assert (first.task_id, first.correlation_id) == (again.task_id, again.correlation_id)
        assert again.correlation_id == task["correlation_id"]
        run(env, "task", "cancel", task["id"])
        refused = CliRunner().invoke(app, ["task", "redrive", task["id"]], env=env)
        assert refused.exit_code == 1
        assert "409 conflict: task is cancelled; only a queued task can be re-driven" in (
            refused.stderr
        )
    finally:
        process.terminate()
        client.close()
