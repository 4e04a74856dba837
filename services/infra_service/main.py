"""Running infra-service on the bus: build the dependencies, consume both queues, reconcile
archived projects, shut down.

    await run_infra_service(settings, bus)   # until cancelled

With the API, a reconcile loop (`reconcile.py`) runs beside the consumers, on the same
dependencies (so the same per-project locks): at start and every `reconcile_interval_s` it
removes the deployments of archived projects and releases their ports.

`settings` is the system's `Settings` (infra settings are derived from it and the
environment, `ORCHESTRATOR_INFRA_*`) or an `InfraSettings`. `run_actor(ctx)` is the entry
of `orchestrator up` / `orchestrator run infra-service`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog

from services.infra_service.ansible import AnsiblePlaybookRunner
from services.infra_service.cancellation import (
    ApiCancellation,
    CancellationSource,
    NeverCancelled,
)
from services.infra_service.handlers import (
    InfraDeps,
    handle_ansible_deploy_message,
    handle_provisioner_message,
)
from services.infra_service.reconcile import (
    ApiArchivedDeployments,
    ArchivedDeployments,
    run_reconcile_loop,
)
from services.infra_service.secrets import SchemeSecretsProvider, SealedSecretsSource
from services.infra_service.servers import ApiServerLookup, ServerLookup, SettingsServerLookup
from services.infra_service.settings import InfraSettings
from shared import registry
from shared.actor import ActorContext, run_parts
from shared.api_client import ApiClient
from shared.contracts import (
    AnsibleDeployMessage,
    AnsibleDeployResult,
    ProvisionerMessage,
    ProvisionerResult,
)
from shared.messaging import Bus, MessageContext
from shared.secret_box import SecretBox, secret_box_from_settings
from shared.settings import SHUTDOWN_GRACE_S, Settings
from shared.steps import StepProgressReporter

__all__ = ["build_deps", "run_actor", "run_infra_service"]

log = structlog.get_logger(__name__)


def build_deps(
    settings: InfraSettings,
    bus: Bus,
    servers: ServerLookup,
    cancellations: CancellationSource | None = None,
    *,
    sealed: SealedSecretsSource | None = None,
    box: SecretBox | None = None,
) -> InfraDeps:
    """The real dependencies: `ansible-playbook`, env/file/project secrets (stored ones with
    `sealed` and `box`), the given servers and task source (none: never cancelled)."""
    return InfraDeps(
        settings=settings,
        runner=AnsiblePlaybookRunner(settings),
        secrets=SchemeSecretsProvider.default(settings.effective_secrets_dir, api=sealed, box=box),
        servers=servers,
        progress=StepProgressReporter(bus, label="infra"),
        cancellations=cancellations or NeverCancelled(),
    )


async def run_infra_service(
    settings: Settings | InfraSettings,
    bus: Bus,
    *,
    servers: ServerLookup | None = None,
    api: ApiClient | None = None,
) -> None:
    """Consume `provisioner:queue` and `ansible:deploy:queue` until cancelled.

    With the REST API (`api`, else a client built from the system's `Settings`), servers come
    from its registry (falling back to the configured ones), provisioning records their status
    there, and deploy jobs stop when their task is cancelled there. With `InfraSettings` and
    no `api`, only the configured servers are known and jobs run to their end. `servers`
    overrides the registry. A given `api` is the caller's to close."""
    owned: ApiClient | None = None
    box: SecretBox | None = None
    grace_s = SHUTDOWN_GRACE_S
    if isinstance(settings, InfraSettings):
        infra = settings
    else:
        grace_s = settings.shutdown_grace_s
        infra = InfraSettings.of(settings)
        box = secret_box_from_settings(settings)
        if api is None:
            api = owned = ApiClient.from_settings(settings)
    if servers is None and api is not None:
        servers = ApiServerLookup(api, infra)
    cancellations = None if api is None else ApiCancellation(api)
    archived = None if api is None else ApiArchivedDeployments(api)
    infra.work_dir.mkdir(parents=True, exist_ok=True)
    try:
        await _consume(
            infra,
            bus,
            servers or SettingsServerLookup(infra),
            cancellations,
            archived,
            api,
            box,
            grace_s,
        )
    finally:
        if owned is not None:
            await owned.aclose()


async def _consume(
    infra: InfraSettings,
    bus: Bus,
    servers: ServerLookup,
    cancellations: CancellationSource | None,
    archived: ArchivedDeployments | None,
    api: ApiClient | None,
    box: SecretBox | None,
    grace_s: float,
) -> None:
    deps = build_deps(infra, bus, servers, cancellations, sealed=api, box=box)

    async def on_provision(message: ProvisionerMessage, ctx: MessageContext) -> ProvisionerResult:
        return await handle_provisioner_message(message, deps)

    async def on_deploy(message: AnsibleDeployMessage, ctx: MessageContext) -> AnsibleDeployResult:
        return await handle_ansible_deploy_message(message, deps)

    consumers = [
        bus.consumer(
            registry.get("provisioner:queue").name, on_provision, concurrency=infra.concurrency
        ),
        bus.consumer(
            registry.get("ansible:deploy:queue").name, on_deploy, concurrency=infra.concurrency
        ),
    ]
    log.info("infra_service_started", data_dir=str(infra.data_dir))
    background: dict[str, Callable[[], Awaitable[None]]] = {}
    if archived is not None:
        source = archived

        async def reconcile() -> None:
            await run_reconcile_loop(source, deps, interval_s=infra.reconcile_interval_s)

        background["reconcile"] = reconcile
    await run_parts(
        registry.Actor.INFRA_SERVICE.value,
        consumers=consumers,
        background=background,
        shutdown_grace_s=grace_s,
    )


async def run_actor(ctx: ActorContext) -> None:
    """The `infra-service` actor for `orchestrator up` / `orchestrator run`."""
    redis = ctx.redis()
    try:
        await run_infra_service(ctx.settings, Bus(redis, actor=registry.Actor.INFRA_SERVICE))
    finally:
        await redis.aclose()
