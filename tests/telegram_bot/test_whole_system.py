"""The whole system behind the bot: `orchestrator up` (API, worker-manager, scaffolder,
infra-service, langgraph, scheduler, telegram-bot) as a real process, the fake Bot API in
front, and the conversation of the README: create a project, develop, deploy; then the
whole journey of the chat: a bot project given its token, developed, deployed (its bot
answers), watched, a task cancelled, a release rolled back, a repository imported, and one
chat turn's correlation id followed to the deploy's Ansible job."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from services.worker_manager.local_runtime import LocalProcessRuntime
from shared.api_client import ApiClient
from shared.app_layout import app_dir_name
from tests.support.system import UpSystem, reap
from tests.telegram_bot.bot import ADMIN_ID, TOKEN, find, say
from tests.telegram_bot.fake_bot_api import FakeBotApi


@pytest.fixture
async def system_up(tmp_path: Path, bot_api: FakeBotApi) -> AsyncIterator[tuple[str, Path]]:
    """`orchestrator up` with a bot token pointed at the fake Bot API; (API URL, data dir)."""
    settings = {
        "ORCHESTRATOR_WORKERS__ADAPTER": "builtin",
        "ORCHESTRATOR_TELEGRAM__BOT_API_URL": bot_api.base_url,
        "ORCHESTRATOR_TELEGRAM__ADMINS": json.dumps([ADMIN_ID]),
        "ORCHESTRATOR_TELEGRAM__NOTIFY_POLL_S": "0.5",
        "ORCHESTRATOR_TELEGRAM__EDIT_INTERVAL_S": "0.2",
        "ORCHESTRATOR_TELEGRAM__POLLING_TIMEOUT_S": "1",
        "ORCHESTRATOR_LANGGRAPH__TIMEOUTS__HEALTH_CHECK_S": "10",
        "ORCHESTRATOR_API__IMPORT_ROOTS": json.dumps([str(tmp_path / "sources")]),
        "ORCHESTRATOR_LOG_FORMAT": "json",
    }
    system = UpSystem(tmp_path, settings=settings, secrets={"TELEGRAM_BOT_TOKEN": TOKEN})
    try:
        # started in a thread: the fake Bot API answers the bot from this loop meanwhile
        await asyncio.to_thread(system.start)
        yield f"http://127.0.0.1:{system.port}", system.data_dir
    finally:
        await asyncio.to_thread(system.stop)
        runtime = LocalProcessRuntime(system.data_dir / "workers")
        left = await runtime.list_owned("worker-manager")
        for ref in left.values():
            await runtime.stop(ref, grace_s=0)
        await asyncio.to_thread(reap, system.data_dir)
        # up's Redis was private: the worker-manager deletes its workers (the PO worker of
        # the conversation) on the way out instead of leaving them orphaned
        assert not left, f"workers outlived orchestrator up: {sorted(left)}"


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_three_messages_through_the_whole_system(
    system_up: tuple[str, Path], bot_api: FakeBotApi
) -> None:
    """A project is created, developed (commit in the remote) and deployed, all from the chat."""
    api_url, data_dir = system_up
    await bot_api.send_text(ADMIN_ID, "/start")  # waits for the whole system to be up
    await bot_api.wait_for(lambda: find(bot_api, ADMIN_ID, r"Hello") is not None, timeout_s=120)
    await say(bot_api, ADMIN_ID, "create project shop", r"Created project shop")
    await say(bot_api, ADMIN_ID, "develop a /hello endpoint", r"Development of shop started")
    await bot_api.wait_for(
        lambda: find(bot_api, ADMIN_ID, r"✅ completed.*\ncommit: ([0-9a-f]{40})") is not None,
        timeout_s=120,
    )
    commit = find(bot_api, ADMIN_ID, r"commit: ([0-9a-f]{40})")
    assert commit is not None
    key = (data_dir / "secrets" / "cli.key").read_text().strip()
    async with ApiClient(api_url, key=key) as api:
        project = (await api.list_projects()).items[0]
        assert project.repository_url is not None
        for _ in range(120):  # the scheduler provisions this machine as the deploy server
            if (await api.get_server("local")).status.value == "ready":
                break
            await asyncio.sleep(1)
    heads = await asyncio.to_thread(
        subprocess.run,
        ["git", "ls-remote", project.repository_url],
        capture_output=True,
        text=True,
        check=True,
    )
    assert commit[1] in heads.stdout
    await say(bot_api, ADMIN_ID, "deploy", r"Deploy of shop started")
    await bot_api.wait_for(
        lambda: find(bot_api, ADMIN_ID, r"🚀 deploy task .*\n(✅|❌)") is not None, timeout_s=200
    )
    deploys = [m for m in bot_api.messages[ADMIN_ID] if m.text.startswith("🚀 deploy task")]
    assert len(deploys) == 1  # one message, edited in place
    url = find(bot_api, ADMIN_ID, r"URL: (\S+)")
    assert url is not None, re.sub(r"\s+", " ", deploys[0].text)
    async with httpx.AsyncClient() as client:
        response = await client.get(url[1])
    assert response.status_code == 200


PROJECT_BOT_TOKEN = "8080:PLANTED-project-bot-token-71ad"
"""The token of the deployed project's own bot (given in the chat, then deleted from it)."""
BOT_USER = 6060
"""A Telegram user of the deployed project's bot."""


def _log_lines(path: Path) -> list[dict[str, object]]:
    lines = []
    for raw in path.read_text(errors="replace").splitlines():
        if raw.startswith("{"):
            try:
                lines.append(json.loads(raw))
            except ValueError:
                continue
    return lines


async def _final(bot_api: FakeBotApi, nth: int, timeout_s: float) -> str:
    """The text of the `nth` deploy task message (0-based) once it ended (✅ or ❌)."""

    def ended() -> str | None:
        deploys = [t for t in bot_api.texts(ADMIN_ID) if t.startswith("🚀 deploy task")]
        if len(deploys) > nth and re.search(r"\n(✅|❌)", deploys[nth]):
            return deploys[nth]
        return None

    await bot_api.wait_for(lambda: ended() is not None, timeout_s=timeout_s)
    text = ended()
    assert text is not None
    return text


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_the_whole_journey_from_the_chat(
    system_up: tuple[str, Path], bot_api: FakeBotApi, tmp_path: Path
) -> None:
    """From the chat alone: a project with a bot module, its token (the message deleted), a
    development, a deploy whose bot answers /start, /deploys, a cancelled task, a rollback,
    an imported repository; the deploy turn's correlation id is on the Ansible job's log
    lines and on the release's service.json on the server."""
    from tests.test_import_quickstart import _existing_app

    api_url, data_dir = system_up

    async def said(text: str, expect: str, timeout_s: float = 90) -> str:
        """`say` as the admin, with room for a loaded machine (a PO worker starting, ...)."""
        before = len(bot_api.messages.get(ADMIN_ID, []))
        await bot_api.send_text(ADMIN_ID, text)

        def found() -> str | None:
            for message in bot_api.messages.get(ADMIN_ID, [])[before:]:
                if re.search(expect, message.text):
                    return message.text
            return None

        await bot_api.wait_for(lambda: found() is not None, timeout_s=timeout_s)
        answer = found()
        assert answer is not None
        return answer

    project_telegram = FakeBotApi()  # the Telegram of the deployed project's own bot
    await project_telegram.start()
    try:
        await bot_api.send_text(ADMIN_ID, "/start")  # a loaded machine starts the system slowly
        await bot_api.wait_for(lambda: find(bot_api, ADMIN_ID, r"Hello") is not None, timeout_s=120)
        await said(
            "create project shop with a telegram bot",
            r"Send the value of BOT_TOKEN for shop as your next message",
        )
        await said(PROJECT_BOT_TOKEN, r"BOT_TOKEN stored for shop")
        await said("/secret BOT_API_URL", r"Send the value of BOT_API_URL")
        await said(project_telegram.base_url, r"BOT_API_URL stored for shop")
        assert PROJECT_BOT_TOKEN not in "\n".join(bot_api.history(ADMIN_ID))
        await said("/secrets", r"BOT_API_URL, BOT_TOKEN")

        await said("develop a /hello endpoint", r"Development of shop started")
        await bot_api.wait_for(
            lambda: find(bot_api, ADMIN_ID, r"✅ completed.*\ncommit: ([0-9a-f]{40})") is not None,
            timeout_s=150,
        )
        commit = find(bot_api, ADMIN_ID, r"commit: ([0-9a-f]{40})")
        assert commit is not None
        key = (data_dir / "secrets" / "cli.key").read_text().strip()
        async with ApiClient(api_url, key=key) as api:
            for _ in range(120):  # the scheduler provisions this machine as the deploy server
                if (await api.get_server("local")).status.value == "ready":
                    break
                await asyncio.sleep(1)

        await said("deploy", r"Deploy of shop started")
        deploy_turn = next(  # the deploy turn's correlation id: tg-<chat>-<message>
            f"tg-{ADMIN_ID}-{mid}"
            for mid, text in bot_api.from_users[ADMIN_ID].items()
            if text == "deploy"
        )
        deployed = await _final(bot_api, 0, timeout_s=240)
        url = re.search(r"URL: (\S+)", deployed)
        assert url is not None, re.sub(r"\s+", " ", deployed)
        async with httpx.AsyncClient() as client:
            assert (await client.get(url[1])).status_code == 200
        await project_telegram.send_text(BOT_USER, "/start", first_name="Ada")
        await project_telegram.wait_for(
            lambda: len(project_telegram.texts(BOT_USER)) == 1, timeout_s=60
        )
        assert project_telegram.texts(BOT_USER)[0].startswith("Hello, Ada!")

        # one id from the chat message to the deploy's Ansible job and the release it made
        lines = _log_lines(tmp_path / "up.log")
        of_turn = [line for line in lines if line.get("correlation_id") == deploy_turn]
        events = {str(line.get("event")) for line in of_turn}
        assert {"chat_turn_sent", "playbook started", "playbook finished"} <= events, events
        finished = [line for line in of_turn if line.get("event") == "deploy finished"]
        assert finished
        assert finished[0]["release_correlation_id"] == deploy_turn
        async with ApiClient(api_url, key=key) as api:
            project = (await api.list_projects()).items[0]
        name = app_dir_name(project.id)
        service = json.loads(next(data_dir.rglob(f"apps/{name}/service.json")).read_text())
        assert service["correlation_id"] == deploy_turn

        await said("/deploys", r"Deploys of shop \(1 in all")
        await said("develop a /bye endpoint", r"Development of shop started")
        await said("/cancel", r"Cancelled task [0-9a-f]{8} \(engineering")
        await said(f"/rollback shop {commit[1][:10]}", r"Rolling back shop to commit")
        rolled = await _final(bot_api, 1, timeout_s=240)
        assert "URL: " in rolled, re.sub(r"\s+", " ", rolled)
        await said("/deploys", r"Deploys of shop \(2 in all.*\n.*rollback")

        source = await asyncio.to_thread(_existing_app, tmp_path / "sources")
        await said(f"import {source} as legacy", r"as project legacy")
        async with ApiClient(api_url, key=key) as api:
            names = sorted(p.name for p in (await api.list_projects()).items)
        assert names == ["legacy", "shop"]
    finally:
        await project_telegram.stop()
