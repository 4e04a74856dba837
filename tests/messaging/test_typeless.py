"""Entries whose `meta` names no type (written by hand, or by another client) decode on every
queue: by the contracts' union where the queue has one, else by the payload's shape."""

from __future__ import annotations

import json

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from shared import registry
from shared.contracts import DeleteWorkerCommand, DeleteWorkerResponse
from shared.messaging import Bus, DecodeError, Envelope, MessageContext, Metrics, decode_message
from shared.registry import Actor
from tests.contracts.strategies import models
from tests.support.messaging import Running
from tests.support.waiting import eventually

CASES = [(spec, model) for spec in registry.iter_queues() for model in spec.message_types]


def _typeless(payload: str) -> Envelope:
    return Envelope(type="", payload=payload, correlation_id="c")


@pytest.mark.parametrize(
    ("spec", "model"),
    CASES,
    ids=[f"{s.name}-{m.__name__}" for s, m in CASES],
)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_type_of_every_queue_decodes_without_its_type(
    spec: registry.QueueSpec, model: type[BaseModel], data: st.DataObject
) -> None:
    """A message of each allowed type, its type left out of `meta`, decodes as that type."""
    message = data.draw(models(model))
    decoded = decode_message(spec, _typeless(message.model_dump_json()))
    assert (type(decoded), decoded) == (model, message)


OK = {"request_id": "r", "status": "success"}
W = {"request_id": "r", "worker_id": "w"}


@pytest.mark.parametrize(
    ("queue", "payload", "expected"),
    [
        ("worker:commands", W, "DeleteWorkerCommand"),
        ("worker:commands", {**W, "message": "m"}, "SendMessageCommand"),
        ("worker:responses", {"request_id": "r", "success": True}, "DeleteWorkerResponse"),
        ("worker:responses", {**W, "success": 1}, "CreateWorkerResponse"),
        ("results:{actor}", OK, "BaseResult"),
        ("results:{actor}", {**OK, "port": 1}, "DeployResult"),
        ("results:{actor}", {**OK, "exit_code": 2}, "AnsibleDeployResult"),
        ("results:{actor}", {**OK, "branch": "m"}, "EngineeringResult"),
        ("results:{actor}", {**OK, "server_handle": "h"}, "ProvisionerResult"),
    ],
)  # fmt: skip
def test_minimal_typeless_payloads_decode_by_shape(
    queue: str, payload: dict[str, object], expected: str
) -> None:
    """A hand-written payload without `command` or type decodes as the type its keys name."""
    decoded = decode_message(registry.get(queue), _typeless(json.dumps(payload)))
    assert type(decoded).__name__ == expected


def test_a_typeless_payload_no_type_holds_is_still_refused() -> None:
    """A typeless results entry that misses required fields is `invalid`, naming them."""
    with pytest.raises(DecodeError) as caught:
        decode_message(registry.get("results:{actor}"), _typeless('{"status": "success"}'))
    assert caught.value.reason == "invalid"
    assert "request_id" in str(caught.value)


async def test_a_typeless_delete_command_reaches_the_worker_manager(
    redis_client: aioredis.Redis, metrics: Metrics
) -> None:
    """`XADD worker:commands * payload {...}` of a valid delete command, with no `meta`, is
    handled as a `DeleteWorkerCommand`, not dead-lettered as `unknown_type`."""
    stream = registry.get("worker:commands").name
    bus = Bus(redis_client, actor=Actor.WORKER_MANAGER, metrics=metrics)
    handled: list[BaseModel] = []

    async def handle(message: BaseModel, ctx: MessageContext) -> None:
        handled.append(message)

    payload = {"request_id": "r-1", "worker_id": "w-1"}
    await redis_client.xadd(stream, {"payload": json.dumps(payload)})
    async with Running(bus.consumer(stream, handle, block_ms=100)):
        await eventually(lambda: len(handled) == 1)
    [message] = handled
    assert isinstance(message, DeleteWorkerCommand)
    assert (message.request_id, message.worker_id) == ("r-1", "w-1")
    assert await bus.dead_letters(stream) == []


def test_a_typeless_delete_response_decodes() -> None:
    """The same case on `worker:responses`: a delete response with no `command`."""
    spec = registry.get("worker:responses")
    decoded = decode_message(spec, _typeless('{"request_id": "r", "success": false}'))
    assert decoded == DeleteWorkerResponse(request_id="r", success=False)
