"""The API as users run it (uvicorn in its own process): crashes lose no task message."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from services.api.db import Database
from shared import registry
from tests.api.process import ApiProcess
from tests.api.test_outbox import has_entries, stream_messages
from tests.support.api import ApiHarness
from tests.support.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
"""Two API processes start per test; on a loaded 2-core machine imports alone take seconds."""

STREAM = registry.get("engineering:queue").name


async def _create_tasks(url: str, admin_key: str, count: int) -> list[str]:
    headers = {"Authorization": f"Bearer {admin_key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers) as http:
        user = (await http.post("/api/users", json={"telegram_id": 31337})).json()
        project = (
            await http.post("/api/projects", params={"owner_id": user["id"]}, json={"name": "p"})
        ).json()
        parallel = {"parallel_tasks": count}  # all of them released at once (task order)
        assert (await http.patch(f"/api/projects/{project['id']}", json=parallel)).is_success
        ids = []
        for _ in range(count):
            response = await http.post(
                "/api/tasks", json={"project_id": project["id"], "type": "engineering"}
            )
            assert response.status_code == 201
            ids.append(response.json()["id"])
        return ids


async def test_killed_between_commit_and_publish_then_restarted(
    api: ApiHarness,
    database: Database,
    redis_url: str,
    redis_client: aioredis.Redis,
    tmp_path: Path,
) -> None:
    """SIGKILL after the commit, before any publish: the restarted API publishes each once."""
    first = ApiProcess(
        database_url=database.url,
        redis_url=redis_url,
        relay_enabled=False,  # the crash comes before the relay could publish
        log_path=tmp_path / "first.log",
    ).start()
    try:
        created = await _create_tasks(first.url, api.admin_key, 3)
    finally:
        first.kill()
    assert await redis_client.xlen(STREAM) == 0
    second = ApiProcess(
        database_url=database.url, redis_url=redis_url, log_path=tmp_path / "second.log"
    ).start()
    try:
        await eventually(lambda: has_entries(redis_client, STREAM, 3), timeout_s=20)
        await asyncio.sleep(0.5)  # a second publish would show up by now
        sent = await stream_messages(redis_client, STREAM)
        assert [message.task_id for _, message in sent] == created  # type: ignore[attr-defined]
    finally:
        assert second.terminate() == 0


async def test_service_key_from_settings_and_clean_stop(
    database: Database, redis_url: str, tmp_path: Path
) -> None:
    """A configured service key works at once; SIGTERM stops the API with exit code 0."""
    process = ApiProcess(
        database_url=database.url,
        redis_url=redis_url,
        service_key="orc_configured-service-key",
        log_path=tmp_path / "api.log",
    ).start()
    try:
        async with httpx.AsyncClient(base_url=process.url) as http:
            ok = await http.get(
                "/api/servers", headers={"Authorization": "Bearer orc_configured-service-key"}
            )
            refused = await http.get("/api/servers", headers={"Authorization": "Bearer nope"})
        assert (ok.status_code, refused.status_code) == (200, 401)
    finally:
        assert process.terminate() == 0
