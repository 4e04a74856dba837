"""Running the playbooks: a `PlaybookRunner` Protocol and the real `ansible-playbook` runner.

`AnsiblePlaybookRunner` runs `ansible-playbook` as an asyncio subprocess (the event loop is
never blocked) in a private job directory holding a generated inventory, a vars file of
non-secret variables, an empty `ansible.cfg`, and, for SSH servers, the resolved private key
(mode 0600). The directory is deleted after the run. Secrets reach the playbook only through
its environment (`PlaybookJob.secret_env`), never its command line. The job's correlation id
(the request's: a chat turn's, through its task and flow) is the playbook's extra variable
`infra_correlation_id` and its environment's `ORCHESTRATOR_CORRELATION_ID`, and is on the
runner's `playbook started` / `playbook finished` log lines. Ansible's home and temp
files live under the data directory; fact gathering is explicit and warnings are off.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import structlog

from services.infra_service.ansible_output import parse_output
from services.infra_service.errors import PlaybookError
from services.infra_service.servers import ServerTarget
from services.infra_service.settings import InfraSettings
from shared.messaging.context import current_correlation_id, current_envelope

__all__ = [
    "PLAYBOOKS_DIR",
    "AnsiblePlaybookRunner",
    "PlaybookJob",
    "PlaybookName",
    "PlaybookRun",
    "PlaybookRunner",
    "TaskListener",
    "run_with_ssh_retries",
]

PLAYBOOKS_DIR = Path(__file__).resolve().parent / "playbooks"
PlaybookName = Literal["provision_server", "deploy_project", "abort_deploy", "remove_project"]
TaskListener = Callable[[str], Awaitable[None]]
"""Called with the name of each task as the playbook starts it."""

_PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME", "SSH_AUTH_SOCK")
_KILL_GRACE_S = 5.0
_CORRELATION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
"""A correlation id the job passes on (the API's form, longer: message ids are UUIDs)."""
_log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class PlaybookJob:
    """One playbook run against one server. Only `secret_env` and `ssh_private_key` are secret."""

    playbook: PlaybookName
    target: ServerTarget
    variables: Mapping[str, object]
    secret_env: Mapping[str, str] = field(default_factory=dict)
    ssh_private_key: str | None = None
    correlation_id: str | None = None
    """The correlation id of the request the job serves (default: the message being handled)."""

    @property
    def correlation(self) -> str:
        """The job's correlation id: its own, else the handled message's; "" when there is
        none or it is not a plain id (it reaches the playbook's templates)."""
        envelope = current_envelope.get()
        value = (
            self.correlation_id
            or (envelope.correlation_id if envelope is not None else "")
            or current_correlation_id.get()
            or ""
        )
        return value if _CORRELATION_ID.fullmatch(value) else ""


@dataclass(frozen=True)
class PlaybookRun:
    """How a run ended, with its raw output (not yet redacted) and what it reported."""

    exit_code: int
    stdout: str
    stderr: str
    failures: tuple[str, ...] = ()
    unreachable: bool = False
    timed_out: bool = False
    report: dict[str, Any] | None = None
    attempts: int = 1

    @property
    def ok(self) -> bool:
        """True when the playbook ran to its end on every host."""
        return self.exit_code == 0 and not self.timed_out


class PlaybookRunner(Protocol):
    """Runs a playbook job to its end."""

    async def run(self, job: PlaybookJob, on_task: TaskListener | None = None) -> PlaybookRun:
        """Run `job`; a failed playbook is a `PlaybookRun`, not an exception."""
        ...


class AnsiblePlaybookRunner:
    """`ansible-playbook` as an asyncio subprocess in its own process group."""

    def __init__(self, settings: InfraSettings, playbooks_dir: Path = PLAYBOOKS_DIR) -> None:
        self._settings = settings
        self._playbooks_dir = playbooks_dir

    async def run(self, job: PlaybookJob, on_task: TaskListener | None = None) -> PlaybookRun:
        """Run `job` in a fresh job directory; kill the run's process group on timeout."""
        playbook = self._playbooks_dir / f"{job.playbook}.yml"
        if not playbook.is_file():
            raise PlaybookError(f"no playbook {playbook}")
        job_dir = self._settings.work_dir / "jobs" / uuid.uuid4().hex
        job_dir.mkdir(parents=True, mode=0o700)
        try:
            inventory = self._write_inventory(job, job_dir)
            variables = {**job.variables, "infra_correlation_id": job.correlation}
            (job_dir / "vars.json").write_text(json.dumps(variables))
            (job_dir / "ansible.cfg").write_text("[defaults]\n")
            argv = [
                self._settings.ansible_playbook_path,
                "-i",
                str(inventory),
                "-e",
                f"@{job_dir / 'vars.json'}",
                str(playbook),
            ]
            return await self._execute(argv, job, job_dir, on_task)
        finally:
            await asyncio.to_thread(shutil.rmtree, job_dir, True)

    def _write_inventory(self, job: PlaybookJob, job_dir: Path) -> Path:
        target = job.target
        host: dict[str, object] = {"ansible_python_interpreter": target.python}
        if target.connection == "local":
            host.update(
                ansible_connection="local",
                ansible_remote_tmp=str(self._settings.work_dir / "ansible" / "remote-tmp"),
            )
        else:
            checking = self._settings.ssh_host_key_checking
            known_hosts = self._settings.effective_known_hosts_file
            known_hosts.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            host.update(
                ansible_connection="ssh",
                ansible_host=target.host,
                ansible_port=target.port,
                ansible_user=target.user,
                ansible_ssh_common_args=(
                    f"-o StrictHostKeyChecking={checking} -o BatchMode=yes "
                    f"-o UserKnownHostsFile={known_hosts} -o IdentitiesOnly=yes "
                    f"-o ConnectTimeout={self._settings.ssh_connect_timeout_s}"
                ),
            )
            if job.ssh_private_key is not None:
                key_file = job_dir / "ssh_key"
                descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(descriptor, "w") as handle:
                    handle.write(job.ssh_private_key.rstrip("\n") + "\n")
                host["ansible_ssh_private_key_file"] = str(key_file)
        inventory = {"target": {"hosts": {target.handle: host}}}
        path = job_dir / "inventory.json"
        path.write_text(json.dumps(inventory))
        return path

    def _environment(self, job: PlaybookJob, job_dir: Path) -> dict[str, str]:
        ansible_home = self._settings.work_dir / "ansible"
        env = {key: os.environ[key] for key in _PASSED_ENV if key in os.environ}
        env.update(
            ANSIBLE_CONFIG=str(job_dir / "ansible.cfg"),
            ANSIBLE_HOME=str(ansible_home),
            ANSIBLE_LOCAL_TEMP=str(ansible_home / "tmp"),
            ANSIBLE_SSH_CONTROL_PATH_DIR=str(ansible_home / "cp"),
            ANSIBLE_PERSISTENT_CONTROL_PATH_DIR=str(ansible_home / "pc"),
            ANSIBLE_GATHERING="explicit",
            ANSIBLE_HOST_KEY_CHECKING=str(self._settings.ssh_host_key_checking != "no"),
            ANSIBLE_TIMEOUT=str(self._settings.ssh_connect_timeout_s),
            ANSIBLE_SSH_RETRIES="0",
            # one connection per task, no ControlPersist master left behind after a job
            ANSIBLE_SSH_ARGS="-o ControlMaster=no",
            ANSIBLE_PIPELINING="True",
            ANSIBLE_RETRY_FILES_ENABLED="False",
            ANSIBLE_NOCOLOR="True",
            ANSIBLE_FORCE_COLOR="False",
            ANSIBLE_STDOUT_CALLBACK="default",
            ANSIBLE_LOAD_CALLBACK_PLUGINS="False",
            ANSIBLE_CALLBACK_RESULT_FORMAT="json",
            ANSIBLE_DEPRECATION_WARNINGS="False",
            ANSIBLE_SYSTEM_WARNINGS="False",
            ANSIBLE_ACTION_WARNINGS="False",
            ANSIBLE_LOCALHOST_WARNING="False",
            ANSIBLE_INVENTORY_UNPARSED_WARNING="False",
            ANSIBLE_INVENTORY_ENABLED="yaml",  # reads the generated inventory.json
            ANSIBLE_NO_TARGET_SYSLOG="True",
            PYTHONUNBUFFERED="1",
            ORCHESTRATOR_CORRELATION_ID=job.correlation,
        )
        env.update(job.secret_env)
        return env

    async def _execute(
        self, argv: list[str], job: PlaybookJob, job_dir: Path, on_task: TaskListener | None
    ) -> PlaybookRun:
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=job_dir,
                env=self._environment(job, job_dir),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as error:
            raise PlaybookError(f"cannot start {argv[0]}: {error.strerror}") from None
        _log.info(
            "playbook started",
            playbook=job.playbook,
            server=job.target.handle,
            correlation_id=job.correlation,
            pid=process.pid,
        )
        assert process.stdout is not None
        assert process.stderr is not None
        stdout_lines: list[str] = []
        stderr_task = asyncio.create_task(process.stderr.read())

        async def pump() -> None:
            assert process.stdout is not None
            async for raw in process.stdout:
                line = raw.decode(errors="replace")
                stdout_lines.append(line)
                if on_task is not None and line.startswith("TASK ["):
                    await on_task(line[len("TASK [") :].split("]", 1)[0])

        timed_out = False
        try:
            await asyncio.wait_for(pump(), timeout=self._settings.playbook_timeout_s)
            exit_code = await process.wait()
        except TimeoutError:
            timed_out = True
            exit_code = await _kill_group(process)
        except BaseException:
            await _kill_group(process)
            stderr_task.cancel()
            raise
        stderr = (await stderr_task).decode(errors="replace")
        stdout = "".join(stdout_lines)
        parsed = parse_output(stdout)
        failures = list(parsed.failures)
        if timed_out:
            failures.append(
                f"playbook {job.playbook} timed out after {self._settings.playbook_timeout_s:g} s"
            )
        elif exit_code != 0 and not failures:
            lines = [line for line in (stderr + "\n" + stdout).splitlines() if line.strip()]
            failures.append(lines[-1].strip() if lines else f"exit code {exit_code}")
        _log.info(
            "playbook finished",
            playbook=job.playbook,
            server=job.target.handle,
            correlation_id=job.correlation,
            exit_code=exit_code,
            timed_out=timed_out,
        )
        return PlaybookRun(
            exit_code=exit_code,
            stdout=stdout,
            stderr=stderr,
            failures=tuple(failures),
            unreachable=parsed.unreachable or exit_code == 4,
            timed_out=timed_out,
            report=parsed.report,
        )


async def _kill_group(process: asyncio.subprocess.Process) -> int:
    """Stop the run and everything it started in its group: TERM, then KILL after a grace."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        return await asyncio.wait_for(process.wait(), timeout=_KILL_GRACE_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        return await process.wait()


async def run_with_ssh_retries(
    runner: PlaybookRunner,
    job: PlaybookJob,
    *,
    attempts: int,
    backoff_s: float,
    on_task: TaskListener | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> PlaybookRun:
    """Run `job`; run it again, with doubling delays, only while the host is unreachable."""
    delay_s = backoff_s
    attempt = 1
    while True:
        run = await runner.run(job, on_task)
        if not run.unreachable or attempt >= max(attempts, 1):
            return dataclasses.replace(run, attempts=attempt)
        _log.warning(
            "server unreachable, retrying",
            server=job.target.handle,
            attempt=attempt,
            delay_s=delay_s,
        )
        await sleep(delay_s)
        delay_s *= 2
        attempt += 1
