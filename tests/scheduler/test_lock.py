"""Tick claims and run leases on real Redis."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from services.scheduler import keys
from services.scheduler.lock import JobLocks


async def test_only_the_first_replica_claims_a_tick(redis_client: aioredis.Redis) -> None:
    """Ten concurrent claims of one tick: exactly one wins; the next tick is free again."""
    locks = [JobLocks(redis_client, owner=f"r{i}", lease_ttl_s=1.0) for i in range(10)]
    won = await asyncio.gather(*(lock.claim_tick("job", 7, interval_s=1.0) for lock in locks))
    assert won.count(True) == 1
    assert await locks[0].claim_tick("job", 8, interval_s=1.0) is True


async def test_a_tick_claim_outlives_its_tick_then_expires(redis_client: aioredis.Redis) -> None:
    """The claim lasts two intervals (no late replica can rerun the tick), then goes away."""
    lock = JobLocks(redis_client, owner="r", lease_ttl_s=1.0)
    assert await lock.claim_tick("job", 1, interval_s=0.1)
    ttl_ms = await redis_client.pttl(keys.tick_key("job", 1))
    assert 100 < ttl_ms <= 200
    await asyncio.sleep(0.25)
    assert await redis_client.exists(keys.tick_key("job", 1)) == 0


async def test_a_lease_is_released_only_by_its_owner(redis_client: aioredis.Redis) -> None:
    """Compare-and-delete: another replica's release leaves the lease in place."""
    owner = JobLocks(redis_client, owner="owner", lease_ttl_s=5.0)
    other = JobLocks(redis_client, owner="other", lease_ttl_s=5.0)
    assert await owner.acquire_lease("job")
    assert not await other.acquire_lease("job")
    assert not await other.release_lease("job")
    assert await redis_client.get(keys.lease_key("job")) == b"owner"
    assert not await other.renew_lease("job")
    assert await owner.release_lease("job")
    assert await other.acquire_lease("job")


async def test_a_held_lease_is_renewed_past_its_ttl(redis_client: aioredis.Redis) -> None:
    """A run longer than the lease TTL keeps the lease (renewed), and releases it at the end."""
    # a TTL long enough that a loaded CI machine's scheduling stalls (a 0.3 s TTL, renewed
    # every 0.1 s, was lost once) do not outlast it; the run still spans two TTLs
    locks = JobLocks(redis_client, owner="r", lease_ttl_s=1.5)
    async with locks.lease("job") as held:
        assert held
        await asyncio.sleep(3.2)
        assert await redis_client.get(keys.lease_key("job")) == b"r"
    assert await redis_client.exists(keys.lease_key("job")) == 0


async def test_a_busy_lease_is_not_entered(redis_client: aioredis.Redis) -> None:
    """`lease()` yields False while another replica holds it, and does not release theirs."""
    holder = JobLocks(redis_client, owner="holder", lease_ttl_s=5.0)
    late = JobLocks(redis_client, owner="late", lease_ttl_s=5.0)
    assert await holder.acquire_lease("job")
    async with late.lease("job") as held:
        assert not held
    assert await redis_client.get(keys.lease_key("job")) == b"holder"
