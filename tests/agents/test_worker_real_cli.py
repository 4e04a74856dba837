"""Workers running the real agent CLIs: manager → wrapper process → CLI → scripted model.

The agent's key is in the manager's environment only (as after `export ANTHROPIC_API_KEY`
and `make up`), HOME is empty (no git identity, no CLI login), and the process runs as
root. The key must reach the CLI and nothing else: not the answer, a progress event, the
wrapper's log, or the agent's argv.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil
import pytest

from services.worker_manager.registry import WorkerRecord
from tests.agents.fake_models import (
    Failure,
    ModelScript,
    Reply,
    ToolCall,
    serve_anthropic,
    serve_openai,
)
from tests.support.agents import PLANTED_KEY
from tests.support.workers import Client, ManagerRunner
from tests.workers.helpers import git, make_repo_with_remote, processes_with, read_text

pytestmark = pytest.mark.slow


async def progress_text(client: Client, task_id: str) -> str:
    """Every progress event of a task, as one string."""
    entries = await client.redis.xrange(f"task_progress:{task_id}") or []
    return " ".join(str(fields) for _, fields in entries)


async def redis_text(client: Client) -> str:
    """Everything in Redis (streams, hashes, strings, lists, sets) as one string."""
    parts: list[str] = []
    async for raw in client.redis.scan_iter(count=500):
        key = raw.decode() if isinstance(raw, bytes) else str(raw)
        kind = await client.redis.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        if kind == "stream":
            parts.append(str(await client.redis.xrange(key)))
        elif kind == "hash":
            parts.append(str(await client.redis.hgetall(key)))
        elif kind == "string":
            parts.append(str(await client.redis.get(key)))
        elif kind == "list":
            parts.append(str(await client.redis.lrange(key, 0, -1)))
        elif kind in ("set", "zset"):
            parts.append(str(await client.redis.sort(key, alpha=True)))
    return " ".join(parts)


def wrapper_log(manager: ManagerRunner, record: WorkerRecord) -> str:
    """The wrapper's log file of a worker."""
    return read_text(manager.data_dir / record.worker_id / "wrapper.log")


def claude_developer_turns(workspace: Path, where: Path) -> list[Reply | Failure]:
    """Write a file, find `orchestrator`, commit and push the branch, answer."""
    return [
        Reply(
            text="Adding the module.",
            tools=(
                ToolCall(
                    "Write", {"file_path": str(workspace / "hello.py"), "content": "print(3)\n"}
                ),
            ),
        ),
        Reply(tools=(ToolCall("Bash", {"command": f"command -v orchestrator > {where}"}),)),
        Reply(
            tools=(
                ToolCall(
                    "Bash",
                    {
                        "command": "git add hello.py && git commit -q -m 'Add hello' "
                        "&& git push -q origin HEAD:feature"
                    },
                ),
            ),
        ),
        Reply(text="Pushed hello.py to feature."),
        Reply(text="You asked me to add hello.py."),
    ]


async def test_claude_worker_commits_pushes_and_resumes(
    manager: ManagerRunner,
    client: Client,
    claude_cli: Path,
    empty_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A task's worker with the real claude: the agent commits and pushes as itself, the
    next message resumes its session, and the key shows up nowhere outside the CLI: not in
    Redis (queue messages, progress, registry), logs, or the answers."""
    _, remote = make_repo_with_remote(tmp_path)
    where = tmp_path / "orchestrator-path.txt"
    script = ModelScript([])
    with serve_anthropic(script) as fake:
        monkeypatch.setenv("HOME", str(empty_home))
        monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", PLANTED_KEY)
        monkeypatch.setenv("PATH", "/usr/local/bin:/usr/bin:/bin")  # no virtualenv on it
        await manager.start(claude_command=[str(claude_cli)], claude_max_retries=1)
        created = await client.create(
            context={"repo_url": str(remote), "branch": "feature", "task_id": "t-real"}
        )
        assert created.success, created.error
        record = await client.record(created.worker_id)
        assert record.adapter == "claude-code"
        script.turns = claude_developer_turns(Path(record.workspace), where)
        first = await client.send(created.worker_id, "add hello.py", timeout_s=120)
        assert first.success, first.error
        second = await client.send(created.worker_id, "what did I ask?", timeout_s=120)
        assert second.success, second.error
    assert first.response == "Pushed hello.py to feature."
    assert second.response == "You asked me to add hello.py."
    assert first.run is not None  # the run record, relayed by the manager
    assert first.run.answer == "Pushed hello.py to feature."
    assert first.run.agent == "claude-code"
    assert "Claude Code" in (first.run.agent_version or "")
    assert any(t.name == "Bash" and "git add hello.py" in t.target for t in first.run.tools)
    assert first.run.input_tokens > 0
    assert first.run.cost_usd > 0
    assert git(remote, "show", "feature:hello.py") == "print(3)"
    assert git(remote, "log", "-1", "--format=%an <%ae>", "feature") == (
        "Claude Code agent <claude-code@orchestrator.invalid>"
    )
    assert "CLAUDE.md" not in git(remote, "ls-tree", "--name-only", "feature")
    assert read_text(where).strip().endswith("/orchestrator")
    history = str(script.requests[-1]["messages"])
    assert "add hello.py" in history
    assert "Pushed hello.py to feature." in history
    progress = await progress_text(client, "t-real")
    assert "Write: " in progress
    assert "Bash: git add hello.py" in progress
    captured = capfd.readouterr()
    logs = wrapper_log(manager, record) + captured.out + captured.err
    everything_in_redis = await redis_text(client)
    assert "add hello.py" in everything_in_redis  # the scan sees the queue messages
    for text in (everything_in_redis, logs, str(first), str(second)):
        assert PLANTED_KEY not in text
    assert "agent_answered" in logs
    assert script.requests, "the CLI reached the scripted API"


async def test_claude_worker_timeout_and_model_error(
    manager: ManagerRunner,
    client: Client,
    claude_cli: Path,
    empty_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through the worker: a timeout kills the CLI's whole tree and answers `timeout`; an
    overloaded model (HTTP 529) answers a clear error; the worker stays usable."""
    marker = f"worker-sleeper-{os.getpid()}-{time.monotonic_ns()}"
    script = ModelScript(
        [
            Reply(tools=(ToolCall("Bash", {"command": f"bash -c 'sleep 600; : {marker}'"}),)),
            Failure(status=529, message="overloaded now"),
            Failure(status=529, message="overloaded now"),
            Reply(text="Back to work."),
        ]
    )
    with serve_anthropic(script) as fake:
        monkeypatch.setenv("HOME", str(empty_home))
        monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", PLANTED_KEY)
        await manager.start(claude_command=[str(claude_cli)], claude_max_retries=1)
        worker_id = (await client.create()).worker_id
        record = await client.record(worker_id)
        wrapper = psutil.Process(int(record.runtime_ref.split(":", 1)[0]))
        timed_out = await client.send(worker_id, "sleep", timeout_s=8)
        leftovers = [p for p in wrapper.children(recursive=True) if p.status() != "zombie"]
        overloaded = await client.send(worker_id, "/new go", timeout_s=60)
        recovered = await client.send(worker_id, "/new again", timeout_s=60)
    assert not timed_out.success
    assert timed_out.error.startswith("agent timeout")
    assert processes_with(marker) == []
    assert leftovers == []
    assert not overloaded.success
    assert "the model API failed (HTTP 529): API Error: 529 overloaded now" in overloaded.error
    assert recovered.success, recovered.error
    assert recovered.response == "Back to work."


async def test_codex_serves_claude_code_workers_when_mapped(
    manager: ManagerRunner,
    client: Client,
    codex_cli: Path,
    empty_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`agent_cli={"claude-code": "codex"}`: the worker runs the real Codex with the
    OpenAI key of the manager's environment; it commits, pushes and resumes."""
    _, remote = make_repo_with_remote(tmp_path)
    script = ModelScript(
        [
            Reply(
                tools=(
                    ToolCall(
                        "exec_command",
                        {
                            "cmd": "printf 'print(4)\\n' > hello.py && git add hello.py && "
                            "git commit -q -m 'Add hello' && git push -q origin HEAD:feature"
                        },
                    ),
                ),
            ),
            Reply(text="Pushed hello.py to feature."),
            Reply(text="You asked me to add hello.py."),
        ]
    )
    with serve_openai(script) as fake:
        monkeypatch.setenv("HOME", str(empty_home))
        monkeypatch.setenv("OPENAI_BASE_URL", f"{fake.url}/v1")
        monkeypatch.setenv("OPENAI_API_KEY", PLANTED_KEY)
        await manager.start(
            codex_command=[str(codex_cli)],
            codex_model="scripted-model",
            codex_max_retries=0,
            agent_cli={"claude-code": "codex"},
        )
        created = await client.create(
            context={"repo_url": str(remote), "branch": "feature", "task_id": "t-codex"}
        )
        assert created.success, created.error
        record = await client.record(created.worker_id)
        first = await client.send(created.worker_id, "add hello.py", timeout_s=120)
        second = await client.send(created.worker_id, "what did I ask?", timeout_s=120)
    assert record.adapter == "codex"
    assert (Path(record.workspace) / "AGENTS.md").exists()
    assert first.success, first.error
    assert first.response == "Pushed hello.py to feature."
    assert second.success, second.error
    assert second.response == "You asked me to add hello.py."
    assert git(remote, "show", "feature:hello.py") == "print(4)"
    assert git(remote, "log", "-1", "--format=%an", "feature") == "Codex agent"
    assert "add hello.py" in str(script.requests[-1]["input"])
    progress = await progress_text(client, "t-codex")
    assert "shell: " in progress
    for text in (progress, wrapper_log(manager, record), str(first), str(second)):
        assert PLANTED_KEY not in text


async def test_task_budget_stops_the_workers_agent(
    manager: ManagerRunner,
    client: Client,
    claude_cli: Path,
    empty_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ORCHESTRATOR_WORKERS__TASK_BUDGET_USD: the real claude in a task's worker is stopped
    at the cap and the answer says `budget exceeded: task <spent>/<cap> USD`."""
    turn = Reply(tools=(ToolCall("Bash", {"command": "sleep 2"}),), input_tokens=400_000)
    script = ModelScript([turn, turn, turn, Reply(text="never reached")])
    with serve_anthropic(script) as fake:
        monkeypatch.setenv("HOME", str(empty_home))
        monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", PLANTED_KEY)
        await manager.start(
            claude_command=[str(claude_cli)], claude_max_retries=1, task_budget_usd=10.0
        )
        worker_id = (await client.create(context={"task_id": "t-budget"})).worker_id
        answer = await client.send(worker_id, "spend", timeout_s=60)
    # the pinned CLI's default model is claude-opus-5-5: prices.json's `claude-opus` entry,
    # $15 per million input tokens, so two turns of 400 000 tokens cost $12
    assert not answer.success
    assert "budget exceeded: task 12.00" in answer.error
    assert "/10.0000 USD" in answer.error
    assert script.conversation_requests == 2
    assert answer.run is not None  # the spend recorded is the usage the fake reported
    assert answer.run.input_tokens == 800_000
    assert answer.run.cost_usd == pytest.approx(12.0, abs=0.01)
    assert answer.run.status == "error"


async def test_the_users_month_cap_stops_the_workers_agent(
    manager: ManagerRunner,
    client: Client,
    claude_cli: Path,
    empty_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The create command's context carries the user's monthly cap and what the month spent
    before ($10, $4 spent): the first $6 turn of the real claude reaches it; the answer says
    `budget exceeded: user month <spent>/<cap> USD` and records the turn's spend."""
    turn = Reply(tools=(ToolCall("Bash", {"command": "sleep 2"}),), input_tokens=400_000)
    script = ModelScript([turn, turn, Reply(text="never reached")])
    with serve_anthropic(script) as fake:
        monkeypatch.setenv("HOME", str(empty_home))
        monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", PLANTED_KEY)
        await manager.start(claude_command=[str(claude_cli)], claude_max_retries=1)
        context = {"task_id": "t-month", "month_budget_usd": "10.0", "month_spent_usd": "4.0"}
        worker_id = (await client.create(context=context)).worker_id
        answer = await client.send(worker_id, "spend", timeout_s=60)
    assert not answer.success
    assert "budget exceeded: user month 10.00" in answer.error
    assert "/10.0000 USD" in answer.error
    assert script.conversation_requests == 1
    assert answer.run is not None
    assert answer.run.cost_usd == pytest.approx(6.0, abs=0.01)


async def test_the_users_month_cap_stops_codex_within_one_model_request(
    manager: ManagerRunner,
    client: Client,
    codex_cli: Path,
    empty_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Codex in a task's worker, the month's cap $10 with $4 spent before: the first model
    response (400 000 input tokens at the table's default $15/Mtok: $6) reaches the cap as
    it passes the wrapper's metering relay; its tool call never runs, no second request is
    made, and the answer records the spend the fake reported."""
    marker = f"codex-month-sleeper-{os.getpid()}-{time.monotonic_ns()}"
    turn = Reply(
        tools=(ToolCall("exec_command", {"cmd": f"sleep 3; : {marker}"}),),
        input_tokens=400_000,
        output_tokens=0,
    )
    script = ModelScript([turn, turn, Reply(text="never reached")])
    with serve_openai(script) as fake:
        monkeypatch.setenv("HOME", str(empty_home))
        monkeypatch.setenv("OPENAI_BASE_URL", f"{fake.url}/v1")
        monkeypatch.setenv("OPENAI_API_KEY", PLANTED_KEY)
        await manager.start(
            codex_command=[str(codex_cli)],
            codex_model="scripted-model",
            codex_max_retries=0,
            agent_cli={"claude-code": "codex"},
        )
        context = {"task_id": "t-codex-month", "month_budget_usd": "10.0", "month_spent_usd": "4.0"}
        worker_id = (await client.create(context=context)).worker_id
        answer = await client.send(worker_id, "spend", timeout_s=90)
    assert not answer.success
    assert answer.error == (
        "agent error: budget exceeded: user month 10.0000/10.0000 USD; "
        "the agent's process tree was stopped"
    )
    assert script.conversation_requests == 1
    assert processes_with(marker) == []
    assert answer.run is not None
    assert answer.run.input_tokens == 400_000
    assert answer.run.cost_usd == pytest.approx(6.0)
    assert PLANTED_KEY not in answer.model_dump_json()
