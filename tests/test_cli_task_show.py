"""`orchestrator task show`: an engineering task's result in a readable form."""

from __future__ import annotations

from rich.console import Console

from services.cli.tasks import engineering_table


def _text(result: dict[str, object]) -> str:
    table = engineering_table(result)
    assert table is not None
    console = Console(width=160, record=True)
    console.print(table)
    return console.export_text()


def test_a_landed_task_shows_commit_checks_and_answer() -> None:
    """The commit on main, the task branch, each checks run with each check's outcome and
    the agent's answer are shown."""
    text = _text(
        {
            "status": "success",
            "commit_sha": "a" * 40,
            "branch": "main",
            "task_branch": "task/t-1",
            "merged_sha": "a" * 40,
            "files_changed": ["backend/app/main.py"],
            "pull_request_url": "https://github.example/o/r/pull/3",
            "checks": {
                "rounds": 2,
                "runs": [
                    {"round": 1, "after": "spec", "passed": False, "note": "1 of 1 failed",
                     "checks": [{"command": "make test", "cwd": "backend", "exit_code": 2,
                                 "duration_s": 1.5, "passed": False}]},
                    {"round": 2, "after": "fix", "passed": True, "note": "1 checks passed",
                     "checks": [{"command": "make test", "cwd": "backend", "exit_code": 0,
                                 "duration_s": 1.2, "passed": True}]},
                ],
            },
            "agent_answer": "Fixed the failing test.",
        }
    )  # fmt: skip
    assert "aaaaaaaaaaaa on main" in text
    assert "task/t-1" in text
    assert "https://github.example/o/r/pull/3" in text
    assert "FAILED after spec: 1 of 1 failed" in text
    assert "FAIL $ make test (in backend) → exit 2 in 1.5 s" in text
    assert "passed after fix" in text
    assert "Fixed the failing test." in text


def test_other_results_are_not_engineering_tables() -> None:
    """A deploy's result (no checks, no task branch) gets no engineering table."""
    assert engineering_table({"status": "success", "deployed_url": "http://x"}) is None


def test_a_failed_task_shows_its_error_and_what_its_agent_cost() -> None:
    """A failed task's table gives its error and what its agent runs cost so far; a task
    that ran no agent has no cost row."""
    failed = {
        "status": "failed",
        "error": "send_spec: budget exceeded: task 0.52/0.50",
        "task_branch": "task/t-2",
        "checks": {"rounds": 0, "runs": []},
        "agent_cost_usd": 0.52,
        "agent_runs": 1,
    }
    text = _text(failed)
    assert "budget exceeded: task 0.52/0.50" in text
    assert "$0.5200 in 1 run (`orchestrator task log`)" in text
    assert "agent cost" not in _text({**failed, "agent_runs": 0})
