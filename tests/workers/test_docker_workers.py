"""Workers as containers of a real Docker engine: the worker-manager with runtime=docker.

The containers use the host's network (the tests' engine runs with `--bridge=none`; Redis
listens on loopback), the image built from services/worker_wrapper/Dockerfile, and the
agents the image has: the built-in one, `command` running the prompt with `sh`, which
plays the untrusted agent in the isolation tests, and the real claude CLI against the
scripted Anthropic API (tests/agents/fake_models.py), reached like Redis and the git remote.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from services.worker_manager.docker_runtime import LABEL_MANAGER
from services.worker_manager.settings import DockerSettings
from shared.contracts import new_id
from tests.agents.fake_models import Failure, ModelScript, Reply, ToolCall, serve_anthropic
from tests.docker_engine import Engine
from tests.support.agents import PLANTED_KEY
from tests.support.workers import Client, ManagerRunner
from tests.workers.helpers import exists, git, make_repo_with_remote
from tests.workers.test_agent_uid import check as check_uid_probe
from tests.workers.test_agent_uid import probe_prompt as uid_probe_prompt
from tests.workers.test_agent_uid import shell_agent as acl_shell_agent
from tests.workers.test_redis_acl import EXPECTED, probe_prompt

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]  # a cold image build: minutes

WORKER_UID = 10001


@pytest.fixture
def engine_client(docker_engine: Engine) -> Iterator[docker.DockerClient]:
    """A client of the test engine."""
    client = docker_engine.client()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def docker_manager(
    manager: ManagerRunner,
    docker_engine: Engine,
    worker_image: str,
    engine_client: docker.DockerClient,
) -> Iterator[DockerManager]:
    """Starts managers with runtime=docker (a manager id of their own); every container of
    that manager is removed after the test."""
    runner = DockerManager(manager, docker_engine, worker_image)
    try:
        yield runner
    finally:
        # sparse: no inspect per container, which fails on one the manager removes meanwhile
        for container in engine_client.containers.list(
            all=True, filters={"label": f"{LABEL_MANAGER}={runner.manager_id}"}, sparse=True
        ):
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                container.remove(force=True)  # 409 while the manager removes it: fine


class DockerManager:
    """The test's manager runner, configured for the Docker runtime."""

    def __init__(self, runner: ManagerRunner, engine: Engine, image: str) -> None:
        self.runner = runner
        self.engine = engine
        self.image = image
        self.manager_id = f"test-docker-{new_id()[:8]}"

    async def start(
        self, *, docker_overrides: dict[str, Any] | None = None, **overrides: Any
    ) -> None:
        """Run the manager with the Docker runtime on the test engine."""
        engine: dict[str, Any] = {"network": "host", **(docker_overrides or {})}
        settings = DockerSettings(base_url=self.engine.base_url, image=self.image, **engine)
        values: dict[str, Any] = {
            "runtime": "docker",
            "adapter": "builtin",
            "manager_id": self.manager_id,
            "docker": settings,
        }
        values.update(overrides)
        await self.runner.start(**values)

    async def stop(self) -> None:
        """Cancel the manager (its containers keep running)."""
        await self.runner.stop()


def shell_agent(**limits: Any) -> dict[str, Any]:
    """Manager overrides: the `command` adapter running each prompt as a shell script."""
    overrides: dict[str, Any] = {
        "adapter": "command",
        "command_template": ["sh", "{prompt_file}"],
        "command_output_format": "text",
    }
    if limits:
        overrides["limits"] = limits
    return overrides


def share_with_workers(remote: Path) -> None:
    """Let the workers' group write to a local git remote (owner unchanged: the manager
    still clones it without git's ownership complaint), as docs/docker.md tells."""
    git(remote, "config", "core.sharedRepository", "group")
    for root, dirs, files in os.walk(remote):
        for name in dirs:
            path = os.path.join(root, name)
            os.chown(path, -1, WORKER_UID)
            os.chmod(path, 0o2775)  # noqa: S103 - the group is the workers'
        for name in files:
            path = os.path.join(root, name)
            os.chown(path, -1, WORKER_UID)
            os.chmod(path, os.stat(path).st_mode | 0o060)
    os.chown(remote, -1, WORKER_UID)
    os.chmod(remote, 0o2775)  # noqa: S103 - the group is the workers'


async def test_create_send_commit_push_delete(
    docker_manager: DockerManager,
    client: Client,
    engine_client: docker.DockerClient,
    tmp_path: Path,
) -> None:
    """create → a running container; send → the built-in agent commits in the container and
    pushes to the remote; delete → container and workspace gone."""
    _, remote = make_repo_with_remote(tmp_path)
    share_with_workers(remote)
    await docker_manager.start()
    created = await client.create(context={"repo_url": str(remote), "branch": "feature"})
    assert created.success, created.error
    record = await client.record(created.worker_id)
    assert record.runtime == "docker"
    container = engine_client.containers.get(record.runtime_ref)
    assert container.status == "running"
    assert container.labels[LABEL_MANAGER] == docker_manager.manager_id
    answer = await client.send(created.worker_id, "implement the spec")
    assert answer.success, answer.error
    sha = git(remote, "rev-parse", "feature")
    assert answer.response.endswith(f"commit: {sha}")
    assert "AGENTS.md" not in git(remote, "ls-tree", "--name-only", "feature")
    deleted = await client.delete(created.worker_id)
    assert deleted.success, deleted.error
    assert (await client.record(created.worker_id)).status == "stopped"
    with pytest.raises(docker.errors.NotFound):
        engine_client.containers.get(record.runtime_ref)
    assert not exists(Path(record.workspace))


async def test_restart_adopts_live_containers(
    docker_manager: DockerManager, client: Client, engine_client: docker.DockerClient
) -> None:
    """A manager restart keeps its containers: the next run relays to and deletes them."""
    await docker_manager.start()
    worker_id = (await client.create()).worker_id
    ref = (await client.record(worker_id)).runtime_ref
    await docker_manager.stop()
    assert engine_client.containers.get(ref).status == "running"
    await docker_manager.start()
    answer = await client.send(worker_id, "after restart")
    assert answer.success, answer.error
    assert (await client.record(worker_id)).runtime_ref == ref
    assert (await client.delete(worker_id)).success
    with pytest.raises(docker.errors.NotFound):
        engine_client.containers.get(ref)


async def test_container_killed_from_outside_fails_the_waiting_request(
    docker_manager: DockerManager, client: Client, engine_client: docker.DockerClient
) -> None:
    """`docker kill` mid-request: send_message fails at once, the worker is failed with the
    container's exit code."""
    await docker_manager.start(**shell_agent())
    worker_id = (await client.create(context={"task_id": "t-docker-kill"})).worker_id
    ref = (await client.record(worker_id)).runtime_ref
    pending = asyncio.create_task(client.send(worker_id, "sleep 600", timeout_s=600))
    await client.wait_status(worker_id, "busy")
    started = asyncio.get_running_loop().time()
    await asyncio.to_thread(lambda: engine_client.containers.get(ref).kill())
    answer = await asyncio.wait_for(pending, timeout=15)
    assert asyncio.get_running_loop().time() - started < 5
    assert not answer.success
    assert "died" in answer.error
    failed = await client.record(worker_id)
    assert failed.status == "failed"
    assert "exit code 137" in failed.error


ISOLATION_PROBE = """
echo "uid=$(id -u) gid=$(id -g)"
grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs):' /proc/self/status
touch /usr/probe 2>/dev/null && echo "rootfs: writable" || echo "rootfs: read-only"
touch /etc/probe 2>/dev/null && echo "etc: writable" || echo "etc: read-only"
touch /tmp/probe && echo "tmp: writable"
touch "$HOME/probe" && echo "home: writable"
touch /workspace/probe && echo "workspace: writable"
mount -t tmpfs none /tmp 2>/dev/null && echo "mount: allowed" || echo "mount: refused"
echo "pids.max=$(cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max)"
limit=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null \
    || cat /sys/fs/cgroup/memory.max)
echo "memory.max=$limit"
"""


async def test_isolation_seen_from_inside_the_container(
    docker_manager: DockerManager, client: Client
) -> None:
    """The agent runs as uid 10001 with no capabilities, no-new-privileges, a read-only root
    filesystem (writable workspace, tmp and home), and the pids and memory limits set."""
    await docker_manager.start(**shell_agent(memory_mb=256, pids=64))
    worker_id = (await client.create()).worker_id
    answer = await client.send(worker_id, ISOLATION_PROBE)
    assert answer.success, answer.error
    seen = answer.response.splitlines()
    assert "uid=10001 gid=10001" in seen
    for line in ("CapEff:\t0000000000000000", "CapPrm:\t0000000000000000"):
        assert line in seen
    assert "CapBnd:\t0000000000000000" in seen
    assert "NoNewPrivs:\t1" in seen
    for line in ("rootfs: read-only", "etc: read-only", "mount: refused"):
        assert line in seen
    for place in ("tmp", "home", "workspace"):
        assert f"{place}: writable" in seen
    assert "pids.max=64" in seen
    assert f"memory.max={256 * 2**20}" in seen


MEMORY_HOG = """
python3 -c '
chunks = []
for _ in range(64):
    chunks.append(b"x" * (16 * 2**20))
print("allocated", len(chunks) * 16, "MB")
'
"""

OOM_EVENTS = """
cat /sys/fs/cgroup/memory/memory.oom_control 2>/dev/null || cat /sys/fs/cgroup/memory.events
"""

MEMORY_SWARM = """
python3 -c '
import os, time
for _ in range(60):
    if os.fork() == 0:
        data = b"x" * (6 * 2**20)
        time.sleep(120)
        os._exit(0)
    time.sleep(0.02)
time.sleep(120)
'
"""

FORK_BOMB = """
python3 -c '
import os, signal, time
children, refused = [], 0
for _ in range(300):
    try:
        pid = os.fork()
    except OSError:
        refused += 1
        continue
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    children.append(pid)
for pid in children:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
print("forked", len(children), "refused", refused)
'
"""


async def test_a_memory_hog_is_oom_killed(docker_manager: DockerManager, client: Client) -> None:
    """An agent allocating 1 GB under a 128 MB limit is killed by the kernel: the request
    fails with the kill (exit 137), the container's memory cgroup counts one OOM kill, and
    the worker (whose wrapper was not the largest process) answers again."""
    await docker_manager.start(**shell_agent(memory_mb=128))
    worker_id = (await client.create()).worker_id
    answer = await client.send(worker_id, MEMORY_HOG)
    assert not answer.success
    assert "exit code 137" in answer.error
    assert "allocated" not in (answer.response or "")
    events = await client.send(worker_id, OOM_EVENTS)
    assert events.success, events.error
    assert "oom_kill 1" in events.response.splitlines()


async def test_out_of_memory_that_kills_the_wrapper_fails_the_worker(
    docker_manager: DockerManager, client: Client
) -> None:
    """Many small allocations under the limit: the kernel kills the largest process, the
    wrapper, so the container ends; the waiting request fails at once and the worker is
    failed with an out-of-memory account."""
    await docker_manager.start(**shell_agent(memory_mb=128))
    worker_id = (await client.create()).worker_id
    answer = await client.send(worker_id, MEMORY_SWARM, timeout_s=120)
    assert not answer.success
    assert "died" in answer.error
    failed = await client.record(worker_id)
    assert failed.status == "failed"
    assert "out of memory: the kernel killed it at its 128 MB limit" in failed.error


async def test_a_fork_bomb_is_contained(docker_manager: DockerManager, client: Client) -> None:
    """Forking 300 sleepers under a 64-pid limit: most forks are refused, the worker lives."""
    await docker_manager.start(**shell_agent(pids=64))
    worker_id = (await client.create()).worker_id
    answer = await client.send(worker_id, FORK_BOMB)
    assert answer.success, answer.error
    words = answer.response.split()
    forked, refused = int(words[1]), int(words[3])
    assert forked < 64
    assert refused > 200
    again = await client.send(worker_id, "echo still here")
    assert again.response == "still here"


async def test_a_containers_stolen_redis_credential_reaches_only_its_own_keys(
    docker_manager: DockerManager, client: Client
) -> None:
    """With a Redis ACL user per worker, an agent in a container that reads its wrapper's
    Redis URL (agent and wrapper as one uid: separate_agent off, so the credential can be
    stolen) is refused every stream but its own, KEYS, FLUSHALL, ACL, CLIENT KILL, CONFIG."""
    await docker_manager.start(
        **shell_agent(), redis_acl=True, docker_overrides={"separate_agent": False}
    )
    worker_id = (await client.create()).worker_id
    answer = await client.send(worker_id, probe_prompt("python", worker_id))
    assert answer.success, answer.error
    assert set(answer.response.splitlines()) == EXPECTED


async def test_docker_agent_cannot_read_its_wrappers_credential(
    docker_manager: DockerManager, client: Client
) -> None:
    """Docker runtime (separate_agent, the default): the wrapper is the container's root
    with a few capabilities, the agent uid 10001 with none; the same probe."""
    await docker_manager.start(**acl_shell_agent())
    created = await client.create()
    assert created.success, created.error
    answer = await client.send(created.worker_id, uid_probe_prompt("python", created.worker_id))
    assert answer.success, answer.error
    check_uid_probe(answer.response, 10001)
    assert (await client.delete(created.worker_id)).success


def claude_turns_in_container() -> list[Reply | Failure]:
    """The scripted model's turns for a claude in a container: write a file in /workspace
    (the worker's workspace there), commit and push it, answer."""
    return [
        Reply(
            text="Adding the module.",
            tools=(
                ToolCall("Write", {"file_path": "/workspace/hello.py", "content": "print(3)\n"}),
            ),
        ),
        Reply(
            tools=(
                ToolCall(
                    "Bash",
                    {
                        "command": "git add hello.py && git commit -q -m 'Add hello' "
                        "&& git push -q origin HEAD:feature && id -u > /tmp/agent-uid"
                    },
                ),
            ),
        ),
        Reply(text="Pushed hello.py to feature."),
    ]


async def test_real_claude_in_a_container_commits_and_pushes(
    docker_manager: DockerManager,
    client: Client,
    engine_client: docker.DockerClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The image's claude (its pinned CLI) in a Docker worker, against the scripted Anthropic
    API: the key and endpoint go from the manager's environment to the agent, the model API
    is reached like Redis and the git remote (the host's network here), the agent commits and
    pushes as uid 10001, and the key is in no answer."""
    _, remote = make_repo_with_remote(tmp_path)
    share_with_workers(remote)
    script = ModelScript(claude_turns_in_container())
    with serve_anthropic(script) as fake:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", PLANTED_KEY)
        await docker_manager.start(adapter="cli", claude_command=["claude"], claude_max_retries=1)
        created = await client.create(
            context={"repo_url": str(remote), "branch": "feature", "task_id": "t-docker-claude"}
        )
        assert created.success, created.error
        record = await client.record(created.worker_id)
        assert record.adapter == "claude-code"
        answer = await client.send(created.worker_id, "add hello.py", timeout_s=180)
        container = engine_client.containers.get(record.runtime_ref)
        written = container.exec_run(["cat", "/tmp/agent-uid"]).output
    assert isinstance(written, bytes)
    agent_uid = written.decode().strip()
    assert answer.success, answer.error
    assert answer.response == "Pushed hello.py to feature."
    assert answer.run is not None
    assert "Claude Code" in (answer.run.agent_version or "")
    assert script.requests, "the CLI in the container reached the scripted API"
    assert git(remote, "show", "feature:hello.py") == "print(3)"
    assert git(remote, "log", "-1", "--format=%an <%ae>", "feature") == (
        "Claude Code agent <claude-code@orchestrator.invalid>"
    )
    assert agent_uid == str(WORKER_UID)
    assert PLANTED_KEY not in str(answer)
    assert (await client.delete(created.worker_id)).success
