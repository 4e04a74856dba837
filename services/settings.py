"""The settings tree: the system's root (`shared.settings.Settings`) with one section per actor.

One prefix style, `ORCHESTRATOR_<SECTION>__<FIELD>` (nested fields with `__` as well), e.g.
`ORCHESTRATOR_INFRA__HEALTH_TIMEOUT_S=60`, `ORCHESTRATOR_WORKERS__DOCKER__NETWORK=host`. The
sections are defined beside their actors; this module only joins them, so it is what the
command line (`orchestrator up`, `run`, `config`) builds once and hands to every actor, each
of which reads its own section with `<Its>Settings.of(settings)`.

Names of the previous release keep working with a `FutureWarning` naming the new one:
`ORCHESTRATOR_INFRA_<FIELD>` and `ORCHESTRATOR_SCAFFOLDER_<FIELD>` (one underscore). A new
name set beside its old one wins.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping

from pydantic import Field
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource

from services.infra_service.settings import InfraSettings
from services.langgraph.settings import LanggraphSettings
from services.scaffolder.settings import ScaffolderSettings
from services.scheduler.settings import SchedulerSettings
from services.telegram_bot.settings import TelegramBotSettings
from services.worker_manager.settings import WorkerManagerSettings
from shared.settings import Section, Settings

__all__ = ["ALIASES", "DEPRECATED_PREFIXES", "SECTIONS", "SystemSettings", "renamed_variables"]

SECTIONS: tuple[type[Section], ...] = (
    WorkerManagerSettings,
    ScaffolderSettings,
    InfraSettings,
    LanggraphSettings,
    SchedulerSettings,
    TelegramBotSettings,
)
"""Every actor's section, in the order `orchestrator config` shows them."""

DEPRECATED_PREFIXES = {
    "ORCHESTRATOR_INFRA_": "ORCHESTRATOR_INFRA__",
    "ORCHESTRATOR_SCAFFOLDER_": "ORCHESTRATOR_SCAFFOLDER__",
}
"""Prefixes of the previous release (deprecated) → the tree's."""

ALIASES = {"TELEGRAM_BOT_TOKEN": "ORCHESTRATOR_TELEGRAM__TOKEN"}
"""Short names read as well (not deprecated), as `REDIS_URL` and `DATABASE_URL` are."""


def renamed_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """Each variable of `environ` with a deprecated name → its name in the tree."""
    renamed: dict[str, str] = {}
    for name in environ:
        upper = name.upper()
        for old, new in DEPRECATED_PREFIXES.items():
            if upper.startswith(old) and not upper.startswith(new):
                renamed[name] = new + upper.removeprefix(old)
    return renamed


class _AliasSource(EnvSettingsSource):
    """The deprecated names and the short aliases, read as the tree's names (below the
    environment and `.env`, so a tree name wins); warns once per deprecated name."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        environ = dict(os.environ)
        loaded: dict[str, str | None] = {}
        for old, new in renamed_variables(environ).items():
            warnings.warn(
                f"{old} is deprecated and will stop working in the next release: use {new}",
                FutureWarning,
                stacklevel=2,
            )
            loaded[new.lower()] = environ[old]
        for short, full in ALIASES.items():
            if short in environ:
                loaded[full.lower()] = environ[short]
        return loaded


class SystemSettings(Settings):
    """The whole tree: the root's fields and one section per actor."""

    workers: WorkerManagerSettings = Field(default_factory=WorkerManagerSettings)
    """The worker-manager (`ORCHESTRATOR_WORKERS__*`)."""
    scaffolder: ScaffolderSettings = Field(default_factory=ScaffolderSettings)
    """The scaffolder (`ORCHESTRATOR_SCAFFOLDER__*`)."""
    infra: InfraSettings = Field(default_factory=InfraSettings)
    """infra-service (`ORCHESTRATOR_INFRA__*`)."""
    langgraph: LanggraphSettings = Field(default_factory=LanggraphSettings)
    """The langgraph actor (`ORCHESTRATOR_LANGGRAPH__*`)."""
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    """The scheduler (`ORCHESTRATOR_SCHEDULER__*`)."""
    telegram: TelegramBotSettings = Field(default_factory=TelegramBotSettings)
    """The telegram-bot (`ORCHESTRATOR_TELEGRAM__*`, the token also `TELEGRAM_BOT_TOKEN`)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, the environment, `.env`, then the aliases and deprecated names."""
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            _AliasSource(settings_cls),
            file_secret_settings,
        )
