"""The playbook runner with a stand-in `ansible-playbook`: argv vs environment, timeouts."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import psutil

from services.infra_service.ansible import AnsiblePlaybookRunner, PlaybookJob
from services.infra_service.handlers import (
    handle_ansible_deploy_message,
    handle_provisioner_message,
)
from services.infra_service.servers import ServerTarget
from shared.contracts import AnsibleDeployMessage, ProvisionerMessage
from tests.support.infra_service import app_files, make_deps, make_repo, make_settings

RECORDER = """#!/bin/sh
# records how it was called, then says what a playbook with a report says
printf '%s\\n' "$@" > "{out}/argv"
env > "{out}/env"
for file in *; do cat "$file"; echo; done > "{out}/job_files"
cp vars.json "{out}/vars.json"
echo 'ok: [local] => {{"msg": "INFRA_REPORT {{\\"services_redeployed\\": 0}}"}}'
"""
SLEEPER = """#!/bin/sh
sleep 60 &
echo $! > "{out}/child.pid"
wait
"""


def fake_binary(tmp_path: Path, script: str) -> str:
    """An executable stand-in for ansible-playbook writing into tmp_path."""
    path = tmp_path / "fake-ansible-playbook"
    path.write_text(script.format(out=tmp_path))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


async def test_secrets_travel_in_the_environment_only(tmp_path: Path) -> None:
    """Resolved secrets are in the playbook's environment, never its argv or job files."""
    settings = make_settings(tmp_path, ansible_playbook=fake_binary(tmp_path, RECORDER))
    make_repo(settings, "acme/shop", app_files("1"))
    (settings.effective_secrets_dir).mkdir(parents=True)
    (settings.effective_secrets_dir / "shop.env").write_text("DB_PASSWORD=pw-4f8a9c\n")
    deps, _ = make_deps(settings)
    message = AnsibleDeployMessage(
        project_id="shop",
        project_name="shop",
        repo_full_name="acme/shop",
        server_ip="127.0.0.1",
        port=18000,
        github_token_ref="none",
        secrets_ref="file:shop.env",
    )

    result = await handle_ansible_deploy_message(message, deps)

    assert result.status == "success"
    assert "pw-4f8a9c" not in (tmp_path / "argv").read_text()
    assert "pw-4f8a9c" not in (tmp_path / "job_files").read_text()
    assert "DB_PASSWORD=pw-4f8a9c" in (tmp_path / "env").read_text()
    job_vars = json.loads((tmp_path / "vars.json").read_text())
    assert job_vars["infra_port"] == 18000
    assert "PYTEST_CURRENT_TEST" not in (tmp_path / "env").read_text()  # an allowlisted env


async def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    """A run past its timeout is killed with everything it started, and reported as such."""
    settings = make_settings(
        tmp_path, ansible_playbook=fake_binary(tmp_path, SLEEPER), playbook_timeout_s=1.0
    )
    target = ServerTarget(
        handle="local",
        host="127.0.0.1",
        connection="local",
        base_dir=tmp_path / "server",
        python="python3",
        bind_host="127.0.0.1",
        public_host="127.0.0.1",
    )
    job = PlaybookJob(playbook="provision_server", target=target, variables={})

    run = await AnsiblePlaybookRunner(settings).run(job)

    assert run.timed_out is True
    assert run.ok is False
    assert "timed out after 1 s" in run.failures[-1]
    child = int((tmp_path / "child.pid").read_text())
    alive = psutil.pid_exists(child) and psutil.Process(child).status() != psutil.STATUS_ZOMBIE
    assert not alive
    assert not list((settings.work_dir / "jobs").iterdir())


async def test_missing_ansible_binary_is_an_error_result(tmp_path: Path) -> None:
    """Without ansible-playbook the result says `error` (a broken install), not `failed`."""
    settings = make_settings(tmp_path, ansible_playbook=os.fspath(tmp_path / "absent"))
    deps, _ = make_deps(settings)

    result = await handle_provisioner_message(ProvisionerMessage(server_handle="local"), deps)

    assert result.status == "error"
    assert "cannot start" in (result.error or "")


async def test_the_job_carries_its_correlation_id_when_it_is_a_plain_token(
    tmp_path: Path,
) -> None:
    """The runner gives the job's correlation id to the playbook (extra var and environment)
    and logs it; an id that is not a plain token is not passed on (it would reach Ansible's
    templates)."""
    from structlog.testing import capture_logs

    settings = make_settings(tmp_path, ansible_playbook=fake_binary(tmp_path, RECORDER))
    target = ServerTarget(
        handle="local",
        host="127.0.0.1",
        connection="local",
        base_dir=tmp_path / "server",
        python="python3",
        bind_host="127.0.0.1",
        public_host="127.0.0.1",
    )
    runner = AnsiblePlaybookRunner(settings)
    job = PlaybookJob(
        playbook="remove_project", target=target, variables={}, correlation_id="tg-1001-7"
    )
    with capture_logs() as logs:
        await runner.run(job)
    assert json.loads((tmp_path / "vars.json").read_text())["infra_correlation_id"] == "tg-1001-7"
    assert "ORCHESTRATOR_CORRELATION_ID=tg-1001-7" in (tmp_path / "env").read_text()
    started = [e for e in logs if e["event"] == "playbook started"]
    assert [e["correlation_id"] for e in started] == ["tg-1001-7"]

    hostile = PlaybookJob(
        playbook="remove_project",
        target=target,
        variables={},
        correlation_id="{{ lookup('pipe','id') }}",
    )
    await runner.run(hostile)
    assert json.loads((tmp_path / "vars.json").read_text())["infra_correlation_id"] == ""
    assert "lookup" not in (tmp_path / "env").read_text()
