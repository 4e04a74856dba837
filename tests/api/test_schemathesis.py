"""Schemathesis over the whole API (a real uvicorn process, an admin credential).

Bounded: a few generated examples per operation (positive and negative), no coverage phase.
Checks: no 5xx, every response matches its documented status, content type and schema.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.api.auth.service import AuthService
from services.api.db import Database
from services.api.migrate import upgrade
from services.api.openapi import openapi_document
from tests.api.process import ApiProcess

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 6
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


async def _admin_key(url: str) -> str:
    database = Database(url)
    try:
        await upgrade(database)
        async with database.sessionmaker() as session:
            _, secret = await AuthService(session).create_key("fuzz", "admin", None)
            await session.commit()
    finally:
        await database.close()
    return secret


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A running API on a fresh SQLite file, and an admin key for it."""
    directory: Path = tmp_path_factory.mktemp("fuzz")
    url = f"sqlite+aiosqlite:///{directory / 'api.db'}"
    key = asyncio.run(_admin_key(url))
    process = ApiProcess(
        database_url=url, redis_url=None, relay_enabled=False, log_path=directory / "api.log"
    ).start()
    try:
        yield process.url, key
    finally:
        process.terminate()


CONFIG = SchemathesisConfig.from_dict(
    {
        "phases": {"coverage": {"enabled": False}},
        "generation": {"max-examples": MAX_EXAMPLES, "mode": "all"},
    }
)
schema = schemathesis.openapi.from_dict(openapi_document(), config=CONFIG)
"""The document the code serves (its staleness against docs/ is pinned elsewhere)."""


@schema.parametrize()
@hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    database=None,
)
def test_api_conforms(case: schemathesis.Case[Any], fuzz_target: tuple[str, str]) -> None:
    """No operation answers 5xx or a response outside its documented schema."""
    base_url, key = fuzz_target
    case.call_and_validate(
        base_url=base_url, headers={"Authorization": f"Bearer {key}"}, checks=CHECKS
    )
