"""`orchestrator chat` through its core (`run_chat`): the whole conversation, locally."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

from tests.api.test_project_import import make_source
from tests.chat.leaks import redis_places, stored_value
from tests.chat.system import ChatSystem
from tests.support.chat import found, start_chat
from tests.support.waiting import eventually


async def test_local_chat_takes_a_project_from_nothing_to_a_running_url(
    po_system: ChatSystem, background: list[asyncio.Task[Any]]
) -> None:
    """Three messages: a project is created, developed (commit shown), deployed (URL answers)."""
    local = start_chat(po_system, telegram_id=4242)
    out, script, chat = local.out, local.script, local.task
    background.append(chat)
    await script.queue.put("create project shop")
    await eventually(lambda: found(out, r"Created project shop") is not None)
    assert found(out, r"built-in") is not None
    await script.queue.put("develop a /hello endpoint that greets")
    await eventually(lambda: found(out, r"commit: [0-9a-f]{40}") is not None)
    assert found(out, r"\[[█░]{10}\] \d{1,2}%\nstep: \w+") is not None  # a progress edit
    await script.queue.put("deploy")
    await eventually(lambda: found(out, r"URL: (\S+)") is not None)
    url_match = found(out, r"URL: (\S+)")
    assert url_match is not None
    async with httpx.AsyncClient() as client:
        response = await client.get(url_match[1])
    assert (response.status_code, response.text[:10]) == (200, "hello from")
    await script.queue.put("/quit")
    assert await asyncio.wait_for(chat, 20) == 0
    assert len(po_system.manager.commands) == 1


async def test_local_chat_waits_for_running_tasks_at_end_of_input(
    po_system: ChatSystem, background: list[asyncio.Task[Any]]
) -> None:
    """Input ending while a task runs: the chat prints the task's final result, then exits."""
    po_system.langgraph.release.clear()
    local = start_chat(po_system, telegram_id=4243)
    out, script, chat = local.out, local.script, local.task
    background.append(chat)
    for line in ("create project tiny", "develop a page", None):
        await script.queue.put(line)
    await asyncio.wait_for(po_system.langgraph.reached_gate.wait(), 20)
    assert not chat.done()
    po_system.langgraph.release.set()
    assert await asyncio.wait_for(chat, 20) == 0
    assert found(out, r"✅ completed") is not None


async def test_local_chat_control_commands_and_the_po_grammar(
    po_system: ChatSystem, background: list[asyncio.Task[Any]]
) -> None:
    """`/cancel`, `/deploys`, `/queue` are answered by the chat itself; the built-in PO
    understands `queue`, `cancel`, `deploys`, `rollback` for the current project."""
    local = start_chat(po_system, telegram_id=4244)
    script, chat = local.script, local.task
    background.append(chat)
    said = local.said

    await said("/cancel", r"nothing to cancel")
    await said("create project kiosk", r"Created project kiosk")
    po_system.langgraph.release.clear()
    await said("develop a /menu endpoint", r"Development of kiosk started")
    await asyncio.wait_for(po_system.langgraph.reached_gate.wait(), 20)
    assert "running:" in await said("queue", r"kiosk:\nrunning: [0-9a-f]{8} a /menu endpoint")
    queued = await said("develop a /drinks endpoint", r"runs after the earlier ones")
    assert re.search(r"running: [0-9a-f]{8} a /menu endpoint\n1 task queued:\n1\. ", queued)
    listing = await said("/queue kiosk", r"running: ([0-9a-f]{8}) a /menu endpoint")
    first = re.search(r"running: ([0-9a-f]{8})", listing)
    assert first is not None
    assert "1 task queued" in listing
    await said("deploys", r"kiosk has not been deployed yet")
    await said("rollback", r"I could not do that: .*no successful deploy")
    await said("cancel", r"You have 2 active tasks; name one")
    await said(f"/cancel {first[1]}", r"Cancelled task [0-9a-f]{8} \(engineering, was running\)")
    await said("/queue", r"kiosk:\n(running|1 task queued).*a /drinks endpoint")
    await said("/cancel", r"Cancelled task [0-9a-f]{8} \(engineering, was (running|queued)\)")
    await said("/cancel", r"nothing to cancel")
    await said("/deploys", r"kiosk has not been deployed yet")
    po_system.langgraph.release.set()
    await script.queue.put("/quit")
    assert await asyncio.wait_for(chat, 30) == 0
    assert len(po_system.manager.commands) == 1


async def test_local_chat_takes_a_secret_from_the_next_line(
    po_system: ChatSystem, background: list[asyncio.Task[Any]], redis_client: aioredis.Redis
) -> None:
    """The PO asks for BOT_TOKEN; the next line is stored (not relayed, not printed);
    bad input opens no prompt and the following line reaches the PO."""
    local = start_chat(po_system, telegram_id=4245)
    out, script, chat = local.out, local.script, local.task
    background.append(chat)
    said = local.said

    planted = "7700999:planted-cli-token-e93b"
    await said("create project bot1 with a telegram bot", r"Send the value of BOT_TOKEN for bot1")
    await said(planted, r"BOT_TOKEN stored for bot1")
    await said("/secrets", r"Secrets of bot1 \(names only\): BOT_TOKEN")
    await said("/secret ghost KEY", r"you have no project 'ghost'")
    await said("status", r"Project bot1")  # not taken as a value
    await said("secret API_KEY", r"Send the value of API_KEY for bot1")  # the PO grammar
    await said("/cancel", r"Cancelled: API_KEY of bot1 was not set")
    await said("status", r"Project bot1")
    await script.queue.put("/quit")
    assert await asyncio.wait_for(chat, 20) == 0
    async with po_system.api() as api:
        project = (await api.list_projects(owner_id=None)).items[0]
    assert project.name == "bot1"
    assert await stored_value(
        po_system.settings, po_system.service_key, project.id, "BOT_TOKEN"
    ) == (planted)
    assert all(planted not in text for text in out)
    assert all(planted not in p for w in po_system.manager.workers.values() for p in w.prompts)
    assert await redis_places(redis_client, planted) == []


async def test_local_chat_reads_a_secret_without_echo_on_a_terminal(
    po_system: ChatSystem, background: list[asyncio.Task[Any]]
) -> None:
    """On a terminal the open prompt's value is read by the hidden reader, not from input."""
    asked: list[str] = []

    async def hidden(prompt: str) -> str | None:
        asked.append(prompt)
        return "planted-hidden-5d2a"

    local = start_chat(po_system, telegram_id=4246, read_hidden=hidden)
    out, script, chat = local.out, local.script, local.task
    background.append(chat)
    await script.queue.put("create project bot2 with a telegram bot")
    await eventually(lambda: found(out, r"BOT_TOKEN stored for bot2") is not None)
    assert asked == ["BOT_TOKEN (hidden; empty line cancels): "]
    assert all("planted-hidden-5d2a" not in text for text in out)
    await script.queue.put(None)
    assert await asyncio.wait_for(chat, 20) == 0


async def test_local_chat_imports_an_existing_repository(
    po_system: ChatSystem, background: list[asyncio.Task[Any]], tmp_path: Path
) -> None:
    """ "import <path> as <name>" makes a scaffolded project of it; a bad URL is refused with
    the reason; "import <url>" alone names the project after the repository."""
    source = make_source(tmp_path / "sources" / "legacy")
    local = start_chat(po_system, telegram_id=4247)
    out, script, chat = local.out, local.script, local.task
    background.append(chat)
    for line in (f"import {source} as old shop", "status", "import ext::sh", f"import {source}"):
        await script.queue.put(line)
    await eventually(lambda: found(out, r"Imported \S+ as project shop\b") is not None)
    assert found(out, r"Imported \S+ as project old shop \(id") is not None
    assert found(out, r"Project old shop: scaffolded") is not None
    assert found(out, r"I could not do that: repo_url: remote-helper") is not None
    await script.queue.put(None)
    assert await asyncio.wait_for(chat, 20) == 0
