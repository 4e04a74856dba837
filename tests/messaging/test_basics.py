"""Publishing, envelope, consuming, results: the everyday path on real Redis."""

from __future__ import annotations

import json

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from shared import registry
from shared.contracts import (
    BaseResult,
    CreateWorkerCommand,
    EngineeringMessage,
    EngineeringResult,
    ProgressEvent,
    WorkerConfig,
)
from shared.messaging import Bus, Envelope, MessageContext, PublishError, current_correlation_id
from shared.redis_server import free_port
from shared.registry import WrongMessageTypeError
from tests.support.messaging import Running, engineering, read_entries
from tests.support.waiting import eventually

ENGINEERING = registry.get("engineering:queue").name
RESULTS = registry.get("results:{actor}").format(actor="langgraph")


async def test_publish_writes_one_enveloped_entry(bus: Bus, redis_client: aioredis.Redis) -> None:
    """An entry carries type, version, correlation id, producer, publish time and the JSON."""
    message = engineering()
    entry_id = await bus.publish(ENGINEERING, message)
    [(read_id, fields)] = await read_entries(redis_client, ENGINEERING)
    assert read_id == entry_id
    assert sorted(fields) == ["meta", "payload"]
    meta = json.loads(fields["meta"])
    assert meta["type"] == "EngineeringMessage"
    assert meta["v"] == "1"
    assert meta["correlation_id"] == message.correlation_id
    assert meta["producer"] == "langgraph"
    assert meta["published_ms"] > 0
    assert Envelope.from_fields(fields).message_id == meta["id"]
    assert EngineeringMessage.model_validate_json(fields["payload"]) == message


async def test_publish_refuses_a_type_the_registry_does_not_allow(bus: Bus) -> None:
    """A ProgressEvent on engineering:queue is refused before anything is written."""
    with pytest.raises(WrongMessageTypeError):
        await bus.publish(ENGINEERING, ProgressEvent(type="started", request_id="r"))


async def test_correlation_id_comes_from_the_context_when_the_message_has_none_set(
    bus: Bus, redis_client: aioredis.Redis
) -> None:
    """Without an explicit id on the message, the caller's context id is used, in both places."""
    token = current_correlation_id.set("corr-from-request")
    try:
        await bus.publish(ENGINEERING, engineering())
    finally:
        current_correlation_id.reset(token)
    [(_, fields)] = await read_entries(redis_client, ENGINEERING)
    assert json.loads(fields["meta"])["correlation_id"] == "corr-from-request"
    assert json.loads(fields["payload"])["correlation_id"] == "corr-from-request"


async def test_publish_many_writes_in_order(bus: Bus, redis_client: aioredis.Redis) -> None:
    """A batch lands as consecutive entries with the returned ids."""
    ids = await bus.publish_many([(ENGINEERING, engineering(f"t-{i}")) for i in range(5)])
    stored = [entry_id for entry_id, _ in await read_entries(redis_client, ENGINEERING)]
    assert stored == ids


async def test_consumer_handles_acks_and_deletes(bus: Bus, redis_client: aioredis.Redis) -> None:
    """A handled message is acknowledged and removed; the handler sees the typed message."""
    seen: list[tuple[str, int]] = []

    async def handle(message: EngineeringMessage, ctx: MessageContext) -> None:
        seen.append((message.task_id, ctx.attempt))

    await bus.publish(ENGINEERING, engineering("t-9"))
    async with Running(bus.consumer(ENGINEERING, handle)):
        await eventually(lambda: len(seen) == 1)
        await eventually(lambda: _length(redis_client, ENGINEERING, 0))
    assert seen == [("t-9", 1)]
    pending = await redis_client.xpending(ENGINEERING, "langgraph")
    assert pending["pending"] == 0


async def _length(client: aioredis.Redis, stream: str, expected: int) -> bool:
    return int(await client.xlen(stream)) == expected


async def test_result_goes_to_callback_stream_with_causation(
    bus: Bus, redis_client: aioredis.Redis
) -> None:
    """A returned BaseResult is published on callback_stream, caused by the handled message."""

    async def handle(message: EngineeringMessage, ctx: MessageContext) -> BaseResult:
        return EngineeringResult(request_id=message.request_id, status="success", branch="main")

    message = engineering(callback_stream=RESULTS)
    await bus.publish(ENGINEERING, message)
    async with Running(bus.consumer(ENGINEERING, handle)):
        await eventually(lambda: _length(redis_client, RESULTS, 1))
    [(_, fields)] = await read_entries(redis_client, RESULTS)
    meta = json.loads(fields["meta"])
    assert meta["type"] == "EngineeringResult"
    assert meta["correlation_id"] == message.correlation_id
    assert meta["causation_id"] != ""
    result = EngineeringResult.model_validate_json(fields["payload"])
    assert result.request_id == message.request_id


async def test_worker_command_union_is_decoded_by_its_discriminator(
    bus: Bus, redis_client: aioredis.Redis
) -> None:
    """worker:commands payloads decode to their command class."""
    seen: list[object] = []

    async def handle(message: object, ctx: MessageContext) -> None:
        seen.append(message)

    command = CreateWorkerCommand(
        request_id="r-1",
        config=WorkerConfig(name="w", agent="claude-code", capabilities=[], env_vars={}),
    )
    stream = registry.get("worker:commands").name
    await bus.publish(stream, command)
    async with Running(bus.consumer(stream, handle, group="worker-manager")):
        await eventually(lambda: len(seen) == 1)
    assert seen == [command]


async def test_publish_to_an_unreachable_server_raises_publish_error() -> None:
    """A connection that cannot be made is retried, then raised as PublishError."""
    client = aioredis.Redis(
        port=free_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    try:
        bus = Bus(client, actor="langgraph", publish_attempts=2)
        with pytest.raises(PublishError, match="after 2 attempts"):
            await bus.publish(ENGINEERING, engineering())
    finally:
        await client.aclose()
