"""Settings of the telegram-bot: the tree's `telegram` section (`ORCHESTRATOR_TELEGRAM__*`),
read once in main (`TelegramBotSettings.of(settings)`).

The bot token is a secret read from `TELEGRAM_BOT_TOKEN` (or `ORCHESTRATOR_TELEGRAM__TOKEN`);
it is never logged. Admins are Telegram ids from configuration, e.g.
`ORCHESTRATOR_TELEGRAM__ADMINS='[12345]'`.
"""

from __future__ import annotations

from pydantic import Field, SecretStr

from shared.contracts import AgentName
from shared.settings import Section

__all__ = ["TelegramBotSettings"]


class TelegramBotSettings(Section):
    """Everything the bot can be told; only the token has no working default."""

    section = "telegram"

    token: SecretStr | None = None
    """The bot token from @BotFather; without it the bot does not start."""
    api_key: SecretStr | None = None
    """The bot's API credential (admin scope: it adds users; PO workers' tokens are minted by
    the worker-manager). None: the embedded mode's local admin key, else the system's
    `api.key`."""
    admins: list[int] = Field(default_factory=list)
    """Telegram ids that are admins: always let in (registered on first contact), may /adduser."""
    bot_api_url: str | None = None
    """Base URL of a Bot API server (a local one, or a test fake); None: Telegram's."""
    po_agent: AgentName = "claude-code"
    """The agent PO workers ask for (the worker-manager falls back to the built-in one)."""
    po_api_url: str | None = None
    """The API URL as PO workers reach it; None: the system's `api.base_url`."""
    answer_timeout_s: int = 1800
    create_timeout_s: float = 60.0
    notify_poll_s: float = 2.0
    """How often the API is asked for new tasks of the users (besides after each answer)."""
    edit_interval_s: float = 1.0
    """Least time between two edits of a progress message (Telegram rate-limits edits)."""
    refusal_ttl_s: int = 3600
    """An unknown user is told no once in this time; other messages get no reply."""
    polling_timeout_s: int = 10
    """Long-polling timeout of getUpdates."""
    secret_prompt_ttl_s: float = Field(default=600.0, ge=0)
    """How long a secret prompt (`/secret`, or the PO asking) waits for the value; a later
    message is neither stored nor relayed."""
