"""/cancel, /rollback, /deploys and /queue in Telegram: answered at once, through the API."""

from __future__ import annotations

import asyncio
import hashlib
import re
from typing import Any

from shared.api_client.schemas import DeployOutcome, DeployRecord, UserCreate
from shared.contracts import TaskStatus, TaskType
from tests.chat.system import ChatSystem
from tests.telegram_bot.bot import USER_ID, find, say, start_bot
from tests.telegram_bot.fake_bot_api import FakeBotApi


def _sha(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()  # noqa: S324  # a fake commit id


async def _record_deploys(bot_system: ChatSystem, user_id: int) -> list[str]:
    """Record each completed deploy task of the user as a successful release (the fake
    langgraph serves but keeps no history); returns the shas, oldest first."""
    async with bot_system.api() as api:
        tasks = await api.list_tasks(owner_id=user_id, task_type=TaskType.DEPLOY)
        shas = []
        for task in sorted(tasks.items, key=lambda t: t.created_at):
            sha = _sha(task.id)
            record = DeployRecord(sha=sha, outcome=DeployOutcome.SUCCEEDED, url="http://x.test/")
            await api.record_deploy(task.project_id, task.id, record)
            shas.append(sha)
    return shas


async def test_control_commands_act_at_once(
    bot_system: ChatSystem, bot_api: FakeBotApi, background: list[asyncio.Task[Any]]
) -> None:
    """Cancel a running task, list the deploys, roll back: each answer names what happened;
    nothing of it wakes the PO agent beyond the conversation's own messages."""
    async with bot_system.api() as api:
        user = await api.create_user(UserCreate(telegram_id=USER_ID))
    start_bot(bot_system, bot_api, background)
    await say(bot_api, USER_ID, "/cancel", r"no queued or running task: nothing to cancel")
    await say(bot_api, USER_ID, "/deploys", r"You have no project yet")
    await say(bot_api, USER_ID, "create project shop", r"Created project shop")
    bot_system.langgraph.release.clear()  # the engineering task stays running
    await say(bot_api, USER_ID, "develop a /hello endpoint", r"Development of shop started")
    await asyncio.wait_for(bot_system.langgraph.reached_gate.wait(), 20)
    queue = await say(bot_api, USER_ID, "/queue", r"shop:")
    assert re.search(r"running: [0-9a-f]{8} a /hello endpoint", queue)
    answer = await say(bot_api, USER_ID, "/cancel", r"Cancelled task")
    match = re.search(r"Cancelled task ([0-9a-f]{8}) \(engineering, was running\)", answer)
    assert match is not None
    async with bot_system.api() as api:
        cancelled = await api.list_tasks(owner_id=user.id, status=TaskStatus.CANCELLED)
    assert [t.id[:8] for t in cancelled.items] == [match[1]]
    await say(bot_api, USER_ID, f"/cancel {match[1]}", r"already cancelled: nothing to cancel")
    await say(bot_api, USER_ID, "/cancel zz99", r"No task of yours matches 'zz99'")
    await say(bot_api, USER_ID, "/deploys", r"shop has not been deployed yet")
    await say(bot_api, USER_ID, "/rollback", r"Nothing done: .*no successful deploy")
    for _ in range(2):
        await say(bot_api, USER_ID, "deploy", r"Deploy of shop started")
    async with bot_system.api() as api:

        async def deployed() -> int:
            page = await api.list_tasks(
                owner_id=user.id, task_type=TaskType.DEPLOY, status=TaskStatus.COMPLETED
            )
            return page.total

        for _ in range(200):
            if await deployed() == 2:
                break
            await asyncio.sleep(0.1)
    first, second = await _record_deploys(bot_system, user.id)
    listed = await say(bot_api, USER_ID, "/deploys", r"Deploys of shop \(2 in all")
    assert listed.index(second[:8]) < listed.index(first[:8])  # newest first
    await say(bot_api, USER_ID, "/rollback 12345g", r"Nothing done: .*sha")
    await say(bot_api, USER_ID, "/rollback abcd1234", r"Nothing done: .*never deployed")
    rolled = await say(bot_api, USER_ID, "/rollback", r"Rolling back shop")
    assert "to the previous release: deploy task" in rolled
    rolled = await say(bot_api, USER_ID, f"/rollback shop {second[:10]}", r"Rolling back shop")
    assert f"commit {second[:10]}" in rolled
    async with bot_system.api() as api:
        deploy_tasks = await api.list_tasks(owner_id=user.id, task_type=TaskType.DEPLOY)
    specs = sorted(t.spec or "" for t in deploy_tasks.items)
    assert f"commit {first}" in specs
    assert f"commit {second}" in specs
    assert find(bot_api, USER_ID, r"/cancel \[task\]") is None  # no help text was needed
    assert len(bot_system.manager.commands) == 1  # the control commands never started a worker
    bot_system.langgraph.release.set()
