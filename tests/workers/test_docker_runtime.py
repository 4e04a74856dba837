"""The Docker runtime against a fake Engine API on a unix socket: the requests it makes."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from services.worker_manager.docker_runtime import (
    LABEL_HOME,
    LABEL_MANAGER,
    LABEL_WORKER,
    WRAPPER_CAPABILITIES,
    DockerRuntime,
)
from services.worker_manager.runtime import WorkerSpec
from services.worker_manager.settings import DockerSettings, ResourceLimits
from tests.workers.fake_docker import FakeDockerEngine


@pytest.fixture
def engine() -> Iterator[FakeDockerEngine]:
    """A fake Docker engine on a short unix socket path."""
    with tempfile.TemporaryDirectory(prefix="dk-") as tmp:
        fake = FakeDockerEngine(Path(tmp) / "docker.sock").start()
        try:
            yield fake
        finally:
            fake.stop()


@pytest.fixture
def runtime(engine: FakeDockerEngine, tmp_path: Path) -> Iterator[DockerRuntime]:
    """A Docker runtime talking to the fake engine."""
    settings = DockerSettings(
        base_url=engine.base_url,
        api_version="1.43",
        image="orchestrator-worker:test",
        redis_url="redis://redis:6379/0",
    )
    docker_runtime = DockerRuntime(settings, data_dir=tmp_path)
    try:
        yield docker_runtime
    finally:
        docker_runtime.close()


def spec(tmp_path: Path, *, session_volume: str | None = None) -> WorkerSpec:
    """A worker spec with a secret in its environment and host-only variables."""
    return WorkerSpec(
        worker_id="dev-1",
        manager_id="mgr",
        env={
            "PATH": "/host/bin",
            "HOME": "/root",
            "WORKER_ID": "dev-1",
            "WORKER_REDIS_URL": "redis://127.0.0.1:1/0",
            "WORKER_WORKSPACE": "/host/ws",
            "API_TOKEN": "s3cret",
        },
        worker_dir=tmp_path / "dev-1",
        workspace=tmp_path / "dev-1" / "workspace",
        session_dir=tmp_path / "dev-1" / "session",
        session_volume=session_volume,
        limits=ResourceLimits(memory_mb=512, cpus=1.5, pids=128),
    )


async def test_start_creates_a_locked_down_container(
    engine: FakeDockerEngine, runtime: DockerRuntime, tmp_path: Path
) -> None:
    """run: image, no capabilities, no-new-privileges, limits, own network, labels, env."""
    ref = await runtime.start(spec(tmp_path, session_volume="session-po"))
    [network] = engine.find("POST", "/networks/create")
    assert network.body["Name"] == "orchestrator-worker-dev-1"
    home = str(tmp_path)  # the runtime's data directory (resolved already): its workers only
    labels = {LABEL_MANAGER: "mgr", LABEL_WORKER: "dev-1", LABEL_HOME: home}
    assert network.body["Labels"] == labels
    [create] = engine.find("POST", "/containers/create")
    body = create.body
    host = body["HostConfig"]
    assert body["Image"] == "orchestrator-worker:test"
    assert body["Cmd"][:3] == ["python", "-m", "services.worker_wrapper"]
    assert body["Labels"] == labels
    assert host["CapDrop"] == ["ALL"]
    assert host["SecurityOpt"] == ["no-new-privileges:true"]
    assert host["NanoCpus"] == 1_500_000_000
    assert host["Memory"] == 512 * 1024 * 1024
    assert host["PidsLimit"] == 128
    assert host["MemorySwap"] == 512 * 1024 * 1024
    assert host["ReadonlyRootfs"] is True
    assert set(host["Tmpfs"]) == {"/tmp", "/home/agent"}
    if os.geteuid() == 0:  # the wrapper as the container's root, the agent as 10001
        assert body["User"] == "0:0"
        assert sorted(host["CapAdd"]) == sorted(WRAPPER_CAPABILITIES)
    else:  # both as the manager's own uid
        assert body["User"] == f"{os.geteuid()}:{os.getegid()}"
        assert not host.get("CapAdd")
    assert host["NetworkMode"] == "orchestrator-worker-dev-1"
    assert "session-po:/session:rw" in host["Binds"]
    assert f"{(tmp_path / 'dev-1' / 'workspace').resolve()}:/workspace:rw" in host["Binds"]
    env = dict(item.split("=", 1) for item in body["Env"])
    if os.geteuid() == 0:
        assert env["WORKER_AGENT_USER"] == "10001:10001"
    assert "PATH" not in env
    assert "HOME" not in env
    assert env["WORKER_WORKSPACE"] == "/workspace"
    assert env["WORKER_SESSION_DIR"] == "/session"
    assert env["WORKER_REDIS_URL"] == "redis://redis:6379/0"
    assert env["API_TOKEN"] == "s3cret"
    assert engine.find("POST", f"/containers/{ref}/start")
    assert await runtime.is_alive(ref)
    assert await runtime.list_owned("mgr") == {"dev-1": ref}
    assert await runtime.list_owned("someone-else") == {}


async def test_stop_removes_container_and_network(
    engine: FakeDockerEngine, runtime: DockerRuntime, tmp_path: Path
) -> None:
    """stop: graceful stop with the grace period, forced removal, network removal."""
    ref = await runtime.start(spec(tmp_path))
    await runtime.stop(ref, grace_s=7)
    [stop] = engine.find("POST", f"/containers/{ref}/stop")
    assert stop.query["t"] == ["7"]
    [remove] = engine.find("DELETE", f"/containers/{ref}")
    assert remove.query["force"] == ["True"]
    assert engine.state.networks == {}
    assert not await runtime.is_alive(ref)
    await runtime.stop(ref, grace_s=1)  # already gone: no error


async def test_exit_info_reports_code_and_log_tail(
    engine: FakeDockerEngine, runtime: DockerRuntime, tmp_path: Path
) -> None:
    """A dead container's exit code and the tail of its log explain its death."""
    ref = await runtime.start(spec(tmp_path))
    engine.state.containers[ref]["State"] = {"Status": "exited", "Running": False, "ExitCode": 137}
    assert not await runtime.is_alive(ref)
    info = await runtime.exit_info(ref)
    assert info.exit_code == 137
    assert "wrapper said goodbye" in info.detail


async def test_engine_refusal_is_a_start_error_and_cleans_up(
    engine: FakeDockerEngine, tmp_path: Path
) -> None:
    """An engine error on create: a WorkerStartError naming docker; the network is removed."""
    from services.worker_manager.errors import WorkerStartError

    settings = DockerSettings(base_url=engine.base_url, api_version="1.43", image="broken:image")
    runtime = DockerRuntime(settings, data_dir=tmp_path)
    try:
        with pytest.raises(WorkerStartError, match="docker"):
            await runtime.start(spec(tmp_path))
    finally:
        runtime.close()
    assert engine.state.networks == {}


def test_sdk_version_is_pinned(engine: FakeDockerEngine) -> None:
    """The client uses a fixed API version, so it never probes the engine for one."""
    client = docker.DockerClient(base_url=engine.base_url, version="1.43")
    assert client.api.api_version == "1.43"
    client.close()


async def test_host_network_mode_creates_no_network(
    engine: FakeDockerEngine, tmp_path: Path
) -> None:
    """network=host: the container joins the host's network and no network is created or
    removed (the tests' engine runs with --bridge=none)."""
    settings = DockerSettings(base_url=engine.base_url, api_version="1.43", network="host")
    runtime = DockerRuntime(settings, data_dir=tmp_path)
    try:
        ref = await runtime.start(spec(tmp_path))
        [create] = engine.find("POST", "/containers/create")
        assert create.body["HostConfig"]["NetworkMode"] == "host"
        await runtime.stop(ref, grace_s=0)
    finally:
        runtime.close()
    assert engine.find("POST", "/networks/create") == []
    assert engine.find("DELETE", "/networks") == []


async def test_stop_while_another_stop_removes_is_no_error(
    engine: FakeDockerEngine, runtime: DockerRuntime, tmp_path: Path
) -> None:
    """The engine's 409 'removal already in progress' (the monitor and a delete stopping the
    same worker at once) ends the stop quietly."""
    ref = await runtime.start(spec(tmp_path))
    engine.state.containers[ref]["Removing"] = True
    await runtime.stop(ref, grace_s=0)
    assert ref in engine.state.containers


def warm_spec(tmp_path: Path) -> WorkerSpec:
    """A warm worker's spec: only what reaches Redis, an empty workspace not created yet."""
    worker_dir = tmp_path / "warm-1"
    return WorkerSpec(
        worker_id="warm-1",
        manager_id="mgr",
        env={
            "PATH": "/host/bin",
            "WORKER_WARM": "1",
            "WORKER_ID": "warm-1",
            "WORKER_REDIS_URL": "redis://worker-warm-1:pw@127.0.0.1:1/0",
        },
        worker_dir=worker_dir,
        workspace=worker_dir / "workspace",
        session_dir=worker_dir / "session",
    )


async def test_a_warm_container_mounts_its_own_dirs_and_the_pooled_remotes(
    engine: FakeDockerEngine, tmp_path: Path
) -> None:
    """A warm start: the worker's (new, empty) workspace and session at /workspace and
    /session, every `pool_remote_dirs` entry at its own path, the Redis URL from inside
    with the worker's credentials, and nothing handed to the agent's user yet (the manager
    clones into the workspace at bind)."""
    remotes = tmp_path / "repos"
    remotes.mkdir()
    settings = DockerSettings(
        base_url=engine.base_url,
        api_version="1.43",
        redis_url="redis://redis:6379/0",
        pool_remote_dirs=[remotes],
    )
    runtime = DockerRuntime(settings, data_dir=tmp_path)
    warm = warm_spec(tmp_path)
    try:
        await runtime.start(warm)
    finally:
        runtime.close()
    [create] = engine.find("POST", "/containers/create")
    binds = create.body["HostConfig"]["Binds"]
    assert f"{warm.workspace.resolve()}:/workspace:rw" in binds
    assert f"{warm.session_dir.resolve()}:/session:rw" in binds
    assert f"{remotes.resolve()}:{remotes}:rw" in binds
    assert warm.workspace.is_dir()
    assert os.stat(warm.workspace).st_uid == os.geteuid()
    env = dict(item.split("=", 1) for item in create.body["Env"])
    assert env["WORKER_WARM"] == "1"
    assert env["WORKER_REDIS_URL"] == "redis://worker-warm-1:pw@redis:6379/0"
    assert "PATH" not in env


async def test_a_cold_container_does_not_mount_the_pooled_remotes(
    engine: FakeDockerEngine, tmp_path: Path
) -> None:
    """`pool_remote_dirs` are for warm containers only: a task's own container mounts its
    own remote alone."""
    settings = DockerSettings(
        base_url=engine.base_url, api_version="1.43", pool_remote_dirs=[tmp_path / "repos"]
    )
    runtime = DockerRuntime(settings, data_dir=tmp_path)
    try:
        await runtime.start(spec(tmp_path))
    finally:
        runtime.close()
    [create] = engine.find("POST", "/containers/create")
    assert not [b for b in create.body["HostConfig"]["Binds"] if "repos" in b]


async def test_binding_is_the_task_env_as_the_container_sees_it(
    engine: FakeDockerEngine, runtime: DockerRuntime, tmp_path: Path
) -> None:
    """The binding: the image's variables (PATH, HOME, PYTHONPATH), then the task's
    environment translated like a fresh container's (in-container paths, the Redis URL from
    inside with the task's credentials, no host PATH/HOME); the prepared files become the
    agent user's when the manager is root."""
    ref = await runtime.start(warm_spec(tmp_path))
    task = spec(tmp_path)
    task = WorkerSpec(
        worker_id="warm-1",
        manager_id="mgr",
        env={**task.env, "WORKER_REDIS_URL": "redis://worker-warm-1:pw2@127.0.0.1:1/0"},
        worker_dir=tmp_path / "warm-1",
        workspace=tmp_path / "warm-1" / "workspace",
        session_dir=tmp_path / "warm-1" / "session",
    )
    (task.workspace / "README.md").write_text("cloned\n")
    env = await runtime.binding(task, ref)
    assert env["PATH"] == "/opt/venv/bin:/usr/bin:/bin"
    assert env["HOME"] == "/home/agent"
    assert env["PYTHONPATH"] == "/opt/orchestrator"
    assert env["WORKER_WORKSPACE"] == "/workspace"
    assert env["WORKER_SESSION_DIR"] == "/session"
    assert env["WORKER_REDIS_URL"] == "redis://worker-warm-1:pw2@redis:6379/0"
    assert env["API_TOKEN"] == "s3cret"
    assert "WORKER_WARM" not in env
    if os.geteuid() == 0:
        assert env["WORKER_AGENT_USER"] == "10001:10001"
        for path in (task.workspace, task.workspace / "README.md", task.session_dir):
            assert (os.stat(path).st_uid, os.stat(path).st_gid) == (10001, 10001)
    await runtime.binding(task, ref)  # the image's variables are asked for once
    assert len(engine.find("GET", "/images/")) == 1


async def test_binding_a_vanished_container_is_a_start_error(
    engine: FakeDockerEngine, runtime: DockerRuntime, tmp_path: Path
) -> None:
    """A warm container removed between the claim and the bind: a WorkerStartError."""
    from services.worker_manager.errors import WorkerStartError

    ref = await runtime.start(warm_spec(tmp_path))
    del engine.state.containers[ref]
    with pytest.raises(WorkerStartError, match="gone"):
        await runtime.binding(warm_spec(tmp_path), ref)


def test_can_pool_only_remotes_a_warm_container_reaches(tmp_path: Path) -> None:
    """Remote URLs and local remotes under `pool_remote_dirs` are pooled; other local
    directories (and a sibling whose name merely starts the same) are not."""
    repos = tmp_path / "repos"
    pooled = DockerRuntime(DockerSettings(pool_remote_dirs=[repos]), data_dir=tmp_path)
    unpooled = DockerRuntime(DockerSettings(), data_dir=tmp_path)
    for runtime in (pooled, unpooled):
        assert runtime.can_pool(None)
        assert runtime.can_pool("https://github.com/o/r.git")
        assert runtime.can_pool("git@github.com:o/r.git")
        assert not runtime.can_pool(str(tmp_path / "elsewhere" / "r.git"))
    assert pooled.can_pool(str(repos / "o" / "r.git"))
    assert pooled.can_pool(f"file://{repos}/o/r.git")
    assert not pooled.can_pool(str(tmp_path / "repos-other" / "r.git"))
    assert not pooled.can_pool(str(repos / ".." / "elsewhere" / "r.git"))
    assert not unpooled.can_pool(str(repos / "o" / "r.git"))


async def test_is_current_tells_a_container_of_a_replaced_image(
    engine: FakeDockerEngine, runtime: DockerRuntime, tmp_path: Path
) -> None:
    """A container runs the current image while `settings.image` names the image it was
    started from; not once the setting names another, nor once the container is gone."""
    ref = await runtime.start(warm_spec(tmp_path))
    assert await runtime.is_current(ref)
    moved = DockerRuntime(
        runtime.settings.model_copy(update={"image": "orchestrator-worker:next"}),
        data_dir=tmp_path,
    )
    try:
        assert not await moved.is_current(ref)
    finally:
        moved.close()
    del engine.state.containers[ref]
    assert not await runtime.is_current(ref)
