"""Fixtures of the messaging tests: a bus on the private Redis, message factories."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from shared.messaging import Bus, Metrics
from shared.registry import Actor


@pytest.fixture
def metrics() -> Metrics:
    """Metric families on a registry of their own, so tests can read exact values."""
    return Metrics.create(CollectorRegistry())


@pytest.fixture
def bus(redis_client: aioredis.Redis, metrics: Metrics) -> Bus:
    """A langgraph bus on the private, flushed Redis."""
    return Bus(redis_client, actor=Actor.LANGGRAPH, metrics=metrics)
