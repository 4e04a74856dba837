"""Key names the runtime owns besides the registry's queues (declared once, here)."""

from __future__ import annotations

import functools
import os
import socket
import uuid
from pathlib import Path

from shared import registry

__all__ = [
    "consumer_died_here",
    "consumer_host",
    "default_consumer_name",
    "idempotency_key",
    "progress_stream",
]

IDEMPOTENCY_PREFIX = "idempotency"


def idempotency_key(key: str) -> str:
    """The Redis key that records the effect of `key` (a request_id or task_id)."""
    return f"{IDEMPOTENCY_PREFIX}:{key}"


def progress_stream(task_id: str) -> str:
    """The progress stream of a task, from the registry: `task_progress:{task_id}`."""
    spec = next(registry.iter_queues("progress"))
    return spec.format(**{spec.parameters[0]: task_id})


@functools.cache
def consumer_host() -> str:
    """Where this process's pids mean something: the host name, plus this boot of the kernel
    and the pid namespace when they can be read (hosts may share a name; containers sharing
    the host's name and network have pids of their own)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return socket.gethostname()
    return f"{socket.gethostname()}~{boot[:8]}.{namespace:x}"


def default_consumer_name(actor: str, *, tag: str | None = None) -> str:
    """A consumer name stable for this process: actor, host, pid and a tag (short and random
    unless given). Leases use the same form, so `consumer_died_here` reads both."""
    return f"{actor}@{consumer_host()}:{os.getpid()}:{tag or uuid.uuid4().hex[:6]}"


def consumer_died_here(name: str) -> bool:
    """True when `name` is a default consumer name of this host whose process is gone (or a
    zombie): its pending entries need not wait out the reclaim idle time. Any other name
    (another host, a live process, a name given by hand) is False."""
    host, _, rest = name.rpartition("@")[2].partition(":")
    pid_text, _, tag = rest.partition(":")
    if "@" not in name or not host or not tag or not pid_text.isdigit():
        return False
    if host != consumer_host() or int(pid_text) == os.getpid():
        return False
    import psutil  # here: most processes never call this (a worker's start skips ~20 ms)

    try:
        return psutil.Process(int(pid_text)).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False
