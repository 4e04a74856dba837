"""Pure pieces of the chat core: message splitting, the progress view, the PO profile."""

from __future__ import annotations

from datetime import UTC, datetime

import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st

from services.worker_manager import api_keys
from shared.chat.po_profile import (
    API_KEY_ENV_CONTEXT,
    OWNER_CONTEXT,
    PO_API_TOKEN_ENV,
    po_worker_command,
)
from shared.chat.progress_text import TaskView, progress_bar
from shared.chat.sink import TELEGRAM_TEXT_LIMIT, ChatUser, split_text
from shared.contracts import ProgressEvent, TaskDTO, TaskStatus, TaskType


@given(st.text(alphabet=st.sampled_from("ab \n"), min_size=1, max_size=12_000))
def test_split_text_keeps_every_character_within_the_limit(text: str) -> None:
    """Chunks are at most 4096 characters and only line breaks at cuts are dropped."""
    chunks = split_text(text)
    assert all(0 < len(chunk) <= TELEGRAM_TEXT_LIMIT for chunk in chunks)
    assert "".join(chunks).replace("\n", "") == text.replace("\n", "")


def test_split_text_cuts_at_line_ends() -> None:
    """A long answer of lines is cut between lines."""
    text = "\n".join(f"line {i:05d}" for i in range(1000))
    chunks = split_text(text)
    assert len(chunks) == 3
    assert all(chunk.startswith("line ") and chunk[-5:].isdigit() for chunk in chunks)


def test_progress_bar_is_clamped() -> None:
    """0, 60 and out-of-range values render a ten-cell bar."""
    assert [progress_bar(0), progress_bar(60), progress_bar(150)] == [
        "[░░░░░░░░░░] 0%",
        "[██████░░░░] 60%",
        "[██████████] 100%",
    ]


def _task(status: TaskStatus, result: dict[str, object] | None) -> TaskDTO:
    return TaskDTO(
        id="t" * 36,
        project_id="p",
        type=TaskType.DEPLOY,
        status=status,
        result=result,
        created_at=datetime.now(UTC),
    )


def test_an_engineering_result_reads_as_commit_checks_and_answer() -> None:
    """The final text of an engineering task: the commit on main, how the checks went, the
    pull request when there is one, and the agent's answer's first lines."""
    view = TaskView(task_id="t" * 36, task_type="engineering", project="shop")
    result: dict[str, object] = {
        "commit_sha": "c" * 40,
        "branch": "main",
        "checks": {"rounds": 2, "fix_rounds": 1, "passed": True, "runs": []},
        "pull_request_url": "https://github.example/acme/shop/pull/7",
        "agent_answer": "Added /hello.\n\nIt answers JSON.\nTests pass.\nMore.",
    }
    view.finish(_task(TaskStatus.COMPLETED, result), None)
    assert view.text().splitlines()[-4:] == [
        f"commit: {'c' * 40} on main",
        "checks: passed after 1 fix round",
        "pull request: https://github.example/acme/shop/pull/7",
        "agent: Added /hello. / It answers JSON. / Tests pass.",
    ]


def test_an_engineering_result_gives_the_agents_cost() -> None:
    """With recorded runs, the final text ends with their cost and where to read the log;
    without any, no cost line."""
    view = TaskView(task_id="t" * 36, task_type="engineering", project="shop")
    result: dict[str, object] = {
        "commit_sha": "c" * 40,
        "branch": "main",
        "agent_answer": "Done.",
        "agent_cost_usd": 0.123456,
        "agent_runs": 2,
    }
    view.finish(_task(TaskStatus.COMPLETED, result), None)
    assert view.text().splitlines()[-2:] == [
        "agent: Done.",
        "agent cost: $0.1235 (2 runs; `orchestrator task log` shows what it did)",
    ]
    quiet = TaskView(task_id="t" * 36, task_type="engineering", project="shop")
    quiet.finish(_task(TaskStatus.COMPLETED, {**result, "agent_runs": 0}), None)
    assert "agent cost" not in quiet.text()


def test_a_failed_task_still_says_what_its_agent_cost() -> None:
    """A failed task's final text gives the error, then what its agent runs cost; a
    failure before any run has no cost line."""
    view = TaskView(task_id="t" * 36, task_type="engineering", project="shop")
    result: dict[str, object] = {
        "status": "failed",
        "error": "send_spec: budget exceeded: task 0.52/0.50",
        "agent_cost_usd": 0.52,
        "agent_runs": 1,
    }
    view.finish(_task(TaskStatus.FAILED, result), None)
    assert view.text().splitlines()[-2:] == [
        "❌ failed: send_spec: budget exceeded: task 0.52/0.50",
        "agent cost: $0.5200 (1 run; `orchestrator task log` shows what it did)",
    ]
    early = TaskView(task_id="t" * 36, task_type="engineering", project="shop")
    early.finish(_task(TaskStatus.FAILED, {"error": "scaffold: no repository"}), None)
    assert early.text().splitlines()[-1] == "❌ failed: scaffold: no repository"


def test_view_follows_events_and_ends_with_the_result() -> None:
    """Progress never goes back; the final text names the URL, or the error."""
    view = TaskView(task_id="t" * 36, task_type="deploy", project="shop")
    view.apply(ProgressEvent(type="progress", request_id="r", progress_pct=50, current_step="a"))
    view.apply(ProgressEvent(type="progress", request_id="r", progress_pct=20, current_step="b"))
    assert "50%\nstep: b" in view.text()
    view.finish(_task(TaskStatus.COMPLETED, {"deployed_url": "http://x"}), None)
    assert view.text().endswith("✅ completed [██████████] 100%\nURL: http://x")
    pinned = TaskView(task_id="t" * 36, task_type="deploy")
    pinned.finish(
        _task(TaskStatus.COMPLETED, {"deployed_url": "u", "deployed_sha": "ab" * 20}), None
    )
    assert pinned.text().endswith("\nURL: u (commit " + "ab" * 6 + ")")
    failed = TaskView(task_id="t" * 36, task_type="deploy")
    failed.finish(None, ProgressEvent(type="failed", request_id="r", error="boom"))
    assert failed.text().endswith("❌ failed: boom")


def test_po_worker_command_asks_for_the_token_by_reference_only() -> None:
    """The create command names the token's variable and owner; it carries no credential."""
    command = po_worker_command(user_id=7, agent="claude-code", api_url="http://a")
    assert PO_API_TOKEN_ENV not in command.config.env_vars
    assert command.context[API_KEY_ENV_CONTEXT] == PO_API_TOKEN_ENV
    assert command.context[OWNER_CONTEXT] == "7"
    assert "orc_" not in command.model_dump_json()
    assert command.context["profile"] == "po"
    request = api_keys.api_key_request(command.context)
    assert request == api_keys.ApiKeyRequest(env_name=PO_API_TOKEN_ENV, user_id=7)


def test_the_chat_core_and_the_worker_manager_name_the_context_alike() -> None:
    """The context names are declared twice (services never import each other): same text."""
    assert (API_KEY_ENV_CONTEXT, OWNER_CONTEXT) == (
        api_keys.API_KEY_ENV_CONTEXT,
        api_keys.OWNER_CONTEXT,
    )


def test_parse_control_reads_the_command_and_its_words() -> None:
    """Control commands are recognised with or without a bot suffix; others are not."""
    from shared.chat.control import parse_control

    assert parse_control("/cancel ab12") == ("cancel", ["ab12"])
    assert parse_control("  /Rollback@shop_bot shop 1234abcd ") == (
        "rollback",
        ["shop", "1234abcd"],
    )
    assert parse_control("/deploys") == ("deploys", [])
    assert parse_control("/quit") is None
    assert parse_control("cancel") is None
    assert parse_control("") is None


async def test_an_ask_secret_line_for_a_project_not_of_the_user_opens_no_prompt(
    redis_client: aioredis.Redis,
) -> None:
    """The front door checks what the PO asks: an unknown project or a bad name is answered
    with why, the marker line is removed, and nothing waits for a value."""
    from shared.chat.secret_prompt import SecretPrompts

    class NoProjects:
        async def list_projects(self, **_: object) -> object:
            return type("Page", (), {"items": []})()

    prompts = SecretPrompts(NoProjects(), redis_client, "unit")  # type: ignore[arg-type]
    user = ChatUser(7, 70, 700)
    text = await prompts.from_answer(user, "The bot needs it.\n[[ask-secret p1 BOT_TOKEN]]\n")
    assert text == "The bot needs it.\n\nNot asking: you have no project 'p1'."
    bad = await prompts.from_answer(user, "[[ask-secret p1 9-bad]]")
    assert bad.startswith("Not asking: '9-bad' is not a secret name")
    assert await prompts.pending(user) is None
    assert await prompts.intercept(user, "a value") is None  # relayed as usual


def test_health_messages_of_a_release_with_and_without_a_url() -> None:
    """A web release is named by its URL; a bot-only one (no URL) by its bot's process."""
    from shared.api_client.schemas import DeployDTO, DeployHealth, DeployOutcome
    from shared.chat.notifier import _health_text

    base = {
        "id": 1,
        "project_id": "p1",
        "task_id": "t1",
        "sha": "c" * 40,
        "kind": "deploy",
        "outcome": DeployOutcome.SUCCEEDED,
        "created_at": "2026-01-01T00:00:00Z",
    }
    web = DeployDTO.model_validate({**base, "url": "http://a:1/", "health": "down", "restarts": 2})
    assert _health_text("shop", web) == (
        "🔴 shop is down: http://a:1/ does not answer its health check (commit cccccccccccc). "
        "The server restarted it 2 time(s)."
    )
    bot = DeployDTO.model_validate({**base, "health": DeployHealth.DOWN})
    assert (
        _health_text("shop", bot)
        == "🔴 shop is down: its bot is not running (commit cccccccccccc)."
    )
    bot_up = bot.model_copy(update={"health": DeployHealth.UP})
    assert (
        _health_text("shop", bot_up)
        == "🟢 shop is back up: its bot runs again (commit cccccccccccc)."
    )
