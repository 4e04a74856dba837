"""infra-service on the bus (real Redis): results reach the callback stream, progress the task."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import redis.asyncio as aioredis

from services.infra_service.main import run_actor, run_infra_service
from shared import registry
from shared.actor import ActorContext
from shared.contracts import (
    AnsibleDeployMessage,
    AnsibleDeployResult,
    ProgressEvent,
    ProvisionerMessage,
    ProvisionerResult,
)
from shared.messaging import Bus
from shared.redis_server import free_port
from shared.settings import ApiSettings, Settings
from tests.support.infra_service import make_settings

RESULTS = registry.get("results:{actor}").format(actor="langgraph")


async def test_results_and_progress_flow_through_the_bus(
    redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    """Both queues are consumed; results land on callback streams; a step never ends its task."""
    bus = Bus(redis_client, actor=registry.Actor.INFRA_SERVICE)
    publisher = Bus(redis_client, actor=registry.Actor.LANGGRAPH)
    service = asyncio.create_task(run_infra_service(make_settings(tmp_path), bus))
    try:
        provision = ProvisionerMessage(server_handle="nowhere", callback_stream=RESULTS)
        deploy = AnsibleDeployMessage(
            request_id="task-42~deploy",
            callback_stream=RESULTS,
            project_id="p1",
            project_name="p1",
            repo_full_name="acme/absent",
            server_ip="127.0.0.1",
            port=18080,
            github_token_ref="env:GITHUB_TOKEN",
            secrets_ref="none",
        )
        await publisher.publish(registry.get("provisioner:queue").name, provision)
        await publisher.publish(registry.get("ansible:deploy:queue").name, deploy)

        provisioned = await publisher.wait_reply(RESULTS, provision.request_id, timeout_s=20)
        deployed = await publisher.wait_reply(RESULTS, deploy.request_id, timeout_s=20)
        events: list[ProgressEvent] = []

        async def collect() -> None:
            async for event in publisher.follow_progress("task-42", block_ms=100):
                events.append(event)

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(collect(), timeout=1.0)
    finally:
        service.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await service

    assert isinstance(provisioned, ProvisionerResult)
    assert provisioned.status == "failed"
    assert "nowhere" in (provisioned.error or "")
    assert isinstance(deployed, AnsibleDeployResult)
    assert deployed.status == "failed"
    assert "acme/absent" in (deployed.error or "")
    assert len(events) >= 2
    assert {event.type for event in events} == {"progress"}
    assert all(event.task_id == "task-42" for event in events)
    assert "acme/absent" in (events[-1].message or "")


async def test_run_actor_serves_with_the_system_settings(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    """The `orchestrator up` entry answers even with the API registry down (settings fallback)."""
    settings = Settings(data_dir=tmp_path, api=ApiSettings(port=free_port()))
    actor = asyncio.create_task(run_actor(ActorContext(settings=settings, redis_url=redis_url)))
    publisher = Bus(redis_client, actor=registry.Actor.SCHEDULER)
    try:
        message = ProvisionerMessage(server_handle="nowhere", callback_stream=RESULTS)
        await publisher.publish(registry.get("provisioner:queue").name, message)
        result = await publisher.wait_reply(RESULTS, message.request_id, timeout_s=20)
    finally:
        actor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await actor

    assert isinstance(result, ProvisionerResult)
    assert result.status == "failed"
    assert "no server with handle 'nowhere'" in (result.error or "")
