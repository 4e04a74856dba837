"""Agents as an unprivileged user while the system runs as root (`agent_user`).

The tests need root (this machine, most containers and CI runners) and use the stock
`nobody` account. Everything the agent touches lives in a directory it can reach (pytest's
own temporary directories are closed to other users).
"""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.worker_manager.agent_env import git_identity_env, hand_over
from services.worker_manager.errors import InvalidWorkerConfigError
from services.worker_manager.settings import WorkerManagerSettings
from services.worker_wrapper.agents import AgentRequest, ClaudeCodeAgent
from services.worker_wrapper.agents.base import ignore_activity
from tests.agents.fake_models import (
    Failure,
    ModelScript,
    Reply,
    ToolCall,
    serve_anthropic,
    serve_openai,
)
from tests.support.agents import PLANTED_KEY
from tests.support.workers import Client
from tests.workers.helpers import git, make_repo_with_remote, read_text

if os.geteuid() != 0:
    pytest.skip("running agents as another user needs root", allow_module_level=True)

EnvFactory = Callable[..., dict[str, str]]
AGENT_USER = "nobody"


@pytest.fixture
def account() -> tuple[int, int]:
    """(uid, gid) of the agent user."""
    entry = pwd.getpwnam(AGENT_USER)
    return entry.pw_uid, entry.pw_gid


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory every user can traverse (unlike pytest's tmp_path)."""
    path = Path(tempfile.mkdtemp(prefix="agent-user-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def give(path: Path, account: tuple[int, int]) -> None:
    """chown -R `path` to the agent user."""
    for folder, dirs, names in os.walk(path):
        os.chown(folder, *account)
        for name in dirs + names:
            os.chown(os.path.join(folder, name), *account, follow_symlinks=False)


def share(remote: Path) -> None:
    """Let every user push to a root-owned bare repository (root keeps owning it, so the
    system's own git commands on it still work)."""
    git(remote, "config", "core.sharedRepository", "world")
    for folder, _dirs, names in os.walk(remote):
        os.chmod(folder, 0o777)  # noqa: S103  # a test remote every user may push to
        for name in names:
            os.chmod(os.path.join(folder, name), 0o666)  # noqa: S103  # same


def agent_owned_dir(path: Path, account: tuple[int, int]) -> Path:
    """A new directory the agent user owns."""
    path.mkdir()
    os.chown(path, *account)
    return path


def owner(path: Path) -> int:
    """The uid owning `path`."""
    return path.stat().st_uid


def root_git(repo: Path, *args: str) -> str:
    """git as root in a repository the agent user owns (git refuses "dubious ownership")."""
    return git(repo, "-c", "safe.directory=*", *args)


def commit_turns(workspace: Path, marker: Path, branch: str) -> list[Reply | Failure]:
    """Write a file, record the agent's uid, commit and push, answer."""
    return [
        Reply(
            tools=(
                ToolCall("Write", {"file_path": str(workspace / "hello.py"), "content": "x = 1\n"}),
            )
        ),
        Reply(
            tools=(
                ToolCall(
                    "Bash",
                    {
                        "command": f"id -u > {marker} && git add hello.py && "
                        f"git commit -q -m 'Add hello' && git push -q origin HEAD:{branch}"
                    },
                ),
            )
        ),
        Reply(text="Done as an unprivileged user."),
    ]


async def test_claude_as_root_refuses_bypass_without_the_sandbox_switch(
    claude_cli: Path, make_env: EnvFactory, tmp_path: Path
) -> None:
    """Why a switch is needed: as root, without IS_SANDBOX or another user, the real CLI
    refuses to run, and the error says so."""
    with serve_anthropic(ModelScript([Reply(text="never")])) as fake:
        agent = ClaudeCodeAgent([str(claude_cli)], root_sandbox=False)
        env = make_env(ANTHROPIC_BASE_URL=fake.url, ANTHROPIC_API_KEY=PLANTED_KEY)
        result = await agent.run(AgentRequest("r", "go", tmp_path, 60.0, env), ignore_activity)
    assert result.status == "error"
    assert "cannot be used with root/sudo privileges" in (result.error or "")


async def test_claude_runs_as_the_agent_user(
    claude_cli: Path, open_dir: Path, account: tuple[int, int]
) -> None:
    """With run_as, the real CLI runs as `nobody`: its files and commands are nobody's, it
    accepts bypassPermissions without IS_SANDBOX, and it pushes."""
    workspace, remote = make_repo_with_remote(open_dir)
    home = open_dir / "home"
    home.mkdir()
    marker = open_dir / "uid.txt"
    give(open_dir, account)
    script = ModelScript(commit_turns(workspace, marker, "main"))
    identity = git_identity_env(WorkerManagerSettings(), "claude-code")
    with serve_anthropic(script) as fake:
        agent = ClaudeCodeAgent([str(claude_cli)], max_retries=1, run_as=account)
        assert "IS_SANDBOX" not in agent.environment()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "ANTHROPIC_BASE_URL": fake.url,
            "ANTHROPIC_API_KEY": PLANTED_KEY,
            **identity,
        }
        result = await agent.run(AgentRequest("r", "go", workspace, 90.0, env), ignore_activity)
    assert result.status == "success", result.error
    assert read_text(marker).strip() == str(account[0])
    assert (workspace / "hello.py").stat().st_uid == account[0]
    assert root_git(remote, "show", "main:hello.py") == "x = 1"


def test_hand_over_refuses_a_workspace_the_user_cannot_reach(
    tmp_path: Path, account: tuple[int, int]
) -> None:
    """pytest's tmp_path (under a 0700 directory) is closed to other users: refused, clearly."""
    workspace, session = tmp_path / "w", tmp_path / "s"
    workspace.mkdir()
    session.mkdir()
    with pytest.raises(InvalidWorkerConfigError, match="cannot reach"):
        hand_over(workspace, session, account)


async def test_worker_runs_its_agent_as_the_agent_user(
    manager: object,
    client: Client,
    claude_cli: Path,
    open_dir: Path,
    account: tuple[int, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`agent_user=nobody`: the manager hands the workspace and a HOME in the session
    directory to nobody; the real claude commits, pushes and resumes as nobody."""
    from tests.support.agents import OwnManagerRunner

    assert isinstance(manager, OwnManagerRunner)
    (open_dir / "repos").mkdir()
    _, remote = make_repo_with_remote(open_dir / "repos")
    share(remote)
    marker = agent_owned_dir(open_dir / "out", account) / "uid.txt"
    script = ModelScript([])
    with serve_anthropic(script) as fake:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", PLANTED_KEY)
        await manager.start(
            claude_command=[str(claude_cli)],
            claude_max_retries=1,
            agent_user=AGENT_USER,
            data_dir=open_dir / "workers",
        )
        created = await client.create(context={"repo_url": str(remote), "branch": "feature"})
        assert created.success, created.error
        record = await client.record(created.worker_id)
        workspace = Path(record.workspace)
        script.turns = [*commit_turns(workspace, marker, "feature"), Reply(text="Resumed.")]
        first = await client.send(created.worker_id, "add hello.py", timeout_s=120)
        assert first.success, first.error
        second = await client.send(created.worker_id, "and then?", timeout_s=120)
    assert second.success, second.error
    assert second.response == "Resumed."
    assert "add hello.py" in str(script.requests[-1]["messages"])
    assert read_text(marker).strip() == str(account[0])
    assert owner(workspace) == account[0]
    assert owner(Path(record.session_dir) / "home" / ".claude") == account[0]
    assert git(remote, "log", "-1", "--format=%an", "feature") == "Claude Code agent"


async def test_codex_as_the_agent_user_is_stopped_at_the_cap_through_the_relay(
    codex_cli: Path, open_dir: Path, account: tuple[int, int]
) -> None:
    """The real Codex as `nobody` under a cap: it reaches the wrapper's metering relay (a
    root process on 127.0.0.1), runs its first command as nobody, and the second response
    ($0.30 + $0.30 against $0.50) stops it before its command runs."""
    from services.worker_wrapper.agents import CodexAgent
    from services.worker_wrapper.agents.pricing import Price, PriceTable
    from tests.agents.test_codex_cli import MODEL, shell

    workspace = open_dir / "w"
    workspace.mkdir()
    home = open_dir / "home"
    home.mkdir()
    first, second = open_dir / "first.txt", open_dir / "second.txt"
    give(open_dir, account)
    turns: list[Reply | Failure] = [
        Reply(tools=(shell(f"id -u > {first}"),), input_tokens=150_000, output_tokens=0),
        Reply(tools=(shell(f"id -u > {second}"),), input_tokens=150_000, output_tokens=0),
        Reply(text="never reached"),
    ]
    script = ModelScript(turns)
    prices = PriceTable({MODEL: Price(input=2.0, output=8.0)}, Price(input=99.0, output=99.0))
    with serve_openai(script) as fake:
        agent = CodexAgent(
            [str(codex_cli)],
            model=MODEL,
            max_retries=0,
            run_as=account,
            budget_usd=0.5,
            prices=prices,
        )
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "OPENAI_BASE_URL": f"{fake.url}/v1",
            "OPENAI_API_KEY": PLANTED_KEY,
        }
        result = await agent.run(AgentRequest("r", "go", workspace, 90.0, env), ignore_activity)
    assert result.status == "error"
    assert result.error == (
        "budget exceeded: task 0.6000/0.5000 USD; the agent's process tree was stopped"
    )
    assert read_text(first).strip() == str(account[0])
    assert not second.exists()
    assert script.conversation_requests == 2


async def test_droid_worker_runs_as_the_agent_user(
    manager: object,
    client: Client,
    droid_cli: Path,
    open_dir: Path,
    account: tuple[int, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`agent_user=nobody` with the real droid on the system's BYOK model: the Factory home
    the adapter writes is nobody's, and droid creates, commits and pushes as nobody."""
    from tests.agents.test_droid_cli import execute
    from tests.support.agents import OwnManagerRunner

    assert isinstance(manager, OwnManagerRunner)
    (open_dir / "repos").mkdir()
    _, remote = make_repo_with_remote(open_dir / "repos")
    share(remote)
    marker = agent_owned_dir(open_dir / "out", account) / "uid.txt"
    script = ModelScript([])
    with serve_anthropic(script) as fake:
        monkeypatch.setenv("ANTHROPIC_API_KEY", PLANTED_KEY)
        await manager.start(
            droid_command=[str(droid_cli)],
            droid_byok={"base_url": fake.url, "model": "scripted-model"},
            agent_user=AGENT_USER,
            data_dir=open_dir / "workers",
        )
        created = await client.create(
            agent="factory-droid", context={"repo_url": str(remote), "branch": "feature"}
        )
        assert created.success, created.error
        record = await client.record(created.worker_id)
        workspace = Path(record.workspace)
        steps = (f"id -u > {marker}", "add hello.py", "commit -q -m 'Add hello'")
        script.turns = [
            Reply(
                tools=(
                    ToolCall(
                        "Create", {"file_path": str(workspace / "hello.py"), "content": "y\n"}
                    ),
                )
            ),
            Reply(tools=(execute(steps[0]),)),
            *(Reply(tools=(execute(f"git -C {workspace} {step}"),)) for step in steps[1:]),
            Reply(tools=(execute(f"git -C {workspace} push -q origin HEAD:feature"),)),
            Reply(text="Done as nobody."),
        ]
        answer = await client.send(created.worker_id, "add hello.py", timeout_s=120)
    assert answer.success, answer.error
    assert answer.response == "Done as nobody."
    assert read_text(marker).strip() == str(account[0])
    assert owner(workspace / "hello.py") == account[0]
    factory = Path(record.session_dir) / "droid-home" / ".factory"
    assert owner(factory / "settings.json") == account[0]
    assert (factory / "settings.json").stat().st_mode & 0o777 == 0o600
    assert git(remote, "log", "-1", "--format=%an", "feature") == "Factory Droid agent"
