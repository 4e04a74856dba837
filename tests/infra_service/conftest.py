"""Fixtures of the infra-service tests: a data directory with the local server provisioned
once per session, tiny projects in local bare repositories, and deps with recording fakes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from services.infra_service.handlers import handle_provisioner_message
from services.infra_service.settings import InfraSettings
from shared.contracts import ProvisionerMessage, ProvisionerResult
from tests.support.infra_service import (
    make_deps,
    make_settings,
    stop_all_apps,
)


@pytest.fixture(scope="session")
def infra_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfraSettings]:
    """Settings over a session data directory; everything started there is killed at the end."""
    settings = make_settings(tmp_path_factory.mktemp("infra-data"))
    yield settings
    stop_all_apps(settings.local_base_dir)


@pytest.fixture(scope="session")
def provisioned(infra_settings: InfraSettings) -> ProvisionerResult:
    """The local server, provisioned once for the session with the real playbook."""
    deps, _ = make_deps(infra_settings)
    message = ProvisionerMessage(server_handle="local")
    return asyncio.run(handle_provisioner_message(message, deps))
