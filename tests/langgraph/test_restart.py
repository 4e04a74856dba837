"""The langgraph actor as a real process: SIGKILL mid-flow, restart, resume."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import uvicorn

from services.langgraph.store import FlowStore
from shared import registry
from shared.contracts import CreateWorkerCommand, SendMessageCommand, TaskStatus
from shared.redis_server import free_port
from tests.langgraph.test_integrate import backend_project, show
from tests.support.langgraph import GraphSystem
from tests.support.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]


@contextlib.asynccontextmanager
async def http_api(graph_system: GraphSystem) -> AsyncIterator[str]:
    """The system's API app served over real HTTP on a free port; yields its URL."""
    port = free_port()
    config = uvicorn.Config(
        graph_system.app,  # type: ignore[arg-type]
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        return server.started

    await eventually(started)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@contextlib.contextmanager
def langgraph_process(
    graph_system: GraphSystem, redis_url: str, api_url: str, log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m services.langgraph`, configured through its environment."""
    data_dir = graph_system.settings.data_dir
    env = {
        **os.environ,
        "ORCHESTRATOR_REDIS_URL": redis_url,
        "ORCHESTRATOR_DATA_DIR": str(data_dir),
        "ORCHESTRATOR_API__URL": api_url,
        "ORCHESTRATOR_API__KEY": graph_system.service_key,
        "ORCHESTRATOR_LANGGRAPH__SWEEP_INTERVAL_S": "0.1",
        "ORCHESTRATOR_LANGGRAPH__RECLAIM_IDLE_MS": "1000",
        "ORCHESTRATOR_LANGGRAPH__LOCK_TTL_MS": "2000",
        "ORCHESTRATOR_LANGGRAPH__GIT__REPOS_DIR": str(graph_system.git.root),
    }
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.langgraph"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.mark.slow
async def test_sigkill_after_worker_created_resumes_without_second_worker(
    graph_system: GraphSystem, redis_url: str, tmp_path: Path
) -> None:
    """SIGKILL while the agent works; restarted, the flow completes with one worker only."""
    project = await graph_system.project("Crash", scaffolded=True)
    graph_system.workers.hold = asyncio.Event()
    log_path = tmp_path / "langgraph.log"
    async with http_api(graph_system) as api_url:
        with langgraph_process(graph_system, redis_url, api_url, log_path) as first:
            task_id = await graph_system.task(project.id, "survive a crash")
            await asyncio.wait_for(graph_system.workers.sent.wait(), 30)

            async def waiting() -> bool:  # the flow reached its interrupt
                return bool(await graph_system.redis.hexists("langgraph:waits", task_id))

            await eventually(waiting, timeout_s=30)
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        assert (await graph_system.admin.get_task(task_id)).status == TaskStatus.RUNNING
        graph_system.workers.hold.set()  # the agent answers while langgraph is down
        with langgraph_process(graph_system, redis_url, api_url, log_path):
            task = await graph_system.wait_final(task_id, timeout_s=60)
            # the worker is deleted after the task's end is recorded: wait for the flow's end
            await graph_system.wait_idle(timeout_s=60)
    assert task.status == TaskStatus.COMPLETED, log_path.read_text()[-3000:]
    assert graph_system.workers.count(CreateWorkerCommand) == 1
    sends = {
        c.request_id for c in graph_system.workers.commands if isinstance(c, SendMessageCommand)
    }
    assert sends == {f"{task_id}~send_spec", f"{task_id}~checks#1"}
    assert graph_system.workers.live == {}


@pytest.mark.slow
async def test_sigkill_after_the_task_ended_still_deletes_its_worker(
    graph_system: GraphSystem, redis_url: str, tmp_path: Path
) -> None:
    """The task is completed before its worker is deleted; SIGKILL while the delete is
    unanswered: the restarted flow takes the answer and ends, the worker is gone, the task
    and its result as they were."""
    project = await graph_system.project("Crash cleanup", scaffolded=True)
    graph_system.workers.hold_delete = asyncio.Event()
    log_path = tmp_path / "langgraph.log"
    async with http_api(graph_system) as api_url:
        with langgraph_process(graph_system, redis_url, api_url, log_path) as first:
            task_id = await graph_system.task(project.id, "end, then clean up")
            task = await graph_system.wait_final(task_id, timeout_s=60)

            async def deleting() -> bool:
                raw = await graph_system.redis.hget("langgraph:waits", task_id)
                return raw is not None and b"delete_worker" in raw

            await eventually(deleting, timeout_s=30)
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        assert graph_system.workers.live  # not deleted yet
        graph_system.workers.hold_delete.set()  # it answers while langgraph is down
        with langgraph_process(graph_system, redis_url, api_url, log_path):
            await graph_system.wait_idle(timeout_s=60)
    assert task.status == TaskStatus.COMPLETED, log_path.read_text()[-3000:]
    assert graph_system.workers.live == {}
    after = await graph_system.admin.get_task(task_id)
    assert (after.status, after.result) == (task.status, task.result)


async def _reached(graph_system: GraphSystem, task_id: str, step: str) -> bool:
    """True once the task's progress stream names `step` (read without following it)."""
    stream = registry.get("task_progress:{task_id}").format(task_id=task_id)
    entries = await graph_system.redis.xrange(stream) or []
    marker = f'"current_step":"{step}"'.encode()
    return any(
        marker in (value if isinstance(value, bytes) else str(value).encode())
        for _, fields in entries
        for value in (fields or {}).values()
    )


@pytest.mark.slow
async def test_sigkill_during_checks_ends_the_task_once(
    graph_system: GraphSystem, redis_url: str, tmp_path: Path
) -> None:
    """SIGKILL while the checks run in the worker; they answer while langgraph is down; the
    restarted flow integrates once: main holds the change once, one checks run."""
    project, full_name = await backend_project(graph_system, "Crash checks")
    graph_system.workers.directive_hold = asyncio.Event()
    log_path = tmp_path / "langgraph.log"
    async with http_api(graph_system) as api_url:
        with langgraph_process(graph_system, redis_url, api_url, log_path) as first:
            task_id = await graph_system.task(project.id, "add /hello that returns world")
            await asyncio.wait_for(graph_system.workers.directive_started.wait(), 60)

            async def waiting() -> bool:
                return bool(await graph_system.redis.hexists("langgraph:waits", task_id))

            await eventually(waiting, timeout_s=30)
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        graph_system.workers.directive_hold.set()
        with langgraph_process(graph_system, redis_url, api_url, log_path):
            task = await graph_system.wait_final(task_id, timeout_s=90)
    assert task.status == TaskStatus.COMPLETED, log_path.read_text()[-3000:]
    assert task.result is not None
    assert task.result["checks"]["rounds"] == 1
    assert await graph_system.git.head_of(full_name, "main") == task.result["commit_sha"]
    source = await show(graph_system, full_name, "backend/app/main.py")
    assert source.count('@app.get("/hello")') == 1
    checks = [
        c.request_id
        for c in graph_system.workers.commands
        if isinstance(c, SendMessageCommand) and c.request_id.endswith("~checks#1")
    ]
    assert len(set(checks)) == 1


@pytest.mark.slow
async def test_sigkill_during_integrate_lands_the_change_at_most_once(
    graph_system: GraphSystem, redis_url: str, tmp_path: Path
) -> None:
    """SIGKILL inside the integration (waiting for the project's turn, held by another
    running task); main is then moved to the task's commit as the killed process could have
    done before dying; the restarted flow finds it landed and completes once, main holding
    the change once."""
    project, full_name = await backend_project(graph_system, "Crash integrate")
    store = FlowStore(graph_system.redis)
    log_path = tmp_path / "langgraph.log"
    async with http_api(graph_system) as api_url:
        with langgraph_process(graph_system, redis_url, api_url, log_path) as first:
            holder_id = await graph_system.task(project.id, "HANG: holds the turn")
            await store.take_turn(project.id, holder_id, ttl_ms=600_000)
            task_id = await graph_system.task(project.id, "add /hello that returns world")

            async def waiting_for_turn() -> bool:
                raw = await graph_system.redis.hget("langgraph:waits", task_id)
                return raw is not None and b"integrate_turn" in raw

            await eventually(waiting_for_turn, timeout_s=90)
            assert await _reached(graph_system, task_id, "integrate")
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        main = await graph_system.git.head_of(full_name, "main")
        head = await graph_system.git.head_of(full_name, f"task/{task_id}")
        assert main is not None
        assert head is not None
        assert await graph_system.git.fast_forward(full_name, "main", expected=main, new=head)
        assert await store.release_turn(project.id, holder_id)
        with langgraph_process(graph_system, redis_url, api_url, log_path):
            task = await graph_system.wait_final(task_id, timeout_s=60)
            await graph_system.admin.cancel_task(holder_id)
            await graph_system.wait_final(holder_id, timeout_s=30)
    assert task.status == TaskStatus.COMPLETED, log_path.read_text()[-3000:]
    assert task.result is not None
    assert task.result["commit_sha"] == head
    assert await graph_system.git.head_of(full_name, "main") == head
    assert task.result["files_changed"] == ["backend/app/main.py", "backend/tests/test_hello.py"]
    source = await show(graph_system, full_name, "backend/app/main.py")
    assert source.count('@app.get("/hello")') == 1
    assert await graph_system.redis.get(f"langgraph:integrate:{project.id}") is None  # given back
