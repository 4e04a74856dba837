"""The real Docker engine and the images built here: base (mmdebstrap) and worker."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from services.worker_manager import images
from tests import docker_engine as docker_engines
from tests.docker_engine import Engine
from tests.workers.helpers import read_text

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]  # a cold build: minutes


def test_base_image_is_a_debian_with_python_and_git(docker_engine: Engine) -> None:
    """The base is made here from Debian's packages: python3 and git run in it, and a second
    ensure finds it in the engine instead of building it again."""
    client = docker_engine.client()
    try:
        report = images.ensure_base_image(client)
        output = client.containers.run(
            report.image,
            ["sh", "-c", "python3 --version && git --version && cat /etc/debian_version"],
            network_mode="none",
            remove=True,
        ).decode()
        again = images.ensure_base_image(client)
    finally:
        client.close()
    assert "Python 3.11" in output
    assert "git version" in output
    assert again.action == "present"
    assert again.image == report.image
    assert (images.cache_dir() / f"base-{images.base_key()}.tar").exists()


def test_worker_image_runs_the_wrapper_as_an_unprivileged_user(
    docker_engine: Engine, worker_image: str
) -> None:
    """The worker image's default user is uid 10001, and every wrapper module imports with
    the pinned packages alone (nothing the wrapper needs is missing from requirements.txt)."""
    script = (
        "import os, pkgutil, importlib\n"
        "import services.worker_wrapper as w, services.worker_wrapper.agents as a\n"
        "for pkg in (w, a):\n"
        "    for m in pkgutil.iter_modules(pkg.__path__):\n"
        "        importlib.import_module(pkg.__name__ + '.' + m.name)\n"
        "print(os.getuid(), os.getgid())\n"
    )
    client = docker_engine.client()
    try:
        output = client.containers.run(
            worker_image, ["python", "-c", script], network_mode="none", remove=True
        ).decode()
    finally:
        client.close()
    assert output.split() == ["10001", "10001"]


def test_worker_image_carries_the_pinned_agent_clis(
    docker_engine: Engine, worker_image: str
) -> None:
    """claude, codex and droid are on the worker's PATH at tools/agents' pins (codex through
    Debian's Node) and answer `--version` as the agent's user in a container set up like a
    worker's: read-only root, no capabilities, no-new-privileges, tmpfs home and /tmp."""
    package = json.loads(read_text(images.AGENT_CLIS_DIR / "package.json"))
    pins = {**package["dependencies"], **package["optionalDependencies"]}
    script = "node --version && claude --version && codex --version && droid --version"
    client = docker_engine.client()
    try:
        output = client.containers.run(
            worker_image,
            ["sh", "-c", script],
            user="10001:10001",
            read_only=True,
            tmpfs={"/tmp": "", "/home/agent": "uid=10001,gid=10001"},
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            network_mode="none",
            remove=True,
        ).decode()
    finally:
        client.close()
    node, claude, codex, droid = output.strip().splitlines()[-4:]
    assert node.startswith("v18."), output
    assert claude.startswith(f"{pins['@anthropic-ai/claude-code']} "), output
    assert claude.endswith("(Claude Code)"), output
    assert codex == f"codex-cli {pins['@openai/codex']}", output
    assert droid == pins["@factory/cli-linux-x64"], output  # its binary's version


def test_worker_image_build_without_the_agent_clis_says_what_to_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no `make agents` on the host, the worker image's context is refused with the
    missing packages and the command that installs them (no engine needed)."""
    monkeypatch.setattr(images, "AGENT_CLIS_DIR", tmp_path / "agents")
    with pytest.raises(images.ImageBuildError) as refused:
        images._agent_clis(tmp_path / "context")
    message = str(refused.value)
    assert "@anthropic-ai/claude-code" in message
    assert "make agents" in message


def test_worker_requirements_match_the_lock() -> None:
    """requirements.txt pins the wrapper's packages at the versions uv.lock installed
    (regenerate: python -m services.worker_manager.images requirements)."""
    assert read_text(images.WORKER_REQUIREMENTS) == images.worker_requirements()


def test_the_project_engine_is_shared_and_stopped_by_its_last_user(
    docker_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second run finds the engine the first started and leaves it running when it ends;
    the last user's close stops it (a separate engine home, so the suite's own stays up;
    its long path also puts the exec-root in a short directory)."""
    if not docker_engine.own:
        pytest.skip("an engine on DOCKER_HOST or the default socket is used, never started")
    monkeypatch.setenv("ORCHESTRATOR_DOCKER_DIR", str(tmp_path / "engine"))
    first = docker_engines.acquire()
    try:
        assert first.started
        second = docker_engines.acquire()
        assert second.base_url == first.base_url
        assert not second.started
        second.close()
        assert docker_engines.answers(first.base_url)
    finally:
        first.close()
    assert not docker_engines.answers(first.base_url)
    exec_root = docker_engines._exec_root(tmp_path / "engine" / "run")
    netns = exec_root / "netns" / "default"  # dockerd leaves it mounted for its next start
    subprocess.run(["umount", str(netns)], check=False, capture_output=True)
