"""The orchestrator image and the topology's Redis and PostgreSQL images, built here."""

from __future__ import annotations

import json
from collections.abc import Iterator

import docker
import pytest

from services.cli.actors import ACTORS
from services.worker_manager import images
from tests.docker_engine import Engine, EngineUnavailableError, install_missing
from tests.workers.helpers import read_text

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]  # a cold build: minutes


@pytest.fixture(scope="module")
def client(docker_engine: Engine) -> Iterator[docker.DockerClient]:
    """A client of the test engine, with mmdebstrap present."""
    try:
        install_missing("mmdebstrap")
    except EngineUnavailableError as exc:
        pytest.skip(f"cannot build the base image: {exc}")
    engine_client = docker_engine.client()
    try:
        yield engine_client
    finally:
        engine_client.close()


def test_orchestrator_requirements_match_the_lock() -> None:
    """deploy/requirements.txt pins the project's runtime dependencies at uv.lock's versions
    (regenerate: python -m services.worker_manager.images requirements)."""
    assert read_text(images.ORCHESTRATOR_REQUIREMENTS) == images.orchestrator_requirements()
    pinned = read_text(images.ORCHESTRATOR_REQUIREMENTS)
    for runtime_dependency in ("fastapi==", "langgraph==", "asyncpg==", "greenlet=="):
        assert f"\n{runtime_dependency}" in pinned  # greenlet: sqlalchemy[asyncio]'s extra
    for dev_only in ("pytest==", "mypy==", "ruff=="):
        assert f"\n{dev_only}" not in pinned


def test_orchestrator_image_is_non_root_with_a_healthcheck_and_every_actor(
    client: docker.DockerClient,
) -> None:
    """uid 10000, a HEALTHCHECK, the entrypoint, and every actor's module importable with the
    pinned packages alone; a second ensure finds it."""
    report = images.ensure_orchestrator_image(client)
    image = client.images.get(report.image)
    config = image.attrs["Config"]
    assert config["User"] == "10000:10000"
    assert config["Healthcheck"]["Test"] == [
        "CMD",
        "orchestrator-entrypoint",  # the secret files (REDIS_URL) in its environment too
        "python",
        "-m",
        "shared.healthcheck",
    ]
    assert config["Entrypoint"] == ["orchestrator-entrypoint"]
    modules = sorted({target.partition(":")[0] for target in ACTORS.values()})
    script = (
        "import importlib, json, os\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps([os.getuid(), os.getgid()]))\n"
    )
    output = client.containers.run(
        report.image, ["python", "-c", script], network_mode="none", remove=True
    ).decode()
    assert json.loads(output.strip().splitlines()[-1]) == [10000, 10000]
    helped = client.containers.run(
        report.image, ["orchestrator", "run", "--help"], network_mode="none", remove=True
    ).decode()
    assert "The actor to run" in helped
    assert images.ensure_orchestrator_image(client).action == "present"
    size_mb = image.attrs["Size"] / 1e6
    print(f"\n{report.image}: {size_mb:.0f} MB ({report.action} in {report.seconds:.1f} s)")


def test_the_entrypoint_turns_secret_files_into_variables(client: docker.DockerClient) -> None:
    """Files of /run/secrets named like variables become the command's environment; other
    names are ignored; without the folder nothing changes."""
    report = images.ensure_orchestrator_image(client)
    volume = client.volumes.create()
    try:
        client.containers.run(
            "codegen-orchestrator-base:" + images.base_key(),
            [
                "sh",
                "-c",
                "printf 's3cret' > /s/ORCHESTRATOR_API__KEY; printf x > /s/not-a-name; "
                "chmod 0644 /s/*",
            ],
            volumes={volume.name: {"bind": "/s", "mode": "rw"}},
            network_mode="none",
            remove=True,
        )
        output = client.containers.run(
            report.image,
            ["sh", "-c", "env | grep -E '^(ORCHESTRATOR_API__KEY|not)' | sort"],
            volumes={volume.name: {"bind": "/run/secrets", "mode": "ro"}},
            network_mode="none",
            remove=True,
        ).decode()
        assert output.split() == ["ORCHESTRATOR_API__KEY=s3cret"]
    finally:
        volume.remove(force=True)


@pytest.mark.parametrize("name", sorted(images.SERVICE_PACKAGES))
def test_service_images_are_built_from_debian_packages(
    client: docker.DockerClient, name: str
) -> None:
    """The Redis, PostgreSQL and Prometheus images: Debian's server inside, a health check,
    not root."""
    report = images.ensure_service_image(client, name)
    config = client.images.get(report.image).attrs["Config"]
    assert config["Healthcheck"]["Test"][0] == "CMD"
    assert config["User"] == name
    command, expected = {
        "redis": (["redis-server", "--version"], "Redis server v=7"),
        "postgres": (["postgres", "--version"], "PostgreSQL) 15"),
        "prometheus": (["prometheus", "--version"], "prometheus, version 2."),
    }[name]
    output = client.containers.run(
        report.image, command, entrypoint=[], network_mode="none", remove=True, stderr=True
    ).decode()
    assert expected in output


def test_an_unknown_service_image_is_refused(client: docker.DockerClient) -> None:
    """A clear error naming the known ones."""
    with pytest.raises(images.ImageBuildError, match="no service image 'mysql'; known: "):
        images.ensure_service_image(client, "mysql")


def test_make_images_without_an_engine_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`make images` where no engine answers: one line naming where it looked and what to do,
    not a traceback."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    assert images.main([]) == 1
    said = capsys.readouterr().err
    assert said.startswith("error: no Docker engine answers at unix:///nonexistent/docker.sock")
    assert "docs/docker.md" in said
    assert "Traceback" not in said
