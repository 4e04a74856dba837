"""First start of the embedded mode: a service key, the local admin's key, the local server.

Everything is idempotent: a second `orchestrator up` on the same data directory reuses what
the first one made. Secrets live in `<data_dir>/secrets/` (0600) and nowhere else.
"""

from __future__ import annotations

import secrets

from pydantic import SecretStr

from shared.api_client import ApiClient, ApiStatusError
from shared.api_client.schemas import ServerCreate
from shared.embedded import CLI_KEY, SERVICE_KEY, read_secret, write_secret
from shared.settings import Settings

__all__ = ["LOCAL_SERVER", "ensure_cli_key", "ensure_local_server", "with_service_key"]

LOCAL_SERVER = "local"
"""Handle of the server that stands for this machine in the embedded mode."""


def with_service_key(settings: Settings, redis_url: str) -> Settings:
    """Settings for in-process actors: the system's Redis and a shared service key."""
    secret = settings.api.service_key
    if secret is None:
        stored = read_secret(settings, SERVICE_KEY)
        if stored is None:
            stored = secrets.token_urlsafe(32)
            write_secret(settings, SERVICE_KEY, stored)
        secret = SecretStr(stored)
    api = settings.api.model_copy(update={"service_key": secret, "key": settings.api.key or secret})
    return settings.model_copy(update={"redis_url": redis_url, "api": api})


async def ensure_cli_key(settings: Settings) -> None:
    """Make sure `<data_dir>/secrets/cli.key` holds a working key of the local admin."""
    stored = read_secret(settings, CLI_KEY)
    if stored is not None:
        async with ApiClient(settings.api.base_url, key=stored) as client:
            try:
                await client.me()
                return
            except ApiStatusError as error:
                if error.status_code != 401:
                    raise
    from services.cli.admin import create_admin_key

    _, secret = await create_admin_key(settings, settings.local_user_telegram_id, "local admin")
    write_secret(settings, CLI_KEY, secret)


async def ensure_local_server(settings: Settings) -> None:
    """Register this machine as the deploy server `local` (pending setup) if it is not yet."""
    key = settings.api.service_key
    async with ApiClient(
        settings.api.base_url, key=key.get_secret_value() if key else None
    ) as client:
        try:
            await client.get_server(LOCAL_SERVER)
        except ApiStatusError as error:
            if error.status_code != 404:
                raise
            first, last = settings.local_ports
            await client.create_server(
                ServerCreate(
                    handle=LOCAL_SERVER,
                    address="127.0.0.1",
                    ssh_user="local",
                    port_range_start=first,
                    port_range_end=last,
                )
            )
