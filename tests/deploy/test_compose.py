"""deploy/compose.yaml brought up on a real engine with Debian's docker-compose.

The images are the ones `make images` builds (orchestrator, Redis and PostgreSQL on
root filesystems of Debian's packages, the worker); the secrets are files of a temporary
directory. The whole topology comes up healthy (health checks of every service), the API
answers `/ready` through PostgreSQL, there are two langgraph replicas and two
worker-managers, no secret value is in any container's configuration, and a replica whose
process is killed from outside is restarted by its restart policy.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
from docker.models.containers import Container

from tests.docker_engine import Engine, EngineUnavailableError, install_missing

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "deploy" / "compose.yaml"
SERVICES = {
    "redis",
    "postgres",
    "prometheus",
    "api",
    "langgraph",
    "scheduler",
    "scaffolder",
    "infra-service",
    "worker-manager-1",
    "worker-manager-2",
}
HEALTHY_TIMEOUT_S = 600.0
"""A bound: on an idle machine the topology is healthy in about a minute."""


@dataclass
class Topology:
    """A running compose project."""

    project: str
    env: dict[str, str]
    client: docker.DockerClient
    secret_values: list[str]

    def compose(self, *args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
        """Run docker-compose on the project; raise with its output when it fails."""
        argv = ["docker-compose", "-f", str(COMPOSE_FILE), "-p", self.project, *args]
        done = subprocess.run(
            argv, env=self.env, capture_output=True, text=True, timeout=timeout_s, check=False
        )
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(argv[3:])} failed:\n{done.stdout}\n{done.stderr}")
        return done

    def containers(self) -> list[Container]:
        """The project's containers."""
        return list(
            self.client.containers.list(
                all=True, filters={"label": f"com.docker.compose.project={self.project}"}
            )
        )

    def by_service(self) -> dict[str, list[Container]]:
        """Containers by compose service name."""
        found: dict[str, list[Container]] = {}
        for container in self.containers():
            service = container.labels.get("com.docker.compose.service", "")
            found.setdefault(service, []).append(container)
        return found

    def wait_healthy(self, timeout_s: float = HEALTHY_TIMEOUT_S) -> dict[str, str]:
        """Wait until every container is running and healthy; answer name → state."""
        deadline = time.monotonic() + timeout_s
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            states = {}
            for container in self.containers():
                container.reload()
                state = container.attrs["State"]
                health = (state.get("Health") or {}).get("Status")
                states[str(container.name)] = str(health or state.get("Status"))
            if states and all(value == "healthy" for value in states.values()):
                return states
            time.sleep(2)
        raise AssertionError(f"not healthy after {timeout_s:.0f} s: {states}\n{self.logs()}")

    def logs(self) -> str:
        """The tail of every container's log (for failure messages)."""
        parts = []
        for container in self.containers():
            tail = container.logs(tail=15).decode(errors="replace")
            parts.append(f"--- {container.name}\n{tail}")
        return "\n".join(parts)


@pytest.fixture(scope="module")
def images(docker_engine: Engine) -> dict[str, str]:
    """The topology's images (built or found), by compose variable."""
    from services.worker_manager import images as builder

    try:
        install_missing("mmdebstrap")
    except EngineUnavailableError as exc:
        pytest.skip(f"cannot build the base image: {exc}")
    client = docker_engine.client()
    try:
        return {
            "ORCHESTRATOR_IMAGE": builder.ensure_orchestrator_image(client).image,
            "WORKER_IMAGE": builder.ensure_worker_image(client).image,
            "REDIS_IMAGE": builder.ensure_service_image(client, "redis").image,
            "POSTGRES_IMAGE": builder.ensure_service_image(client, "postgres").image,
            "PROMETHEUS_IMAGE": builder.ensure_service_image(client, "prometheus").image,
        }
    finally:
        client.close()


def _write_secrets(directory: Path) -> dict[str, str]:
    """The secret files compose.yaml references (readable by the images' users)."""
    redis_password = secrets.token_hex(16)
    postgres_password = secrets.token_hex(16)
    values = {
        "redis_password": redis_password,
        "postgres_password": postgres_password,
        "redis_url": f"redis://:{redis_password}@redis:6379/0",
        "redis_url_for_workers": f"redis://:{redis_password}@redis:6379/0",
        "database_url": (
            f"postgresql+asyncpg://orchestrator:{postgres_password}@postgres:5432/orchestrator"
        ),
        "service_key": secrets.token_hex(24),
    }
    directory.mkdir(mode=0o755)
    for name, value in values.items():
        path = directory / name
        path.write_text(value + "\n", encoding="utf-8")
        path.chmod(0o644)  # the containers' users (10000, redis, postgres) read it
    return values


@pytest.fixture
def topology(docker_engine: Engine, images: dict[str, str]) -> Iterator[Topology]:
    """deploy/compose.yaml up (then down, volumes removed)."""
    if shutil.which("docker-compose") is None:
        try:
            install_missing("docker-compose")
        except EngineUnavailableError as exc:
            pytest.skip(f"no docker-compose: {exc}")
    work = Path(tempfile.mkdtemp(prefix="compose-"))
    work.chmod(0o755)
    values = _write_secrets(work / "secrets")
    (work / "workers").mkdir()
    project = f"orch{secrets.token_hex(3)}"
    env = {
        **os.environ,
        **images,
        "DOCKER_HOST": docker_engine.base_url,
        "DOCKER_SOCKET": docker_engine.base_url.removeprefix("unix://"),
        "SECRETS_DIR": str(work / "secrets"),
        "WORKERS_DIR": str(work / "workers"),
        "API_PORT": "0",
        "PROMETHEUS_PORT": "0",
        "COMPOSE_HTTP_TIMEOUT": "300",
    }
    client = docker_engine.client()
    running = Topology(project, env, client, list(values.values()))
    try:
        yield running
    finally:
        with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
            running.compose("down", "--volumes", "--timeout", "5")
        client.close()
        shutil.rmtree(work, ignore_errors=True)


def _api_ready(container: Container) -> dict[str, object]:
    container.reload()
    networks = container.attrs["NetworkSettings"]["Networks"]
    address = next(iter(networks.values()))["IPAddress"]
    with urllib.request.urlopen(f"http://{address}:8800/ready", timeout=10) as answer:
        body: dict[str, object] = json.loads(answer.read())
    return body


def test_the_topology_comes_up_healthy_and_restarts_a_killed_replica(topology: Topology) -> None:
    """Every service healthy; two langgraph replicas, two worker-managers; the API ready
    through PostgreSQL; no secret in any container's configuration; a langgraph replica
    killed from outside comes back by its restart policy."""
    started = time.monotonic()
    topology.compose("up", "-d", "--no-build")
    states = topology.wait_healthy()
    up_s = time.monotonic() - started
    print(f"\ncompose up to healthy: {up_s:.1f} s, {len(states)} containers")
    services = topology.by_service()
    assert set(services) == SERVICES
    assert len(services["langgraph"]) == 2
    assert _api_ready(services["api"][0]) == {"status": "ok", "checks": {"database": "ok"}}
    for container in topology.containers():
        config = json.dumps(container.attrs["Config"]) + json.dumps(container.attrs["HostConfig"])
        for value in topology.secret_values:
            assert value not in config, f"a secret value in {container.name}'s configuration"
        own_user = {"redis", "postgres", "prometheus"}  # the images of Debian's servers
        if container.labels["com.docker.compose.service"] not in own_user:
            user = container.attrs["Config"]["User"]
            manager = container.labels["com.docker.compose.service"].startswith("worker-manager")
            assert user == ("0:0" if manager else "10000:10000")

    victim = services["langgraph"][0]
    victim.reload()
    restarts = victim.attrs["RestartCount"]
    os.kill(victim.attrs["State"]["Pid"], signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        victim.reload()
        if victim.attrs["RestartCount"] > restarts and victim.status == "running":
            break
        time.sleep(1)
    assert victim.attrs["RestartCount"] == restarts + 1, victim.attrs["State"]
    topology.wait_healthy()
