"""A project with the `telegram` module: its deploy runs the scaffolded bot as a supervised
process beside the backend, with BOT_TOKEN from the project's secrets (`project:`), against
the fake Telegram Bot API; without BOT_TOKEN the deploy fails naming it."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from services.infra_service.handlers import handle_ansible_deploy_message, remove_project
from services.infra_service.settings import InfraSettings
from services.scaffolder.render import CopierRenderer, render_project
from services.scaffolder.settings import TEMPLATES_DIR
from shared.contracts import AnsibleDeployMessage, ProvisionerResult
from shared.redis_server import free_port
from tests.support.infra_service import app_files, make_deps, make_repo, no_leftovers
from tests.support.waiting import eventually
from tests.telegram_bot.fake_bot_api import FakeBotApi

pytestmark = pytest.mark.slow

TOKEN = "424242:PLANTED-bot-token-9c1e"
USER = 5150


@pytest.fixture
async def fake_bot_api() -> AsyncIterator[FakeBotApi]:
    """The fake Bot API server, listening."""
    server = FakeBotApi()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def botshop_removed(infra_settings: InfraSettings) -> AsyncIterator[None]:
    """The bot project removed from the session's server at the test's end (its supervisor
    and processes too: the session's other tests check that nothing of theirs is left)."""
    yield
    await remove_project("botshop", "127.0.0.1", make_deps(infra_settings)[0])
    assert await no_leftovers(infra_settings.data_dir) == []


async def scaffolded(
    dest: Path, modules: tuple[str, ...] = ("backend", "telegram")
) -> dict[str, str]:
    """The files of a project scaffolded with `modules` (default: backend and telegram)."""
    renderer = CopierRenderer(timeout_s=120)
    try:
        written = await render_project(
            dest,
            renderer=renderer,
            templates_dir=TEMPLATES_DIR,
            modules=list(modules),
            project_name="Bot Shop",
            repo_full_name="acme/botshop",
        )
    finally:
        renderer.close()
    return {name: (dest / name).read_text() for name in written if (dest / name).is_file()}


def message(
    project_id: str, repo: str = "acme/botshop", modules: tuple[str, ...] = ("backend", "telegram")
) -> AnsibleDeployMessage:
    """The deploy of `project_id` with `modules`, its secrets by the `project:` scheme."""
    return AnsibleDeployMessage(
        project_id=project_id,
        project_name="Bot Shop",
        repo_full_name=repo,
        server_ip="127.0.0.1",
        port=free_port(),
        modules=list(modules),
        github_token_ref="env:GITHUB_TOKEN",
        secrets_ref=f"project:{project_id}",
    )


def bot_pid(settings: InfraSettings, project_id: str) -> int | None:
    """The pid of the project's running bot process, if any."""
    path = settings.local_base_dir / "apps" / project_id / "bot.pid"
    try:
        pid = int(path.read_text())
    except (OSError, ValueError):
        return None
    return pid if psutil.pid_exists(pid) else None


async def test_the_bot_module_runs_supervised_with_its_token_from_the_secrets(
    infra_settings: InfraSettings,
    provisioned: ProvisionerResult,
    fake_bot_api: FakeBotApi,
    tmp_path: Path,
    botshop_removed: None,
) -> None:
    """The deploy starts the scaffolded bot beside the backend; it answers /start through the
    fake Bot API; killed from outside, the supervisor restarts it (counted) and it answers
    again; the token is in no argv, result or progress event."""
    make_repo(infra_settings, "acme/botshop", await scaffolded(tmp_path / "render"))
    secrets = infra_settings.effective_secrets_dir / "botshop.env"
    secrets.parent.mkdir(parents=True, exist_ok=True)
    secrets.write_text(f"BOT_TOKEN={TOKEN}\nBOT_API_URL={fake_bot_api.base_url}\n")
    deps, progress = make_deps(infra_settings)

    result = await handle_ansible_deploy_message(message("botshop"), deps)

    assert result.status == "success", result.error
    app_dir = infra_settings.local_base_dir / "apps" / "botshop"
    service = json.loads((app_dir / "service.json").read_text())
    assert [worker["name"] for worker in service["workers"]] == ["bot"]
    await fake_bot_api.send_text(USER, "/start", first_name="Ada")
    await fake_bot_api.wait_for(lambda: len(fake_bot_api.texts(USER)) == 1, timeout_s=60)
    assert fake_bot_api.texts(USER)[0].startswith("Hello, Ada! This is Bot Shop.")
    first = bot_pid(infra_settings, "botshop")
    assert first is not None
    assert all(TOKEN not in " ".join(p.cmdline()) for p in [psutil.Process(first)])
    assert TOKEN not in result.model_dump_json()
    assert all(TOKEN not in event.model_dump_json() for event in progress.events)

    os.killpg(first, signal.SIGKILL)

    def restarted() -> bool:
        pid = bot_pid(infra_settings, "botshop")
        return pid is not None and pid != first

    await eventually(restarted, timeout_s=30, what="the supervisor restarts the bot")
    restarts = json.loads((app_dir / "restarts.json").read_text())
    assert restarts == {"commit": service["commit"], "restarts": 1}
    await fake_bot_api.send_text(USER, "/help")
    await fake_bot_api.wait_for(lambda: len(fake_bot_api.texts(USER)) == 2, timeout_s=60)
    assert "/start" in fake_bot_api.texts(USER)[1]


async def test_a_bot_module_without_bot_token_fails_naming_it(
    infra_settings: InfraSettings,
) -> None:
    """No BOT_TOKEN among the project's secrets: the deploy fails at once, naming it and how
    to set it; nothing was started."""
    make_repo(infra_settings, "acme/tokenless", app_files("v1"))
    secrets = infra_settings.effective_secrets_dir / "tokenless.env"
    secrets.parent.mkdir(parents=True, exist_ok=True)
    secrets.write_text("GREETING=hello\n")
    deps, progress = make_deps(infra_settings)

    result = await handle_ansible_deploy_message(message("tokenless", "acme/tokenless"), deps)

    assert result.status == "failed"
    assert result.error is not None
    assert "BOT_TOKEN" in result.error
    assert "orchestrator project secret set tokenless BOT_TOKEN" in result.error
    assert not (infra_settings.local_base_dir / "apps" / "tokenless").exists()
    assert progress.events[-1].error == result.error


@pytest.fixture
async def botonly_removed(infra_settings: InfraSettings) -> AsyncIterator[None]:
    """The bot-only projects removed from the session's server at the test's end."""
    yield
    for name in ("botonly", "botcrash"):
        await remove_project(name, "127.0.0.1", make_deps(infra_settings)[0])
    assert await no_leftovers(infra_settings.data_dir) == []


async def test_a_bot_only_project_runs_its_bot_without_a_web_service(
    infra_settings: InfraSettings,
    provisioned: ProvisionerResult,
    fake_bot_api: FakeBotApi,
    tmp_path: Path,
    botonly_removed: None,
) -> None:
    """Modules = telegram alone: the deploy runs the bot with its token from the secrets, no
    web process and no URL; its health is the supervisor's process state. A bot that exits at
    start fails the deploy, naming it, and leaves nothing running."""
    files = await scaffolded(tmp_path / "render", ("telegram",))
    assert not any(name.startswith("backend/") for name in files)
    make_repo(infra_settings, "acme/botonly", files)
    secrets = infra_settings.effective_secrets_dir / "botonly.env"
    secrets.parent.mkdir(parents=True, exist_ok=True)
    secrets.write_text(f"BOT_TOKEN={TOKEN}\nBOT_API_URL={fake_bot_api.base_url}\n")
    deps, progress = make_deps(infra_settings)

    result = await handle_ansible_deploy_message(
        message("botonly", "acme/botonly", ("telegram",)), deps
    )

    assert result.status == "success", result.error
    assert result.deployed_url is None  # nothing serves HTTP
    app_dir = infra_settings.local_base_dir / "apps" / "botonly"
    service = json.loads((app_dir / "service.json").read_text())
    assert "command" not in service
    assert "port" not in service
    assert [worker["name"] for worker in service["workers"]] == ["bot"]
    assert not (app_dir / "app.pid").exists()
    assert "its bot is up" in (progress.events[-1].message or "")
    await fake_bot_api.send_text(USER, "/start", first_name="Ada")
    await fake_bot_api.wait_for(lambda: len(fake_bot_api.texts(USER)) == 1, timeout_s=60)
    assert fake_bot_api.texts(USER)[0].startswith("Hello, Ada! This is Bot Shop.")
    assert TOKEN not in result.model_dump_json()

    make_repo(
        infra_settings,
        "acme/botcrash",
        {"telegram/bot/__init__.py": "", "telegram/bot/main.py": "raise SystemExit('boom')\n"},
    )
    crash_secrets = infra_settings.effective_secrets_dir / "botcrash.env"
    crash_secrets.write_text(f"BOT_TOKEN={TOKEN}\n")
    crashed = await handle_ansible_deploy_message(
        message("botcrash", "acme/botcrash", ("telegram",)), deps
    )
    assert crashed.status == "failed"
    assert crashed.error is not None
    assert "did not keep running: bot exited" in crashed.error, crashed.error
    assert "boom" in crashed.error
    assert bot_pid(infra_settings, "botcrash") is None
