"""`provisioner:queue`: scheduler → infra-service. Set up a server."""

from __future__ import annotations

from shared.contracts.base import BaseMessage, BaseResult

__all__ = ["ProvisionerMessage", "ProvisionerResult"]


class ProvisionerMessage(BaseMessage):
    """Provision server."""

    server_handle: str
    force_reinstall: bool = False
    is_recovery: bool = False


class ProvisionerResult(BaseResult):
    """Provisioning result."""

    server_handle: str
    server_ip: str | None = None
    services_redeployed: int = 0
    errors: list[str] | None = None
