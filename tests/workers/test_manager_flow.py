"""The worker-manager end to end: real Redis, real wrapper processes, fake agent CLIs."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import psutil
import pytest

from services.worker_manager.keys import registry_key
from shared.contracts import CreateWorkerResponse
from tests.support.waiting import eventually
from tests.support.workers import Client, ManagerRunner
from tests.workers.helpers import (
    CHILD_MARKER,
    exists,
    git,
    make_repo_with_remote,
    processes_with,
    read_text,
)


def pid_of(ref: str) -> int:
    """The wrapper pid of a local runtime reference."""
    return int(ref.split(":", 1)[0])


async def test_create_send_delete(manager: ManagerRunner, client: Client) -> None:
    """create → running worker with instructions; send → agent answer; delete → gone."""
    await manager.start()
    created = await client.create(context={"instructions": "Be terse.", "owner": "u1"})
    assert created.success, created.error
    worker_id = created.worker_id
    record = await client.record(worker_id)
    assert record.status == "running"
    assert record.owner == "u1"
    assert record.adapter == "claude-code"
    workspace = Path(record.workspace)
    assert read_text(workspace / "CLAUDE.md").startswith("Be terse.")
    answer = await client.send(worker_id, "hello")
    assert answer.success, answer.error
    assert answer.response.startswith("answer to: hello")
    assert "resumed=False" in answer.response
    again = await client.send(worker_id, "and more")
    assert "resumed=True" in again.response
    fresh = await client.send(worker_id, "/new start over")
    assert "answer to: start over" in fresh.response
    assert "resumed=False" in fresh.response
    pid = pid_of(record.runtime_ref)
    deleted = await client.delete(worker_id)
    assert deleted.success, deleted.error
    assert (await client.record(worker_id)).status == "stopped"
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not exists(workspace)
    # nothing of the worker is left in Redis but its record
    streams = [f"worker:{worker_id}:input", f"worker:{worker_id}:output"]
    assert await client.redis.exists(*streams) == 0


async def test_agent_failures_are_answered(manager: ManagerRunner, client: Client) -> None:
    """A crashing agent answers an error with its stderr; the worker stays usable."""
    await manager.start()
    worker_id = (await client.create()).worker_id
    crashed = await client.send(worker_id, "[crash]")
    assert not crashed.success
    assert "crashed on purpose" in crashed.error
    assert (await client.send(worker_id, "still there?")).success


@pytest.mark.slow
async def test_timeout_answers_partial_output_and_leaves_no_process(
    manager: ManagerRunner, client: Client
) -> None:
    """A hanging agent is killed at the timeout: `timeout` with partial output, no leftovers."""
    await manager.start()
    worker_id = (await client.create()).worker_id
    answer = await client.send(worker_id, "[hang]", timeout_s=2)
    assert not answer.success
    assert answer.error.startswith("agent timeout")
    assert answer.response == "partial work"
    assert processes_with(CHILD_MARKER) == []
    assert (await client.record(worker_id)).status == "running"


@pytest.mark.slow
async def test_sigkill_mid_request_fails_fast(manager: ManagerRunner, client: Client) -> None:
    """A worker killed mid-request: send_message fails at once, the worker is failed."""
    import asyncio

    await manager.start()
    worker_id = (await client.create(context={"task_id": "t-kill"})).worker_id
    record = await client.record(worker_id)
    pending = asyncio.create_task(client.send(worker_id, "[hang]", timeout_s=600))
    await client.wait_status(worker_id, "busy")
    await asyncio.sleep(0.3)
    started = asyncio.get_running_loop().time()
    os.kill(pid_of(record.runtime_ref), signal.SIGKILL)
    answer = await asyncio.wait_for(pending, timeout=10)
    assert asyncio.get_running_loop().time() - started < 5
    assert not answer.success
    assert "died" in answer.error
    failed = await client.record(worker_id)
    assert failed.status == "failed"
    assert "signal 9" in failed.error
    progress = " ".join(str(f) for _, f in await client.redis.xrange("task_progress:t-kill") or [])
    assert f"worker {worker_id} failed" in progress
    await asyncio.sleep(0.5)
    assert processes_with(CHILD_MARKER) == []
    refused = await client.send(worker_id, "anyone?")
    assert not refused.success
    assert "is failed" in refused.error


@pytest.mark.slow
async def test_a_killed_worker_is_noticed_at_its_exit_not_at_a_poll(
    manager: ManagerRunner, client: Client
) -> None:
    """The wait for an answer is woken by the worker's exit: with every poll of the manager
    (the send's, the monitor's) 60 s apart, the send still fails within seconds."""
    import asyncio

    await manager.start(liveness_poll_s=60, record_poll_s=60, monitor_interval_s=60)
    worker_id = (await client.create(context={"task_id": "t-exit"})).worker_id
    record = await client.record(worker_id)
    pending = asyncio.create_task(client.send(worker_id, "[hang]", timeout_s=600))
    await client.wait_status(worker_id, "busy")
    await asyncio.sleep(0.3)
    started = asyncio.get_running_loop().time()
    os.kill(pid_of(record.runtime_ref), signal.SIGKILL)
    answer = await asyncio.wait_for(pending, timeout=10)
    assert asyncio.get_running_loop().time() - started < 5
    assert not answer.success
    assert "died" in answer.error
    assert "signal 9" in (await client.record(worker_id)).error
    await eventually(lambda: processes_with(CHILD_MARKER) == [], timeout_s=5)


@pytest.mark.slow
async def test_a_worker_failed_by_another_while_running_ends_the_wait(
    manager: ManagerRunner, client: Client
) -> None:
    """A worker whose record someone else failed (another replica's monitor) while its
    process runs: the send's wait reads the record every `record_poll_s` and gives up."""
    import asyncio

    await manager.start(liveness_poll_s=60, record_poll_s=0.3, monitor_interval_s=60)
    worker_id = (await client.create()).worker_id
    pending = asyncio.create_task(client.send(worker_id, "[hang]", timeout_s=600))
    await client.wait_status(worker_id, "busy")
    assert await client.registry.fail_if_live(worker_id, "no heartbeat (elsewhere)")
    answer = await asyncio.wait_for(pending, timeout=10)
    assert not answer.success
    assert "no heartbeat (elsewhere)" in answer.error


@pytest.mark.slow
async def test_restart_adopts_live_workers(manager: ManagerRunner, client: Client) -> None:
    """A manager restart keeps live workers: the next run relays to and deletes them."""
    await manager.start()
    worker_id = (await client.create()).worker_id
    await manager.stop()
    record = await client.record(worker_id)
    assert psutil.pid_exists(pid_of(record.runtime_ref))
    await manager.start()
    answer = await client.send(worker_id, "after restart")
    assert answer.success, answer.error
    assert (await client.delete(worker_id)).success


@pytest.mark.slow
async def test_restart_marks_vanished_workers_failed(
    manager: ManagerRunner, client: Client
) -> None:
    """A worker that died while no manager ran is marked failed on the next start."""
    await manager.start()
    worker_id = (await client.create()).worker_id
    await manager.stop()
    record = await client.record(worker_id)
    os.kill(pid_of(record.runtime_ref), signal.SIGKILL)
    await manager.start()

    async def failed() -> bool:  # the start's adoption pass may take a while under load
        return (await client.record(worker_id)).status == "failed"

    await eventually(failed, timeout_s=15, what="the vanished worker marked failed")


async def test_bad_commands_get_clear_errors(manager: ManagerRunner, client: Client) -> None:
    """Unknown workers, invalid names and bad timeouts are answered with clear errors."""
    await manager.start()
    unknown = await client.send("nope-123", "hi")
    assert not unknown.success
    assert unknown.error == "unknown worker 'nope-123'"
    assert (await client.delete("nope-123")).error == "unknown worker 'nope-123'"
    bad_name = await client.create(name="../etc")
    assert not bad_name.success
    assert "invalid worker name" in bad_name.error
    bad_env = await client.create(env_vars={"A=B": "x"})
    assert not bad_env.success
    assert "invalid environment variable" in bad_env.error
    worker_id = (await client.create()).worker_id
    zero = await client.send(worker_id, "hi", timeout_s=0)
    assert not zero.success
    assert "timeout must be positive" in zero.error or "positive" in zero.error


async def test_missing_cli_is_a_clear_create_error(manager: ManagerRunner, client: Client) -> None:
    """adapter=cli without the agent's CLI installed refuses to create, naming the CLI."""
    await manager.start(claude_command=["/nonexistent/claude"])
    created = await client.create()
    assert not created.success
    assert "'/nonexistent/claude' CLI" in created.error


async def test_builtin_agent_commits_to_the_project_repo(
    manager: ManagerRunner, client: Client, tmp_path: Path
) -> None:
    """With the built-in agent and a repo_url, the answer names a commit on the remote."""
    _, remote = make_repo_with_remote(tmp_path)
    await manager.start(adapter="builtin")
    created = await client.create(context={"repo_url": str(remote), "branch": "feature"})
    assert created.success, created.error
    record = await client.record(created.worker_id)
    assert record.adapter == "builtin"
    assert exists(Path(record.workspace) / "AGENTS.md")
    answer = await client.send(created.worker_id, "implement the spec")
    assert answer.success, answer.error
    sha = git(remote, "rev-parse", "feature")
    assert answer.response.endswith(f"commit: {sha}")
    assert "AGENTS.md" not in git(remote, "ls-tree", "--name-only", "feature")


async def test_environment_is_allowlisted_and_secrets_masked(
    manager: ManagerRunner, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent sees allowlisted variables and env_vars only; secret values are masked."""
    monkeypatch.setenv("LEAKY_HOST_VAR", "leak")
    await manager.start()
    env_vars = {"GREETING": "hi", "API_TOKEN": "supersecret-123"}
    worker_id = (await client.create(env_vars=env_vars)).worker_id
    expected = {
        "[env:GREETING]": "GREETING=hi",
        "[env:LEAKY_HOST_VAR]": "LEAKY_HOST_VAR=<unset>",
        "[env:WORKER_REDIS_URL]": "WORKER_REDIS_URL=<unset>",
        "[env:AGENT_CAPABILITIES]": "AGENT_CAPABILITIES=git",
        "[env:API_TOKEN]": "API_TOKEN=***",
    }
    for prompt, answer in expected.items():
        assert (await client.send(worker_id, prompt)).response == answer


async def test_resource_limits_apply_to_the_worker(manager: ManagerRunner, client: Client) -> None:
    """The wrapper process runs with the configured open-files limit and no core dumps."""
    await manager.start(limits={"open_files": 321})
    record = await client.record((await client.create()).worker_id)
    limits = read_text(Path(f"/proc/{pid_of(record.runtime_ref)}/limits"))
    assert "Max open files            321                  321" in limits
    assert "Max core file size        0                    0" in limits


async def test_progress_events_for_a_task(manager: ManagerRunner, client: Client) -> None:
    """Agent activity of a task's worker lands on task_progress:{task_id}."""
    await manager.start()
    worker_id = (await client.create(context={"task_id": "t-1"})).worker_id
    assert (await client.send(worker_id, "do it")).success

    async def progress() -> str:  # "agent answered" is published just after the answer
        entries = await client.redis.xrange("task_progress:t-1") or []
        text = " ".join(str(fields) for _, fields in entries)
        return text if "agent answered: success" in text else ""

    text = await eventually(progress, timeout_s=10, what="the agent's answer as progress")
    assert "Edit: src/app.py" in text


async def test_session_volume_outlives_the_worker(manager: ManagerRunner, client: Client) -> None:
    """With a session volume the next worker of that name resumes the agent session."""
    await manager.start()
    first = (await client.create(name="po-7", mount_session_volume=True)).worker_id
    answer = await client.send(first, "remember me")
    session = answer.response.split("(session ")[1].split(",")[0]
    assert (await client.create(name="po-7", mount_session_volume=True)).error.startswith(
        "the session volume of 'po-7' is in use"
    )
    assert (await client.delete(first)).success
    second = (await client.create(name="po-7", mount_session_volume=True)).worker_id
    again = await client.send(second, "who am I")
    assert f"(session {session}, resumed=True)" in again.response


async def test_idle_workers_are_reaped(manager: ManagerRunner, client: Client) -> None:
    """A worker idle past idle_timeout_s is stopped by the monitor."""
    await manager.start(idle_timeout_s=1.0)
    worker_id = (await client.create()).worker_id
    await client.wait_status(worker_id, "stopped", timeout_s=10)
    assert "idle" in (await client.record(worker_id)).error


async def test_sigterm_finishes_the_current_request(manager: ManagerRunner, client: Client) -> None:
    """SIGTERM to a busy wrapper: the request is still answered, then the process exits."""
    import asyncio

    await manager.start()
    worker_id = (await client.create()).worker_id
    record = await client.record(worker_id)
    pending = asyncio.create_task(client.send(worker_id, "[slow:1.5] finish me"))
    await client.wait_status(worker_id, "busy")
    pid = pid_of(record.runtime_ref)
    os.kill(pid, signal.SIGTERM)
    answer = await asyncio.wait_for(pending, timeout=20)
    assert answer.success, answer.error
    assert "finish me" in answer.response
    proc = psutil.Process(pid)
    with __import__("contextlib").suppress(psutil.NoSuchProcess):
        proc.wait(timeout=10)
    assert registry_key(worker_id)


async def test_wrapper_exits_once_its_record_is_no_longer_live(
    manager: ManagerRunner, client: Client
) -> None:
    """A wrapper whose record was stopped behind its back exits on its own (no orphans)."""
    import asyncio

    await manager.start()
    worker_id = (await client.create()).worker_id
    pid = pid_of((await client.record(worker_id)).runtime_ref)
    await client.registry.finish(worker_id, "stopped", error="stopped by hand")
    for _ in range(100):
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("the wrapper kept running")


@pytest.mark.slow
async def test_restart_can_remove_the_previous_workers(
    manager: ManagerRunner, client: Client
) -> None:
    """With adopt_on_start off, a restarted manager stops its previous run's workers."""
    await manager.start()
    worker_id = (await client.create()).worker_id
    pid = pid_of((await client.record(worker_id)).runtime_ref)
    await manager.stop()
    await manager.start(adopt_on_start=False)
    await client.wait_status(worker_id, "stopped")
    record = await client.record(worker_id)
    assert record.error == "removed on manager start"
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@pytest.mark.slow
async def test_a_frozen_worker_is_failed_and_killed(manager: ManagerRunner, client: Client) -> None:
    """A wrapper whose heartbeat stops (SIGSTOP) is marked failed and killed by the monitor."""
    await manager.start(heartbeat_timeout_s=1.5)
    worker_id = (await client.create()).worker_id
    pid = pid_of((await client.record(worker_id)).runtime_ref)
    os.kill(pid, signal.SIGSTOP)
    await client.wait_status(worker_id, "failed", timeout_s=15)
    assert "no heartbeat" in (await client.record(worker_id)).error
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


async def test_schema_invalid_command_is_answered_at_once(
    manager: ManagerRunner, client: Client
) -> None:
    """A create with an unknown agent is dead-lettered AND answered, without echoing input."""
    await manager.start()
    request_id = "invalid-create-1"
    payload = {
        "command": "create",
        "request_id": request_id,
        "config": {
            "name": "dev",
            "agent": "gpt-9",
            "capabilities": [],
            "env_vars": {"API_TOKEN": "s3cr3t-value"},
        },
    }
    await client.redis.xadd(
        "worker:commands", {"type": "CreateWorkerCommand", "payload": json.dumps(payload)}
    )
    reply = await client.bus.wait_reply(
        "worker:responses", request_id, since_id="0-0", timeout_s=20
    )
    assert isinstance(reply, CreateWorkerResponse)
    assert not reply.success
    assert reply.error is not None
    assert "config.agent" in reply.error
    assert "s3cr3t-value" not in reply.error
    assert "gpt-9" not in reply.error
    assert await client.redis.xlen("{worker:commands}:dlq") == 1
