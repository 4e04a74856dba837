"""What the outbox and the API tell Prometheus: pending rows and their age while Redis is
unreachable, back to zero once published; requests by route template and status; tasks
created and finished."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from services.api.outbox.relay import OutboxRelay
from shared import registry
from shared.contracts import TaskStatus, TaskType
from shared.messaging import Bus, PublishError
from shared.redis_server import free_port
from tests.api.test_outbox import create_tasks
from tests.support.api import ApiHarness


def _sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


async def test_outbox_lag_grows_while_redis_is_away_and_drops_once_published(
    api: ApiHarness, redis_client: aioredis.Redis
) -> None:
    await create_tasks(api, 2, TaskType.ENGINEERING)
    away = aioredis.Redis(port=free_port(), socket_connect_timeout=0.5)
    stuck = OutboxRelay(api.database, Bus(away, actor=registry.Actor.API, publish_attempts=1))
    with pytest.raises((PublishError, OSError, ConnectionError)):
        await stuck.publish_pending()
    await away.aclose()
    assert _sample("orchestrator_outbox_pending") == 2
    assert _sample("orchestrator_outbox_lag_seconds") > 0
    relay = OutboxRelay(api.database, Bus(redis_client, actor=registry.Actor.API))
    assert await relay.publish_pending() == 2
    assert _sample("orchestrator_outbox_pending") == 0
    assert _sample("orchestrator_outbox_lag_seconds") == 0


async def test_requests_and_tasks_are_counted_by_route_status_and_type(api: ApiHarness) -> None:
    route = {"method": "GET", "route": "/api/tasks/{task_id}"}
    before_404 = _sample("orchestrator_http_requests_total", {**route, "status": "404"})
    created_before = _sample("orchestrator_tasks_created_total", {"type": "engineering"})
    cancelled = {"type": "engineering", "status": "cancelled"}
    cancelled_before = _sample("orchestrator_tasks_finished_total", cancelled)
    (task_id,) = await create_tasks(api, 1, TaskType.ENGINEERING)
    async with api.http(api.admin_key) as http:
        assert (await http.get("/api/tasks/no-such-task")).status_code == 404
        assert (await http.post(f"/api/tasks/{task_id}/cancel")).status_code == 200
        again = await http.post(f"/api/tasks/{task_id}/cancel")
        assert again.status_code == 409
        shown = (await http.get(f"/api/tasks/{task_id}")).json()
    assert shown["status"] == TaskStatus.CANCELLED.value
    after_404 = _sample("orchestrator_http_requests_total", {**route, "status": "404"})
    assert after_404 == before_404 + 1
    assert _sample("orchestrator_http_request_seconds_count", route) >= 2
    assert _sample("orchestrator_tasks_created_total", {"type": "engineering"}) == (
        created_before + 1
    )
    # the refused second cancel counts nothing
    assert _sample("orchestrator_tasks_finished_total", cancelled) == cancelled_before + 1
