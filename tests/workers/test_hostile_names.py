"""Hostile worker names: refused by the worker-manager before anything exists (no process, no
directory, no record), and the slug of an accepted name, which names the worker's id, its
directory and its session volume, is bounded and tame."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from services.worker_manager.manager import _NAME, _slug
from services.worker_manager.registry import WorkerRegistry
from tests.support.hostile import HOSTILE_NAMES, PWNED
from tests.support.workers import Client, ManagerRunner

CARRIED = [name for name in HOSTILE_NAMES if not re.search("[\ud800-\udfff]", name)]
"""The names a queue message can carry (JSON has no lone surrogates)."""


def _entries(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir()) if directory.exists() else []


async def test_a_hostile_worker_name_is_refused_and_nothing_is_created(
    manager: ManagerRunner, client: Client
) -> None:
    """Every hostile name (with and without a session volume) gets a clear error; no worker
    directory, session volume or registry record appears, and no command runs."""
    await manager.start()
    for name in CARRIED:
        for volume in (False, True):
            answer = await client.create(name=name, mount_session_volume=volume)
            assert not answer.success, name[:40]
            assert "invalid worker name" in answer.error, answer.error
    assert _entries(manager.data_dir) == []
    assert await WorkerRegistry(client.redis).all() == []
    assert not PWNED.exists()


@pytest.mark.parametrize("name", ["A" * 63, "a..b", "x.-_.", "Dev_Ops.2", "9", "a-" * 31 + "z"])
def test_the_slug_of_an_accepted_name_is_bounded_and_tame(name: str) -> None:
    """Names the manager accepts give a slug of at most 40 characters of `[a-z0-9-]`, never
    empty, never a dot (so `<data_dir>/<slug>-<hex>` stays one directory level)."""
    assert _NAME.match(name)
    slug = _slug(name)
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]{0,39}", slug) or slug == "worker", slug
    assert not _NAME.match(f"../{name}")
