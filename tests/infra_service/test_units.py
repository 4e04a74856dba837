"""Fast pieces of infra-service: output parsing, redaction, secrets, sources, retries."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import psutil
import pytest

from services.infra_service.ansible import PlaybookJob, PlaybookRun, run_with_ssh_retries
from services.infra_service.ansible_output import Redactor, parse_output, tail
from services.infra_service.cancellation import CancelledTasks, until_cancelled
from services.infra_service.errors import (
    InfraError,
    RepositoryNotFoundError,
    SecretError,
    SecretNotFoundError,
)
from services.infra_service.handlers import app_name_of, module_names
from services.infra_service.repos import repo_source
from services.infra_service.secrets import (
    EnvSecretsProvider,
    FileSecretsProvider,
    SchemeSecretsProvider,
    parse_env_text,
    render_env_text,
)
from services.infra_service.servers import ServerTarget
from tests.support.infra_service import make_repo, make_settings

FAILED_OUTPUT = """
TASK [Report a failed release] ***
fatal: [local]: FAILED! => {"changed": false, "msg": "port 8080 is already in use"}

TASK [x] ***
fatal: [far]: UNREACHABLE! => {
    "changed": false,
    "msg": "Failed to connect to the host via ssh: Connection refused",
    "unreachable": true
}
ok: [local] => {
    "msg": "INFRA_REPORT {\\"services_redeployed\\": 2}"
}
"""


def test_parse_output_finds_failures_unreachable_hosts_and_the_report() -> None:
    """Failed task messages, unreachability and the INFRA_REPORT object are read from stdout."""
    parsed = parse_output(FAILED_OUTPUT)

    assert parsed.failures[0] == "port 8080 is already in use"
    assert "host far unreachable" in parsed.failures[1]
    assert parsed.unreachable is True
    assert parsed.report == {"services_redeployed": 2}


def test_parse_output_of_a_censored_failure_hides_it() -> None:
    """A no_log task's failure is reported without its content."""
    text = 'fatal: [local]: FAILED! => {"censored": "hidden", "changed": false}\n'

    assert parse_output(text).failures == [
        "a task that handles secrets failed (its output is hidden)"
    ]


def test_redactor_replaces_secrets_and_keeps_short_values() -> None:
    """Every secret of 4+ characters becomes ***; tiny values would mangle text and stay."""
    redact = Redactor(["hunter22", "abc"]).extend(["tok-1"])

    assert redact("pw=hunter22 t=tok-1 abc") == "pw=*** t=*** abc"


def test_tail_keeps_the_end_from_a_line_start() -> None:
    """The tail of a long text starts at a line boundary."""
    assert tail("first line\nsecond\nthird", 12) == "third"
    assert tail("short", 100) == "short"


def test_env_text_from_json_and_lines_round_trips() -> None:
    """A JSON object and KEY=VALUE lines give the same environment; rendering reads back."""
    from_lines = parse_env_text("# c\nexport A=1\nB = two\n", ref="r")
    from_json = parse_env_text('{"A": 1, "B": "two"}', ref="r")

    assert from_lines == from_json == {"A": "1", "B": "two"}
    assert parse_env_text(render_env_text(from_lines), ref="r") == from_lines


@pytest.mark.parametrize("text", ["NOT A LINE", '{"bad key": "x"}', "[1, 2]"])
def test_bad_env_text_is_refused_without_its_values(text: str) -> None:
    """Malformed secrets fail with an error that names the reference, not the value."""
    with pytest.raises(SecretError) as caught:
        parse_env_text(text + "\nSECRET=do-not-show", ref="file:x.env")

    assert "file:x.env" in str(caught.value)
    assert "do-not-show" not in str(caught.value)


async def test_scheme_provider_resolves_env_file_and_none(tmp_path: Path) -> None:
    """`env:`, `file:` (relative to the root) and `none` resolve; unknown schemes fail."""
    (tmp_path / "token").write_text("from-file\n")
    provider = SchemeSecretsProvider(
        {"env": EnvSecretsProvider({"TOKEN": "from-env"}), "file": FileSecretsProvider(tmp_path)}
    )

    assert await provider.resolve("env:TOKEN") == "from-env"
    assert await provider.resolve("file:token") == "from-file"
    assert await provider.resolve(f"file:{tmp_path / 'token'}") == "from-file"
    assert await provider.resolve("none") == ""
    with pytest.raises(SecretError, match="unknown scheme"):
        await provider.resolve("vault:kv/x")
    with pytest.raises(SecretNotFoundError):
        await provider.resolve("env:MISSING")
    with pytest.raises(SecretNotFoundError):
        await provider.resolve("file:absent")
    with pytest.raises(SecretError, match="leaves"):
        await provider.resolve("file:../outside")


def test_repo_source_local_github_and_refusals(tmp_path: Path) -> None:
    """owner/name maps to the bare repository or the GitHub URL; credentials in URLs are refused."""
    local = make_settings(tmp_path)
    github = make_settings(tmp_path, git_provider="github")

    assert repo_source("acme/shop", local).local_path == tmp_path.resolve() / "repos/acme/shop.git"
    assert repo_source("acme/shop", github).url == "https://github.com/acme/shop.git"
    assert repo_source("acme/shop", github).needs_token is True
    with pytest.raises(RepositoryNotFoundError):
        repo_source("https://user:pw@github.com/acme/shop.git", local)
    with pytest.raises(RepositoryNotFoundError):
        repo_source("../etc", local)


@pytest.mark.parametrize(
    "reference",
    [
        "file:///var/repos/victims/shop.git",
        "https://github.com/acme/shop.git",
        "/var/repos/acme/shop.git",
        "acme/../victims",
        "acme/shop/extra",
        "-u/x",
        "acme/.git",
    ],
)
def test_a_deploy_fetches_nothing_but_owner_name(tmp_path: Path, reference: str) -> None:
    """URLs, absolute paths and anything but a plain owner/name are refused: a message can
    never make a deploy fetch a repository of its choosing."""
    for settings in (make_settings(tmp_path), make_settings(tmp_path, git_provider="github")):
        with pytest.raises(RepositoryNotFoundError):
            repo_source(reference, settings)


def test_a_symlink_out_of_the_repositories_directory_is_refused(tmp_path: Path) -> None:
    """A repository path that resolves outside the repositories directory is not fetched."""
    settings = make_settings(tmp_path)
    (tmp_path / "secret.git").mkdir()
    (settings.effective_repos_dir / "acme").mkdir(parents=True)
    (settings.effective_repos_dir / "acme" / "shop.git").symlink_to(tmp_path / "secret.git")
    with pytest.raises(RepositoryNotFoundError, match="outside"):
        repo_source("acme/shop", settings)


def test_module_names_are_plain_names() -> None:
    """Deploy modules become checkout directories: only plain lower-case names pass."""
    assert module_names(["backend", "telegram-bot_2"]) == ["backend", "telegram-bot_2"]
    assert module_names(None) == []
    for bad in ("../etc", "a/b", "", "Backend", "-x", "x" * 41, "back end", "$(id)"):
        with pytest.raises(InfraError, match="plain name"):
            module_names([bad])


def test_app_name_is_a_safe_directory_name() -> None:
    """Project ids become directory names without separators or leading dots."""
    assert app_name_of("1b2c-Ab_9") == "1b2c-Ab_9"
    assert app_name_of("../x y") == "x-y"
    with pytest.raises(InfraError):
        app_name_of("///")


class ScriptedRunner:
    """A runner answering with prepared runs, one per call."""

    def __init__(self, runs: list[PlaybookRun]) -> None:
        self.runs = runs
        self.calls = 0

    async def run(self, job: PlaybookJob, on_task: object = None) -> PlaybookRun:
        """The next prepared run."""
        self.calls += 1
        return self.runs.pop(0)


def _job(tmp_path: Path) -> PlaybookJob:
    target = ServerTarget(
        handle="h",
        host="h",
        connection="ssh",
        base_dir=tmp_path,
        python="python3",
        bind_host="0.0.0.0",
        public_host="h",
    )
    return PlaybookJob(playbook="provision_server", target=target, variables={})


async def test_unreachable_runs_are_retried_with_doubling_delays(tmp_path: Path) -> None:
    """Unreachable → retried after 1 s, then 2 s; the third run's outcome is returned."""
    unreachable = PlaybookRun(exit_code=4, stdout="", stderr="", unreachable=True)
    runner = ScriptedRunner([unreachable, unreachable, PlaybookRun(0, "", "")])
    delays: list[float] = []

    async def sleep(delay_s: float) -> None:
        delays.append(delay_s)

    run = await run_with_ssh_retries(runner, _job(tmp_path), attempts=5, backoff_s=1, sleep=sleep)

    assert (run.ok, run.attempts, delays) == (True, 3, [1, 2])


async def test_a_failed_playbook_is_not_retried(tmp_path: Path) -> None:
    """A reachable host whose playbook failed is reported after one run."""
    runner = ScriptedRunner([PlaybookRun(exit_code=2, stdout="", stderr="", failures=("x",))])

    run = await run_with_ssh_retries(runner, _job(tmp_path), attempts=5, backoff_s=0)

    assert (run.ok, run.attempts, runner.calls) == (False, 1, 1)


SCRIPTS = Path(__file__).resolve().parents[2] / "services/infra_service/playbooks/files"


def _load_script(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(SCRIPTS))  # the scripts import each other, as on a server
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_start_command_prefers_procfile_then_uvicorn_then_main(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Procfile web line wins over app/main.py; a module directory is found below the top."""
    deployctl = _load_script("deployctl", monkeypatch)
    (tmp_path / "backend/app").mkdir(parents=True)
    (tmp_path / "backend/app/main.py").write_text("")
    (tmp_path / "backend/main.py").write_text("")

    assert deployctl.find_project(tmp_path, []) == tmp_path / "backend"
    assert deployctl.detect_command(tmp_path / "backend", "py")[1:3] == ["-m", "uvicorn"]
    (tmp_path / "backend/Procfile").write_text("web: serve --port $PORT\n")
    assert deployctl.detect_command(tmp_path / "backend", "py")[-1] == "exec serve --port $PORT"
    assert deployctl.find_project(tmp_path / "nothing", []) is None


def test_dataclass_replace_keeps_attempts_field() -> None:
    """PlaybookRun stays a plain frozen dataclass (retries rely on dataclasses.replace)."""
    run = dataclasses.replace(PlaybookRun(0, "", ""), attempts=3)
    assert run.attempts == 3


def test_fetch_with_a_token_leaves_it_nowhere_in_the_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token lives in a temporary 0600 git config only; the checkout never records it."""
    deployctl = _load_script("deployctl", monkeypatch)
    settings = make_settings(tmp_path)
    bare = make_repo(settings, "acme/tok", {"main.py": "print('hi')\n"})

    report = deployctl.fetch(tmp_path / "server", "tok", str(bare), "HEAD", "tok-SECRET-123")

    src = tmp_path / "server" / "apps" / "tok" / "src"
    assert (src / "main.py").read_text() == "print('hi')\n"
    assert len(report["commit"]) == 40
    leftovers = [p for p in (tmp_path / "server").rglob("*") if p.is_file()]
    encoded = base64.b64encode(b"x-access-token:tok-SECRET-123")
    assert not [p for p in leftovers if b"tok-SECRET-123" in p.read_bytes()]
    assert not [p for p in leftovers if encoded in p.read_bytes()]


async def test_until_cancelled_lets_finished_work_win() -> None:
    """Work that ends before any cancellation returns its result; the task was asked."""
    tasks = CancelledTasks()

    async def work() -> str:
        await asyncio.sleep(0.05)
        return "done"

    result = await until_cancelled(work(), task_id="t1", source=tasks, poll_s=0.01)

    assert result == ("done", False)
    assert tasks.questions >= 1


async def test_until_cancelled_stops_running_work() -> None:
    """A cancellation while the work runs cancels it (the runner's cleanup runs)."""
    tasks = CancelledTasks()
    started, cleaned_up = asyncio.Event(), asyncio.Event()

    async def work() -> str:
        started.set()
        try:
            await asyncio.sleep(60)
        finally:
            cleaned_up.set()
        return "never"

    async def cancel_once_started() -> None:
        await started.wait()
        tasks.cancel("t2")

    canceller = asyncio.create_task(cancel_once_started())
    result = await until_cancelled(work(), task_id="t2", source=tasks, poll_s=0.01)
    await canceller

    assert result == (None, True)
    assert cleaned_up.is_set()


async def test_until_cancelled_never_starts_the_work_of_a_cancelled_task() -> None:
    """A task cancelled before its job starts: the work is not run at all."""
    tasks = CancelledTasks({"t3"})
    ran: list[bool] = []

    async def work() -> None:
        ran.append(True)

    assert await until_cancelled(work(), task_id="t3", source=tasks, poll_s=0.01) == (None, True)
    assert ran == []


async def test_until_cancelled_runs_requests_of_no_task_and_survives_a_broken_source() -> None:
    """A request that is no task's step is never watched; a failing source stops nothing."""

    class Broken:
        async def is_cancelled(self, task_id: str) -> bool:
            raise RuntimeError("boom")

    async def work() -> int:
        await asyncio.sleep(0.05)
        return 7

    tasks = CancelledTasks({"t4"})

    unwatched = await until_cancelled(work(), task_id=None, source=tasks, poll_s=0.01)
    despite = await until_cancelled(work(), task_id="t5", source=Broken(), poll_s=0.01)

    assert unwatched == (7, False)
    assert tasks.questions == 0
    assert despite == (7, False)


def test_abort_kills_a_step_that_outlived_its_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deploy step still running (its own process group, as under sshd) is killed by abort,
    children included; a job whose release had succeeded is left running, only forgotten."""
    rollback = _load_script("rollback", monkeypatch)
    app_dir = tmp_path / "apps" / "web"
    app_dir.mkdir(parents=True)
    fake_step = tmp_path / "deployctl.py"  # a step that waits, with a child of its own
    fake_step.write_text(
        "import subprocess, time\nsubprocess.Popen(['sleep', '60'])\ntime.sleep(60)\n"
    )
    step = subprocess.Popen([sys.executable, str(fake_step)], start_new_session=True)
    try:
        (app_dir / "step.json").write_text(json.dumps({"pid": step.pid, "pgid": step.pid}))
        (app_dir / "rollback.json").write_text(json.dumps({"job": "J", "released": True}))
        child_started = time.monotonic() + 10
        while len(psutil.Process(step.pid).children()) == 0 and time.monotonic() < child_started:
            time.sleep(0.02)
        [child] = psutil.Process(step.pid).children()

        report = rollback.abort(tmp_path, "web", "J", lambda url, timeout_s: 200, "/health", 1.0)

        assert step.wait(timeout=10) != 0
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
        assert report["step_killed"] is True
        assert (report["released"], report["changed"], report["running"]) == (True, False, False)
        assert not (app_dir / "step.json").exists()
        assert not (app_dir / "rollback.json").exists()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(step.pid, signal.SIGKILL)
        step.wait()
