"""The orchestrator image's health check (`python -m shared.healthcheck`), on the host."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import redis

from shared.healthcheck import check, container_actor, redis_ping
from shared.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_the_actor_is_read_from_the_main_process(tmp_path: Path) -> None:
    """`orchestrator run <actor>` (after the entrypoint's exec) names the actor."""
    cmdline = tmp_path / "cmdline"
    cmdline.write_bytes(b"/opt/venv/bin/python\0/opt/venv/bin/orchestrator\0run\0api\0")
    assert container_actor(cmdline) == "api"
    cmdline.write_bytes(b"orchestrator\0--help\0")
    assert container_actor(cmdline) is None
    assert container_actor(tmp_path / "missing") is None


def test_healthy_with_redis_answering(redis_url: str) -> None:
    """Redis answers: nothing to report."""
    assert check({"REDIS_URL": redis_url}, "langgraph") == []


def test_a_password_is_sent_and_a_wrong_one_refused(redis_url: str) -> None:
    """With an ACL user of its own: the right password answers, a wrong one is refused, and
    neither appears in what is reported."""
    client = redis.Redis.from_url(redis_url)
    try:
        client.acl_setuser("health", enabled=True, passwords=["+right-pw"], commands=["+ping"])
        host_port = redis_url.split("//", 1)[1]
        assert redis_ping(f"redis://health:right-pw@{host_port}") is None
        refused = redis_ping(f"redis://health:wrong-pw@{host_port}")
        assert refused is not None
        assert refused.startswith("redis refused: -WRONGPASS")
        assert "wrong-pw" not in refused
    finally:
        client.acl_deluser("health")
        client.close()


def test_unhealthy_without_redis_or_api() -> None:
    """A Redis nobody listens on, no URL at all, an API that does not answer: each named."""
    dead = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    problems = check({"REDIS_URL": dead}, None)
    assert problems == ["redis does not answer: ConnectionRefusedError"]
    assert "hunter2" not in " ".join(problems)
    assert check({}, None) == ["no REDIS_URL: a container has no private Redis"]
    port = free_port()
    api = check({"ORCHESTRATOR_API__PORT": str(port)}, "api")
    assert api[1].startswith(f"api http://127.0.0.1:{port}/ready does not answer")


def test_the_command_exits_1_when_unhealthy() -> None:
    """The exit status is what Docker reads."""
    done = subprocess.run(
        [sys.executable, "-m", "shared.healthcheck", "langgraph"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "unhealthy: redis does not answer" in done.stdout
