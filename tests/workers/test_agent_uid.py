"""The agent runs as another uid than its wrapper, seen from inside a worker (both runtimes).

The agent is `sh` running the prompt, which runs a Python probe: it finds its wrapper's
process and tries to read its environment (where the Redis credential is), its memory and
its memory map, and to signal it; it looks for the credential in its own environment too.
The local runtime runs as root with `agent_user` (the stock `nobody`); the Docker runtime
separates them by default (`DockerSettings.separate_agent`). Both with a Redis ACL user per
worker, whose wrapper must keep doing its work.
"""

from __future__ import annotations

import os
import pwd
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.workers import Client, ManagerRunner

if os.geteuid() != 0:
    pytest.skip("running the agent as another uid needs root", allow_module_level=True)

PROBE = """
import os, signal, sys

worker_id = sys.argv[1]
print("agent-uid", os.getuid())
wrapper = None
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = handle.read().split(b"\\0")
    except OSError:
        continue
    if b"services.worker_wrapper" in argv and worker_id.encode() in argv:
        wrapper = int(pid)
print("wrapper", "found" if wrapper else "missing")
with open(f"/proc/{wrapper}/status") as status:
    uids = [line.split()[1] for line in status if line.startswith("Uid:")]
print("wrapper-uid", "same" if uids == [str(os.getuid())] else "other")
for name in ("environ", "mem", "maps"):
    try:
        with open(f"/proc/{wrapper}/{name}", "rb") as handle:
            data = handle.read(4096 if name == "mem" else -1)
        print(name, "read", "credential" if b"REDIS" in data else "")
    except OSError:
        print(name, "refused")
try:
    os.kill(wrapper, 0)
    print("signal allowed")
except PermissionError:
    print("signal refused")
own = [k for k in os.environ if k.startswith(("WORKER_", "REDIS_URL", "ORCHESTRATOR_"))]
print("own-environment", "credential" if own else "clean")
with open("/proc/self/status") as status:
    for line in status:
        if line.startswith(("CapEff", "CapPrm", "CapBnd", "CapAmb", "NoNewPrivs")):
            print(line.strip().replace("\\t", " "))
"""

SYSTEM_PYTHON = "/usr/bin/python3"
"""The probe needs only the standard library; the project's venv may be closed to nobody."""

EXPECTED = {
    "wrapper found",
    "wrapper-uid other",
    "environ refused",
    "mem refused",
    "maps refused",
    "signal refused",
    "own-environment clean",
    "CapEff: 0000000000000000",
    "CapPrm: 0000000000000000",
    "CapBnd: 0000000000000000",
    "CapAmb: 0000000000000000",
    "NoNewPrivs: 1",
}


def probe_prompt(python: str, worker_id: str) -> str:
    """The shell script the agent runs."""
    return f"{python} - {worker_id} <<'PROBE'\n{PROBE}\nPROBE\n"


def shell_agent(**extra: Any) -> dict[str, Any]:
    """Manager overrides: `sh` runs each prompt, a Redis ACL user per worker."""
    return {
        "adapter": "command",
        "command_template": ["sh", "{prompt_file}"],
        "command_output_format": "text",
        "redis_acl": True,
        **extra,
    }


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A data directory every user can traverse (pytest's tmp_path is closed to others)."""
    path = Path(tempfile.mkdtemp(prefix="agent-uid-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def check(response: str, agent_uid: int) -> None:
    """The probe's answer: another uid than the wrapper's, nothing of the wrapper readable."""
    seen = set(response.splitlines())
    assert f"agent-uid {agent_uid}" in seen, response
    missing = EXPECTED - seen
    assert not missing, f"missing {missing} in:\n{response}"


async def test_local_agent_cannot_read_its_wrappers_credential(
    manager: ManagerRunner, client: Client, open_dir: Path
) -> None:
    """Local runtime as root with agent_user: the agent (nobody) cannot read the root
    wrapper's environment or memory, nor signal it; the wrapper works under its ACL user."""
    nobody = pwd.getpwnam("nobody").pw_uid
    manager.data_dir = open_dir / "workers"
    await manager.start(**shell_agent(agent_user="nobody"))
    created = await client.create()
    assert created.success, created.error
    answer = await client.send(created.worker_id, probe_prompt(SYSTEM_PYTHON, created.worker_id))
    assert answer.success, answer.error
    check(answer.response, nobody)
    assert (await client.delete(created.worker_id)).success


async def test_without_a_separate_agent_uid_the_credential_is_readable(
    manager: ManagerRunner, client: Client
) -> None:
    """The probe is able to see the leak it guards against: with agent and wrapper as one
    uid (no agent_user), the wrapper's environment is readable and holds the credential."""
    await manager.start(**shell_agent())
    created = await client.create()
    assert created.success, created.error
    answer = await client.send(created.worker_id, probe_prompt(sys.executable, created.worker_id))
    assert answer.success, answer.error
    seen = set(answer.response.splitlines())
    assert "wrapper-uid same" in seen
    assert "environ read credential" in seen
