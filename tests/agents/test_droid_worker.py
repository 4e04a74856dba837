"""Workers running the real Droid CLI: manager → wrapper process → `droid` → the scripted
Anthropic Messages API, as a BYOK model the system configures (`droid_byok`).

The key is in the manager's environment only, named by the model's setting
(`ANTHROPIC_API_KEY`); the settings file the adapter writes holds `${ANTHROPIC_API_KEY}`,
never the value. The user's own `~/.factory/settings.json` is read, kept, and extended.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.agents.fake_models import Failure, ModelScript, Reply, ToolCall, serve_anthropic
from tests.agents.test_droid_cli import GIT_STEPS, execute
from tests.agents.test_worker_real_cli import progress_text, redis_text, wrapper_log
from tests.support.agents import PLANTED_KEY
from tests.support.workers import Client, ManagerRunner
from tests.workers.helpers import git, make_repo_with_remote, processes_with

pytestmark = pytest.mark.slow

USER_MODEL = {
    "model": "users-own-model",
    "displayName": "Mine",
    "baseUrl": "http://127.0.0.1:9/unused",
    "apiKey": "${SOME_OTHER_KEY}",
    "provider": "anthropic",
    "maxOutputTokens": 1024,
}
"""A custom model of the user's own settings: kept, so the system's model comes second."""


def byok(url: str) -> dict[str, Any]:
    """The `droid_byok` setting for the scripted API at `url`."""
    return {"base_url": url, "model": "scripted-model", "display_name": "Scripted"}


def conversations(script: ModelScript, start: int, since: float) -> str:
    """The conversation requests from `start` on, for a failure's message: when each came
    (seconds after `since`), its first user text and what its last message holds."""

    def text_of(message: dict[str, Any]) -> str:
        content = message.get("content")
        if isinstance(content, str):
            return content[:60]
        parts = content if isinstance(content, list) else []
        return " | ".join(
            str(part.get("text") or part.get("type"))[:60]
            for part in parts
            if isinstance(part, dict)
        )

    lines = []
    for body, at in zip(script.requests[start:], script.arrived[start:], strict=True):
        messages = body.get("messages") if body.get("tools") else None
        if not messages:
            continue
        lines.append(
            f"+{at - since:.2f}s {len(messages)} messages, first {text_of(messages[0])!r},"
            f" last {text_of(messages[-1])!r}"
        )
    return "conversation requests since the spender's turns:\n" + "\n".join(lines)


def developer_turns(workspace: Path) -> list[Reply | Failure]:
    """Create hello.py, add, commit, push (each git step in a call of its own), answer."""
    return [
        Reply(
            text="Creating the module.",
            tools=(
                ToolCall(
                    "Create", {"file_path": str(workspace / "hello.py"), "content": "x = 5\n"}
                ),
            ),
        ),
        *(
            Reply(tools=(execute(f"git -C {workspace} {step.replace('main', 'feature')}"),))
            for step in GIT_STEPS
        ),
        Reply(text="Pushed hello.py to feature."),
        Reply(text="A fresh session answers."),
    ]


def user_settings(home: Path) -> Path:
    """The user's own ~/.factory/settings.json (one model of theirs)."""
    (home / ".factory").mkdir()
    path = home / ".factory" / "settings.json"
    path.write_text(json.dumps({"customModels": [USER_MODEL], "logLevel": "info"}))
    return path


async def test_droid_worker_commits_pushes_and_starts_fresh_when_resume_fails(
    manager: ManagerRunner,
    client: Client,
    droid_cli: Path,
    empty_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A task's worker with the real droid on the system's BYOK model, as root: it commits
    and pushes as itself; the next message's resume fails offline (Droid fetches sessions
    from Factory) and the wrapper answers it in a fresh session. The key is nowhere but in
    the CLI's environment; the user's settings file is left as it was."""
    _, remote = make_repo_with_remote(tmp_path)
    own = user_settings(empty_home)
    before = own.read_text()
    script = ModelScript([])
    with serve_anthropic(script) as fake:
        monkeypatch.setenv("HOME", str(empty_home))
        monkeypatch.setenv("ANTHROPIC_API_KEY", PLANTED_KEY)
        await manager.start(droid_command=[str(droid_cli)], droid_byok=byok(fake.url))
        created = await client.create(
            agent="factory-droid",
            context={"repo_url": str(remote), "branch": "feature", "task_id": "t-droid"},
        )
        assert created.success, created.error
        record = await client.record(created.worker_id)
        assert record.adapter == "factory-droid"
        script.turns = developer_turns(Path(record.workspace))
        first = await client.send(created.worker_id, "add hello.py", timeout_s=120)
        assert first.success, first.error
        second = await client.send(created.worker_id, "what did I ask?", timeout_s=120)
    assert first.response == "Pushed hello.py to feature."
    assert second.success, second.error
    assert second.response == "A fresh session answers."
    assert "add hello.py" not in str(script.requests[-1]["messages"])  # a fresh session
    assert "what did I ask?" in str(script.requests[-1]["messages"])
    assert git(remote, "show", "feature:hello.py") == "x = 5"
    assert git(remote, "log", "-1", "--format=%an", "feature") == "Factory Droid agent"
    assert first.run is not None
    assert first.run.agent == "factory-droid"
    assert first.run.input_tokens > 0
    assert any("git -C" in t.target and "commit" in t.target for t in first.run.tools)
    written = Path(record.session_dir) / "droid-home" / ".factory" / "settings.json"
    settings = json.loads(written.read_text())
    assert settings["logLevel"] == "info"
    assert settings["customModels"][0] == USER_MODEL
    assert settings["customModels"][1]["baseUrl"] == fake.url
    assert settings["customModels"][1]["apiKey"] == "${ANTHROPIC_API_KEY}"
    assert own.read_text() == before
    assert script.headers[0]["x-api-key"] == PLANTED_KEY  # the CLI expanded the reference
    log = wrapper_log(manager, record)
    assert "resume_failed_starting_fresh" in log
    progress = await progress_text(client, "t-droid")
    assert "Create: " in progress
    captured = capfd.readouterr()
    for text in (
        await redis_text(client),
        log + captured.out + captured.err,
        written.read_text(),
        str(first),
        str(second),
    ):
        assert PLANTED_KEY not in text


async def test_droid_worker_timeout_kills_the_tree_and_a_cap_stops_it_within_one_request(
    manager: ManagerRunner,
    client: Client,
    droid_cli: Path,
    empty_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under a task cap of $1.20 the BYOK model is reached through the wrapper's metering
    relay. One worker's request times out: the real droid's whole process tree is killed.
    Another's second model response (50 000 input tokens at the table's default $15/Mtok:
    $0.75 each) crosses the cap as it passes the relay: the run is stopped before that
    response's command has run, and the spend recorded is the usage the fake reported."""
    stamp = f"{os.getpid()}-{time.monotonic_ns()}"
    sleeper, late = f"droid-sleeper-{stamp}", tmp_path / "late.txt"
    big = 50_000  # well inside the model's context: no compaction (a request of its own)
    script = ModelScript([Reply(tools=(execute(f"bash -c 'sleep 600; : {sleeper}'"),))])
    spender_turns: list[Reply | Failure] = [
        Reply(tools=(execute("true"),), input_tokens=big),
        Reply(tools=(execute(f"sleep 3; touch {late}"),), input_tokens=big),
        Reply(text="never reached"),
    ]
    with serve_anthropic(script) as fake:
        monkeypatch.setenv("HOME", str(empty_home))
        monkeypatch.setenv("ANTHROPIC_API_KEY", PLANTED_KEY)
        await manager.start(
            droid_command=[str(droid_cli)], droid_byok=byok(fake.url), task_budget_usd=1.2
        )
        slow = (await client.create(agent="factory-droid")).worker_id
        record = await client.record(slow)
        wrapper = psutil.Process(int(record.runtime_ref.split(":", 1)[0]))
        timed_out = await client.send(slow, "sleep", timeout_s=10)
        leftovers = [p for p in wrapper.children(recursive=True) if p.status() != "zombie"]
        # droid answers the SIGTERM by going on until the SIGKILL: the spender gets its own turns
        script.turns, script.served = spender_turns, 0
        start, reset = len(script.requests), time.monotonic()
        spender = (
            await client.create(agent="factory-droid", context={"task_id": "t-cap"})
        ).worker_id
        capped = await client.send(spender, "spend", timeout_s=90)
    assert not timed_out.success
    assert timed_out.error.startswith("agent timeout"), timed_out.error
    assert processes_with(sleeper) == []
    assert leftovers == []
    assert not capped.success
    # the stop came at the second response's message_start: its input priced, its output
    # known as the start's count of 1 token ($1.5016, and $0.0001 per side request)
    assert capped.error.startswith("agent error: budget exceeded: task 1.501"), capped.error
    assert capped.error.endswith("/1.2000 USD; the agent's process tree was stopped")
    assert script.conversation_requests == 2, conversations(script, start, reset)
    await asyncio.sleep(3.5)
    assert not late.exists()
    assert capped.run is not None
    # the two responses, and droid's side requests (a title: no tools, the fake's 1 + 1 tokens)
    side = sum(1 for body in script.requests[start:] if not body.get("tools"))
    tokens = (100_000 + side, 40 + side)
    assert (capped.run.input_tokens, capped.run.output_tokens) == tokens
    assert capped.run.cost_usd == pytest.approx((tokens[0] * 15 + tokens[1] * 75) / 1e6)
    assert PLANTED_KEY not in capped.model_dump_json()
