"""Small pieces of the workers: sessions, secret masking, environment, clone credentials."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from services.worker_manager.errors import InvalidWorkerConfigError, WorkerStartError
from services.worker_manager.workspace import (
    _credentials_env,
    allowlisted_env,
    clone_repository,
    write_instructions,
)
from services.worker_wrapper.service import agent_environment, mask_secrets
from services.worker_wrapper.session import SessionStore, split_fresh
from tests.workers.helpers import base_env, git


def test_session_resumes_until_ttl_and_only_for_its_adapter(tmp_path: Path) -> None:
    """A saved session is resumed within the TTL, not after it, not by another adapter."""
    store = SessionStore(tmp_path, adapter="claude-code", ttl_s=60)
    assert store.current() is None
    store.save("s-1")
    assert store.current() == "s-1"
    assert SessionStore(tmp_path, adapter="factory-droid", ttl_s=60).current() is None
    state = json.loads((tmp_path / "session.json").read_text())
    state["last_used_at"] = time.time() - 61
    (tmp_path / "session.json").write_text(json.dumps(state))
    assert store.current() is None


def test_new_prefix_asks_for_a_fresh_session() -> None:
    """`/new` at the start of a prompt is removed and asks for a fresh session."""
    assert split_fresh("/new build it") == ("build it", True)
    assert split_fresh("/newline is a word") == ("/newline is a word", False)
    assert split_fresh("plain") == ("plain", False)


def test_secrets_are_masked_and_controls_stripped() -> None:
    """Values of secret-looking variables become ***; WORKER_* and REDIS_URL never reach
    the agent."""
    env = {"API_TOKEN": "tok-123456", "GREETING": "hello-world", "PATH": "/bin"}
    assert mask_secrets("got tok-123456 and hello-world", env) == "got *** and hello-world"
    assert mask_secrets(None, env) is None
    source = {"WORKER_ID": "w", "REDIS_URL": "redis://x", "ORCHESTRATOR_X": "1", "PATH": "/bin"}
    assert agent_environment(source) == {"PATH": "/bin"}


def test_environment_is_allowlisted_plus_env_vars() -> None:
    """Only allowlisted host variables pass; env_vars are added; bad names are refused."""
    host = {"PATH": "/bin", "AWS_SECRET_ACCESS_KEY": "x", "HOME": "/root"}
    assert allowlisted_env(host, ["PATH", "HOME"], {"A": "1"}) == {
        "PATH": "/bin",
        "HOME": "/root",
        "A": "1",
    }
    with pytest.raises(InvalidWorkerConfigError):
        allowlisted_env(host, ["PATH"], {"BAD=NAME": "1"})


def test_clone_credentials_go_to_the_environment_not_argv() -> None:
    """user:token in an https URL moves into git's environment as an auth header."""
    url, env = _credentials_env("https://x-access-token:ghs_secret@github.com/o/r.git")
    assert url == "https://github.com/o/r.git"
    assert "ghs_secret" not in url
    assert env["GIT_CONFIG_KEY_0"] == "http.extraHeader"
    assert env["GIT_CONFIG_VALUE_0"].startswith("Authorization: Basic ")
    assert _credentials_env("/srv/repos/r.git") == ("/srv/repos/r.git", {})


def test_instructions_are_written_and_kept_out_of_git(tmp_path: Path) -> None:
    """CLAUDE.md for claude-code, AGENTS.md otherwise, excluded from the repository."""
    git(tmp_path, "init", "-q")
    target = write_instructions(tmp_path, "claude-code", "po", None, ["git", "python"])
    assert target.name == "CLAUDE.md"
    text = target.read_text()
    assert "Product Owner" in text
    assert "Capabilities of this worker: git, python." in text
    assert git(tmp_path, "status", "--porcelain") == ""
    assert write_instructions(tmp_path, "builtin", "developer", "Do X.", []).name == "AGENTS.md"


def test_clone_failure_is_a_start_error(tmp_path: Path) -> None:
    """A repository that cannot be cloned is a WorkerStartError with git's message."""
    with pytest.raises(WorkerStartError, match="cannot clone"):
        clone_repository(str(tmp_path / "missing.git"), tmp_path / "ws", None, {"PATH": "/usr/bin"})


def test_a_worker_goes_on_from_its_branch_on_the_remote(tmp_path: Path) -> None:
    """A branch already pushed (by a worker that died) is checked out from the remote, so the
    next worker's commits fast-forward it; a new branch starts at the default branch."""
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    seed = tmp_path / "seed"
    git(tmp_path, "clone", "-q", str(remote), str(seed))
    git(seed, "commit", "-q", "--allow-empty", "-m", "base")
    git(seed, "push", "-q", "origin", "HEAD:main")
    git(seed, "commit", "-q", "--allow-empty", "-m", "the first worker's work")
    git(seed, "push", "-q", "origin", "HEAD:task/t-1")
    main, pushed = git(seed, "rev-parse", "HEAD~1").strip(), git(seed, "rev-parse", "HEAD").strip()
    env = base_env()

    clone_repository(str(remote), tmp_path / "again", "task/t-1", env)
    assert git(tmp_path / "again", "rev-parse", "HEAD").strip() == pushed
    assert git(tmp_path / "again", "branch", "--show-current").strip() == "task/t-1"

    clone_repository(str(remote), tmp_path / "fresh", "task/t-2", env)
    assert git(tmp_path / "fresh", "rev-parse", "HEAD").strip() == main
    assert git(tmp_path / "fresh", "branch", "--show-current").strip() == "task/t-2"


def test_a_new_task_branch_starts_from_the_base_branch_as_it_is_now(tmp_path: Path) -> None:
    """A task branch not yet on the remote starts at the remote's base branch (with the work
    merged there), not at the remote's default branch."""
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    seed = tmp_path / "seed"
    git(tmp_path, "clone", "-q", str(remote), str(seed))
    git(seed, "commit", "-q", "--allow-empty", "-m", "base")
    git(seed, "push", "-q", "origin", "HEAD:main")
    git(seed, "commit", "-q", "--allow-empty", "-m", "an earlier task's work")
    git(seed, "push", "-q", "origin", "HEAD:develop")
    develop = git(seed, "rev-parse", "HEAD").strip()
    env = base_env()

    clone_repository(str(remote), tmp_path / "ws", "task/t-3", env, base="develop")
    assert git(tmp_path / "ws", "rev-parse", "HEAD").strip() == develop
    assert git(tmp_path / "ws", "branch", "--show-current").strip() == "task/t-3"


def _state(workspace: Path) -> tuple[str, str, str, str, str]:
    """What a task sees of its checkout: branch, commit, upstream, status, fsck."""
    return (
        git(workspace, "branch", "--show-current").strip(),
        git(workspace, "rev-parse", "HEAD").strip(),
        git(workspace, "rev-parse", "--abbrev-ref", "@{upstream}").strip(),
        git(workspace, "status", "--porcelain", "--branch").strip(),
        git(workspace, "fsck", "--no-dangling").strip(),
    )


@pytest.mark.parametrize("branch", ["task/t-4", "feature-x", "a/b/c"])
def test_a_branch_started_without_git_is_the_branch_git_starts(tmp_path: Path, branch: str) -> None:
    """A new task branch at the commit already checked out is written in place (no git
    process): the same branch, commit, upstream and clean status as `git checkout -B`."""
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    seed = tmp_path / "seed"
    git(tmp_path, "clone", "-q", str(remote), str(seed))
    (seed / "file.txt").write_text("x\n")
    git(seed, "add", "file.txt")
    git(seed, "commit", "-q", "-m", "base")
    git(seed, "push", "-q", "origin", "HEAD:main")
    env = base_env()
    clone_repository(str(remote), tmp_path / "fast", branch, env, base="main")
    git(tmp_path, "clone", "-q", str(remote), str(tmp_path / "slow"))
    git(tmp_path / "slow", "checkout", "-q", "-B", branch, "origin/main")
    assert _state(tmp_path / "fast") == _state(tmp_path / "slow")
    assert not (tmp_path / "fast" / ".git" / "logs" / "refs" / "heads" / branch).exists()
    # and git goes on from it: a commit on the branch, pushed under its name
    (tmp_path / "fast" / "file.txt").write_text("y\n")
    git(tmp_path / "fast", "commit", "-q", "-am", "work")
    git(tmp_path / "fast", "push", "-q", "origin", f"HEAD:{branch}")
    assert (
        git(remote, "rev-parse", branch).strip()
        == git(tmp_path / "fast", "rev-parse", "HEAD").strip()
    )


@pytest.mark.parametrize("branch", ["main", "x..y", "-dash", "we ird", "task/@{1}", "a.lock"])
def test_a_branch_git_must_judge_is_left_to_git(tmp_path: Path, branch: str) -> None:
    """The current branch itself and names git may refuse are never written in place: git
    starts (or refuses) them as before."""
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    seed = tmp_path / "seed"
    git(tmp_path, "clone", "-q", str(remote), str(seed))
    git(seed, "commit", "-q", "--allow-empty", "-m", "base")
    git(seed, "push", "-q", "origin", "HEAD:main")
    workspace = tmp_path / "ws"
    try:
        clone_repository(str(remote), workspace, branch, base_env(), base="main")
    except WorkerStartError:
        assert not (workspace / ".git" / "refs" / "heads" / branch).exists()
        return
    assert git(workspace, "branch", "--show-current").strip() == branch
    assert "[branch" not in (workspace / ".git" / "config").read_text() or branch == "main"
