"""Agent adapters against fake CLIs that speak the documented stream formats."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from services.worker_wrapper.agents import (
    AgentActivity,
    AgentRequest,
    BuiltinAgent,
    ClaudeCodeAgent,
    CommandAgent,
    FactoryDroidAgent,
)
from services.worker_wrapper.agents.pricing import PriceTable
from tests.workers.helpers import (
    CHILD_MARKER,
    FAKE_CLAUDE,
    FAKE_DROID,
    base_env,
    git,
    make_repo_with_remote,
    processes_with,
)


def request(tmp_path: Path, prompt: str, **kwargs: object) -> AgentRequest:
    """A request in `tmp_path` with a short timeout."""
    values: dict[str, object] = {
        "request_id": "r1",
        "prompt": prompt,
        "workspace": tmp_path,
        "timeout_s": 10.0,
        "env": {**base_env(), "FAKE_CLI_LOG": str(tmp_path / "cli.log")},
    }
    values.update(kwargs)
    return AgentRequest(**values)  # type: ignore[arg-type]  # test helper, fields checked above


class Recorder:
    """An activity sink that keeps everything."""

    def __init__(self) -> None:
        self.activity: list[AgentActivity] = []

    async def __call__(self, activity: AgentActivity) -> None:
        self.activity.append(activity)


def invocations(tmp_path: Path) -> list[dict[str, object]]:
    """The fake CLI's log of its runs."""
    lines = (tmp_path / "cli.log").read_text().splitlines()
    return [json.loads(line) for line in lines]


async def test_claude_success_parses_answer_session_usage_and_cost(tmp_path: Path) -> None:
    """A stream-json run yields the result text, session id, usage, cost and activity."""
    sink = Recorder()
    result = await ClaudeCodeAgent(FAKE_CLAUDE).run(request(tmp_path, "build it"), sink)
    assert result.status == "success"
    assert result.response is not None
    assert result.response.startswith("answer to: build it")
    assert result.session_id is not None
    # the CLI's own cost figure is kept; the cost caps count is the price table's
    assert result.usage == {"input_tokens": 11, "output_tokens": 7, "reported_cost_usd": 0.0123}
    expected = PriceTable.load().cost(result.model, {"input_tokens": 11, "output_tokens": 7})
    assert result.cost_usd == pytest.approx(expected)
    assert expected > 0
    kinds = [(a.kind, a.message) for a in sink.activity]
    assert ("tool", "Edit: src/app.py") in kinds
    assert ("file", "src/app.py") in kinds


async def test_claude_resume_passes_session_and_keeps_prompt_out_of_argv(tmp_path: Path) -> None:
    """--resume carries the session; the permission flag is set; the prompt is not in argv."""
    agent = ClaudeCodeAgent(FAKE_CLAUDE, permission_mode="acceptEdits")
    result = await agent.run(request(tmp_path, "secret-ish prompt", session_id="s-42"), Recorder())
    assert result.session_id == "s-42"
    assert result.response is not None
    assert "resumed=True" in result.response
    argv = invocations(tmp_path)[0]["argv"]
    assert isinstance(argv, list)
    assert argv[argv.index("--resume") + 1] == "s-42"
    assert argv[argv.index("--permission-mode") + 1] == "acceptEdits"
    assert "--verbose" in argv
    assert not any("secret-ish" in part for part in argv)


async def test_claude_error_result_is_an_error(tmp_path: Path) -> None:
    """A result event with is_error answers status error with the reported subtype."""
    result = await ClaudeCodeAgent(FAKE_CLAUDE).run(request(tmp_path, "[error]"), Recorder())
    assert result.status == "error"
    assert result.error is not None
    assert "error_during_execution" in result.error


async def test_claude_crash_reports_exit_code_and_stderr_tail(tmp_path: Path) -> None:
    """A non-zero exit without a result answers error with exit code and stderr tail."""
    result = await ClaudeCodeAgent(FAKE_CLAUDE).run(request(tmp_path, "[crash]"), Recorder())
    assert result.status == "error"
    assert result.error is not None
    assert "exit code 3" in result.error
    assert "crashed on purpose" in result.error


async def test_claude_malformed_lines_are_skipped(tmp_path: Path) -> None:
    """Lines that are not JSON objects do not break the parse of the valid ones."""
    result = await ClaudeCodeAgent(FAKE_CLAUDE).run(request(tmp_path, "[malformed]"), Recorder())
    assert result.status == "success"


async def test_claude_exit_without_result_is_an_error(tmp_path: Path) -> None:
    """Exit code 0 with no result event is an error, never an empty success."""
    result = await ClaudeCodeAgent(FAKE_CLAUDE).run(request(tmp_path, "[noresult]"), Recorder())
    assert result.status == "error"
    assert result.error is not None
    assert "without a result" in result.error


@pytest.mark.slow
@pytest.mark.parametrize("marker", ["[hang]", "[escape]"])
async def test_timeout_kills_the_whole_tree_and_keeps_partial_output(
    tmp_path: Path, marker: str
) -> None:
    """A hang answers timeout with the partial output; no process of the agent survives."""
    req = request(tmp_path, marker, timeout_s=1.5)
    result = await ClaudeCodeAgent(FAKE_CLAUDE, kill_grace_s=0.5).run(req, Recorder())
    assert result.status == "timeout"
    assert result.response == "partial work"
    assert processes_with(CHILD_MARKER) == []
    assert processes_with(str(FAKE_CLAUDE[1])) == []


async def test_missing_binary_is_an_error(tmp_path: Path) -> None:
    """A CLI that cannot be started answers error naming the program."""
    agent = ClaudeCodeAgent(["/nonexistent/claude"])
    result = await agent.run(request(tmp_path, "hi"), Recorder())
    assert result.status == "error"
    assert result.error is not None
    assert "/nonexistent/claude" in result.error


async def test_droid_success_with_session_and_autonomy(tmp_path: Path) -> None:
    """droid exec: --auto level, --session-id, prompt from a file; finalText is the answer."""
    agent = FactoryDroidAgent(FAKE_DROID, autonomy="medium")
    sink = Recorder()
    result = await agent.run(request(tmp_path, "hello droid", session_id="d-1"), sink)
    assert result.status == "success"
    assert result.session_id == "d-1"
    assert result.response is not None
    assert "hello droid" in result.response
    assert result.usage == {"input_tokens": 3, "output_tokens": 4}
    argv = invocations(tmp_path)[0]["argv"]
    assert isinstance(argv, list)
    assert argv[argv.index("--auto") + 1] == "medium"
    assert not any("hello droid" in part for part in argv)
    assert ("file", "README.md") in [(a.kind, a.message) for a in sink.activity]


@pytest.mark.parametrize(
    ("marker", "expected"),
    [("[error]", "insufficient permission"), ("[crash]", "crashed on purpose")],
)
async def test_droid_failures_are_errors(tmp_path: Path, marker: str, expected: str) -> None:
    """An error event or a crash answers error with the reason."""
    result = await FactoryDroidAgent(FAKE_DROID).run(request(tmp_path, marker), Recorder())
    assert result.status == "error"
    assert result.error is not None
    assert expected in result.error


async def test_command_template_fills_placeholders(tmp_path: Path) -> None:
    """The generic adapter runs any CLI; stdout is the answer; placeholders are filled."""
    code = "import sys; print(open(sys.argv[1]).read().upper()); print(sys.argv[2])"
    agent = CommandAgent([sys.executable, "-c", code, "{prompt_file}", "{workspace}"])
    result = await agent.run(request(tmp_path, "shout"), Recorder())
    assert result.status == "success"
    assert result.response == f"SHOUT\n{tmp_path}"


async def test_command_nonzero_exit_is_error(tmp_path: Path) -> None:
    """A template command that fails answers error with its stderr."""
    code = "import sys; sys.stderr.write('nope'); sys.exit(5)"
    result = await CommandAgent([sys.executable, "-c", code]).run(
        request(tmp_path, "x"), Recorder()
    )
    assert result.status == "error"
    assert result.error is not None
    assert "exit code 5" in result.error
    assert "nope" in result.error


async def test_command_can_parse_claude_stream(tmp_path: Path) -> None:
    """With output_format claude-stream-json the generic adapter parses like claude's."""
    agent = CommandAgent(
        [*FAKE_CLAUDE, "-p", "--output-format", "stream-json"], output_format="claude-stream-json"
    )
    result = await agent.run(request(tmp_path, "via template"), Recorder())
    assert result.status == "success"
    assert result.response is not None
    assert "via template" in result.response


async def test_builtin_commits_and_pushes_the_prompt(tmp_path: Path) -> None:
    """In a git workspace the built-in agent commits the prompt, pushes, answers the sha."""
    clone, remote = make_repo_with_remote(tmp_path)
    req = request(clone, "add a health endpoint", request_id="req-7")
    result = await BuiltinAgent().run(req, Recorder())
    assert result.status == "success", result.error
    sha = git(clone, "rev-parse", "HEAD")
    assert result.response is not None
    assert f"commit: {sha}" in result.response
    assert "built-in deterministic agent" in result.response
    assert git(remote, "rev-parse", "main") == sha
    recorded = git(remote, "show", "main:.builtin-agent/req-7.md")
    assert recorded == "add a health endpoint"


async def test_builtin_outside_git_records_the_prompt(tmp_path: Path) -> None:
    """Outside a repository the built-in agent records the prompt and says so."""
    result = await BuiltinAgent().run(request(tmp_path, "hello"), Recorder())
    assert result.status == "success"
    assert (tmp_path / ".builtin-agent" / "r1.md").read_text() == "hello\n"
