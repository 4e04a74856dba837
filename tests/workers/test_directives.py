"""The reserved `@orchestrator` directives of developer workers: checks and merge, on real
git remotes and the real backend template's tests."""

from __future__ import annotations

import json
from pathlib import Path

from services.worker_wrapper.directives import (
    Directive,
    merge_base,
    parse_directive,
    run_checks,
    run_directive,
)
from shared.git import LocalGitProvider
from tests.backend_template import backend_remote
from tests.workers.helpers import git

MINIMAL_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
"""An agent's environment whose PATH has no Python with the template's test dependencies."""


async def _workspace(tmp_path: Path, name: str = "ws") -> tuple[Path, str]:
    provider = LocalGitProvider(tmp_path / "repos")
    url = await backend_remote(provider, "projects/shop")
    work = tmp_path / name
    git(tmp_path, "clone", "-q", url, str(work))
    git(work, "checkout", "-q", "-b", f"task/{name}")
    return work, url


def test_directives_are_recognised_only_on_the_first_line() -> None:
    """`@orchestrator VERB ARG` on the first line is a directive; anything else is a prompt."""
    assert parse_directive("@orchestrator checks") == Directive("checks", "")
    assert parse_directive("  @orchestrator merge main\nmore") == Directive("merge", "main")
    assert parse_directive("please run @orchestrator checks") is None
    assert parse_directive("@orchestratorchecks") is None


async def test_the_templates_checks_pass_with_the_workers_python(tmp_path: Path) -> None:
    """Default checks run `make test` in each module with the workers' Python (fastapi,
    httpx, pytest), even when PATH offers no such Python; each check is recorded."""
    work, _ = await _workspace(tmp_path)
    report = await run_checks(work, MINIMAL_ENV, 120)
    assert report["passed"] is True, report
    assert report["source"] == "default"
    assert report["head"] == git(work, "rev-parse", "HEAD").strip()
    assert report["clean"] is True
    [check] = report["checks"]
    assert (check["name"], check["command"], check["cwd"]) == (
        "backend: make test",
        "make test",
        "backend",
    )
    assert check["exit_code"] == 0
    assert check["duration_s"] > 0
    assert "4 passed" in check["output_tail"]


async def test_a_broken_test_fails_the_checks_with_its_output(tmp_path: Path) -> None:
    """A failing test: the report fails, with the exit code and pytest's output tail."""
    work, _ = await _workspace(tmp_path)
    test_file = work / "backend" / "tests" / "test_broken.py"
    test_file.write_text("def test_broken() -> None:\n    assert 1 == 2, 'numbers differ'\n")
    report = await run_checks(work, MINIMAL_ENV, 120)
    assert report["passed"] is False
    assert report["clean"] is False  # the new test file is not committed
    assert report["note"] == "1 of 1 failed"
    [check] = report["checks"]
    assert check["exit_code"] not in (0, None)
    assert "numbers differ" in check["output_tail"]


async def test_declared_checks_replace_the_defaults(tmp_path: Path) -> None:
    """`.orchestrator/checks.toml` names the commands; they run in their cwd, in order."""
    work, _ = await _workspace(tmp_path)
    (work / ".orchestrator").mkdir()
    (work / ".orchestrator" / "checks.toml").write_text(
        '[[checks]]\nname = "where"\ncommand = "pwd"\ncwd = "backend"\n\n'
        '[[checks]]\ncommand = "echo oops; exit 3"\n'
    )
    report = await run_checks(work, MINIMAL_ENV, 60)
    assert report["source"] == ".orchestrator/checks.toml"
    first, second = report["checks"]
    assert first["passed"]
    assert first["output_tail"].endswith("/backend")
    assert (second["name"], second["exit_code"], second["output_tail"]) == (
        "echo oops; exit 3",
        3,
        "oops",
    )
    assert report["passed"] is False


async def test_a_bad_checks_file_fails_naming_the_problem(tmp_path: Path) -> None:
    """A checks file with an unknown key or a path outside the repository fails the checks."""
    work = tmp_path / "w"
    (work / ".orchestrator").mkdir(parents=True)
    checks = work / ".orchestrator" / "checks.toml"
    checks.write_text('[[checks]]\ncommand = "true"\nshell = "bash"\n')
    report = await run_checks(work, MINIMAL_ENV, 10)
    assert report["passed"] is False
    assert "check 1 has unknown keys: shell" in report["note"]
    checks.write_text('[[checks]]\ncommand = "true"\ncwd = "../elsewhere"\n')
    assert "must stay inside the repository" in (await run_checks(work, MINIMAL_ENV, 10))["note"]


async def test_no_checks_declared_passes_and_says_so(tmp_path: Path) -> None:
    """A repository without checks file or Makefile test target: passed, 'no checks declared'."""
    (tmp_path / "README.md").write_text("imported\n")
    report = await run_checks(tmp_path, MINIMAL_ENV, 10)
    assert report == {
        "passed": True, "source": "none", "note": "no checks declared", "checks": [],
        "head": None, "clean": None,
    }  # fmt: skip


async def test_a_check_past_its_timeout_is_killed_and_fails(tmp_path: Path) -> None:
    """A check that outlives its timeout is killed and recorded as timed out."""
    (tmp_path / ".orchestrator").mkdir()
    (tmp_path / ".orchestrator" / "checks.toml").write_text(
        '[[checks]]\ncommand = "sleep 30"\ntimeout_s = 1\n'
    )
    report = await run_checks(tmp_path, MINIMAL_ENV, 60)
    [check] = report["checks"]
    assert check["timed_out"] is True
    assert check["passed"] is False
    assert check["duration_s"] < 10


def _commit(work: Path, path: str, text: str, message: str) -> None:
    (work / path).write_text(text)
    git(work, "add", "--all")
    git(work, "commit", "-q", "-m", message)


async def test_merge_brings_the_base_in_and_pushes(tmp_path: Path) -> None:
    """The base moved with another file: merged, pushed; already merged: up to date."""
    work, url = await _workspace(tmp_path, "a")
    other, _ = await _workspace(tmp_path, "b")
    _commit(other, "OTHER.md", "other\n", "other work")
    git(other, "push", "-q", "origin", "HEAD:main")
    _commit(work, "MINE.md", "mine\n", "my work")
    outcome = await merge_base(work, "main", MINIMAL_ENV)
    assert outcome.status == "merged", outcome
    remote_head = git(tmp_path, "ls-remote", url, "refs/heads/task/a").split()[0]
    assert remote_head == outcome.sha
    assert (work / "OTHER.md").exists()
    again = await merge_base(work, "main", MINIMAL_ENV)
    assert (again.status, again.sha) == ("up_to_date", outcome.sha)


async def test_a_conflict_is_left_for_the_agent_then_finished(tmp_path: Path) -> None:
    """Both sides changed the same line: conflict naming the file, merge left in progress;
    once the agent resolved the file, the next merge commits and pushes it."""
    work, url = await _workspace(tmp_path, "a")
    other, _ = await _workspace(tmp_path, "b")
    _commit(other, "README.md", "theirs\n", "their readme")
    git(other, "push", "-q", "origin", "HEAD:main")
    _commit(work, "README.md", "mine\n", "my readme")
    result = await run_directive(Directive("merge", "main"), work, MINIMAL_ENV, 60)
    assert json.loads(result.response or "") == {
        "status": "conflict", "sha": None, "files": ["README.md"], "error": None,
    }  # fmt: skip
    assert (await merge_base(work, "main", MINIMAL_ENV)).status == "conflict"  # not resolved
    (work / "README.md").write_text("mine\ntheirs\n")
    git(work, "add", "README.md")
    done = await merge_base(work, "main", MINIMAL_ENV)
    assert done.status == "merged", done
    assert git(tmp_path, "ls-remote", url, "refs/heads/task/a").split()[0] == done.sha
    assert git(work, "merge-base", "--is-ancestor", "origin/main", "HEAD") == ""


async def test_an_unknown_directive_is_an_error() -> None:
    """A directive the wrapper does not know is answered with an error naming the known ones."""
    result = await run_directive(Directive("deploy", "now"), Path("/nonexistent"), {}, 5)
    assert result.status == "error"
    assert "known: 'checks', 'merge BASE'" in (result.error or "")
