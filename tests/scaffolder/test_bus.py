"""run_scaffolder on a real Redis: results reach the callback stream, progress its stream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from services.scaffolder.main import run_scaffolder
from services.scaffolder.render import CopierRenderer
from services.scaffolder.settings import ScaffolderSettings
from shared import registry
from shared.contracts import BaseResult, ProgressEvent, ProjectStatus
from shared.git import LocalGitProvider
from shared.messaging import Bus, Envelope, decode_message
from tests.support.scaffolder import REPO, FakeProjects, make_message

RESULTS = registry.get("results:{actor}").format(actor="langgraph")


@pytest.fixture
async def langgraph(redis_client: aioredis.Redis) -> Bus:
    """The bus of the actor that asks for scaffolds."""
    return Bus(redis_client, actor=registry.Actor.LANGGRAPH)


@pytest.fixture
async def running(
    redis_client: aioredis.Redis,
    settings: ScaffolderSettings,
    projects: FakeProjects,
    renderer: CopierRenderer,
) -> AsyncIterator[None]:
    """The scaffolder consuming scaffolder:queue until the test ends."""
    bus = Bus(redis_client, actor=registry.Actor.SCAFFOLDER)
    task = asyncio.create_task(
        run_scaffolder(settings, bus, projects, project_reader=projects, renderer=renderer)
    )
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _result(bus: Bus, request_id: str) -> BaseResult:
    reply = await bus.wait_reply(RESULTS, request_id, timeout_s=60)
    assert isinstance(reply, BaseResult)
    return reply


@pytest.mark.usefixtures("running")
async def test_result_and_own_progress_stream(
    langgraph: Bus, settings: ScaffolderSettings, projects: FakeProjects
) -> None:
    """A scaffold request gets a success result on its callback stream and a full progress
    stream of its own (started … completed) when it belongs to no task."""
    message = make_message(request_id="scaffold-1", callback_stream=RESULTS)
    await langgraph.publish(registry.get("scaffolder:queue").name, message)
    result = await _result(langgraph, "scaffold-1")
    assert (result.status, result.error) == ("success", None)
    events = [event async for event in langgraph.follow_progress("scaffold-1")]
    assert events[0].type == "started"
    assert events[-1].type == "completed"
    assert projects.statuses["p1"] == ProjectStatus.SCAFFOLDED
    provider = LocalGitProvider(settings.data_dir / "repos")
    assert await provider.head_of(REPO, "main") is not None


@pytest.mark.usefixtures("running")
async def test_progress_of_a_task_step_never_ends_the_task(langgraph: Bus) -> None:
    """A request `<task>~scaffold` reports into the task's stream with non-terminal events only,
    and without percentages (the task's flow owns its progress)."""
    message = make_message(request_id="task-9~scaffold", callback_stream=RESULTS)
    await langgraph.publish(registry.get("scaffolder:queue").name, message)
    assert (await _result(langgraph, "task-9~scaffold")).status == "success"
    stream = registry.get("task_progress:{task_id}").format(task_id="task-9")
    spec = registry.resolve(stream)
    entries = await langgraph.transport.range(stream, start="-", end="+", count=100)
    events = [
        decode_message(spec, Envelope.from_fields(entry.fields))
        for entry in entries
        if entry.fields is not None
    ]
    assert events
    assert all(isinstance(e, ProgressEvent) and e.type == "progress" for e in events)
    assert all(isinstance(e, ProgressEvent) and e.task_id == "task-9" for e in events)
    assert all(isinstance(e, ProgressEvent) and e.progress_pct is None for e in events)
    last = events[-1]
    assert isinstance(last, ProgressEvent)
    assert last.current_step == "scaffold:completed"


async def test_failed_scaffold_reports_failure_on_the_callback(
    running: None, langgraph: Bus, projects: FakeProjects
) -> None:
    """An unknown module gives a failed result with the reason, and a failed project."""
    message = make_message(request_id="scaffold-2", callback_stream=RESULTS, modules=["nope"])
    await langgraph.publish(registry.get("scaffolder:queue").name, message)
    result = await _result(langgraph, "scaffold-2")
    assert result.status == "failed"
    assert "nope" in (result.error or "")
    events = [event async for event in langgraph.follow_progress("scaffold-2")]
    assert events[-1].type == "failed"
    assert projects.statuses["p1"] == ProjectStatus.FAILED
