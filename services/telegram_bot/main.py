"""Run the `telegram-bot` actor: aiogram long polling, the PO conversation, task progress.

`run_telegram_bot(settings, redis_url)` returns at once, with one clear log line, when no
bot token is configured (use `orchestrator chat` on such machines); otherwise it runs until
cancelled. `run_actor(ctx)` is the same for `orchestrator up` / `orchestrator run
telegram-bot`, except that without a token it does not return: it keeps relaying the front
doors' replies on `worker:responses` (`ReplyRelay`, for `orchestrator chat`), so the other
actors of `orchestrator up` keep running.
"""

from __future__ import annotations

import redis.asyncio as aioredis
import structlog
from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer

from services.telegram_bot.access import DOOR, AccessControl, AccessMiddleware
from services.telegram_bot.errors import BotConfigError
from services.telegram_bot.handlers import BotDeps, build_router
from services.telegram_bot.secrets import SecretPromptMiddleware
from services.telegram_bot.settings import TelegramBotSettings
from services.telegram_bot.sink import TelegramSink
from shared import registry
from shared.actor import ActorContext, run_parts
from shared.api_client import ApiClient
from shared.chat import ChatOptions, Conversation, PoSessions, ReplyRelay, TaskNotifier
from shared.chat.secret_prompt import SecretPrompts
from shared.embedded import CLI_KEY, read_secret
from shared.messaging import Bus
from shared.settings import Settings

__all__ = ["build_bot", "run_actor", "run_telegram_bot"]

log = structlog.get_logger("services.telegram_bot")


def build_bot(bot_settings: TelegramBotSettings) -> Bot:
    """The aiogram `Bot`, pointed at `bot_api_url` when one is configured."""
    if bot_settings.token is None:
        raise BotConfigError("no bot token: set TELEGRAM_BOT_TOKEN")
    session = None
    if bot_settings.bot_api_url:
        session = AiohttpSession(api=TelegramAPIServer.from_base(bot_settings.bot_api_url))
    return Bot(bot_settings.token.get_secret_value(), session=session)


def _api_key(settings: Settings, bot_settings: TelegramBotSettings) -> str:
    """The bot's credential: its own, the embedded local admin's, or the system's."""
    if bot_settings.api_key is not None:
        return bot_settings.api_key.get_secret_value()
    local_admin = read_secret(settings, CLI_KEY)
    if local_admin:
        return local_admin
    if settings.api.key is not None:
        return settings.api.key.get_secret_value()
    raise BotConfigError(
        "the telegram-bot needs an API credential: set ORCHESTRATOR_TELEGRAM__API_KEY "
        "(admin scope, to add users)"
    )


async def run_telegram_bot(
    settings: Settings, redis_url: str, *, bot_settings: TelegramBotSettings | None = None
) -> None:
    """Serve Telegram until cancelled; return with a log line when no token is configured."""
    bot_settings = bot_settings or TelegramBotSettings.of(settings)
    if bot_settings.token is None:
        log.warning(
            "telegram_bot_disabled",
            reason="no TELEGRAM_BOT_TOKEN configured; use `orchestrator chat` to talk locally",
        )
        return
    key = _api_key(settings, bot_settings)
    redis: aioredis.Redis = aioredis.Redis.from_url(redis_url)
    bot = build_bot(bot_settings)
    api = ApiClient(settings.api.base_url, key=key)
    try:
        await _serve(settings, bot_settings, redis, bot, api)
    finally:
        await api.aclose()
        await bot.session.close()
        await redis.aclose()


async def _serve(
    settings: Settings,
    bot_settings: TelegramBotSettings,
    redis: aioredis.Redis,
    bot: Bot,
    api: ApiClient,
) -> None:
    bus = Bus(redis, actor=registry.Actor.TELEGRAM_BOT)
    async with ReplyRelay(bus, redis) as replies:
        await _serve_with(settings, bot_settings, redis, bot, api, bus, replies)


async def _serve_with(
    settings: Settings,
    bot_settings: TelegramBotSettings,
    redis: aioredis.Redis,
    bot: Bot,
    api: ApiClient,
    bus: Bus,
    replies: ReplyRelay,
) -> None:
    sink = TelegramSink(bot)
    access = AccessControl(
        api, redis, admins=bot_settings.admins, refusal_ttl_s=bot_settings.refusal_ttl_s
    )
    sessions = PoSessions(
        bus=bus,
        redis=redis,
        replies=replies,
        door=DOOR,
        api_url=bot_settings.po_api_url or settings.api.base_url,
        agent=bot_settings.po_agent,
        create_timeout_s=bot_settings.create_timeout_s,
    )
    prompts = SecretPrompts(api, redis, DOOR, ttl_s=bot_settings.secret_prompt_ttl_s)
    conversation = Conversation(
        bus,
        redis,
        sessions,
        sink,
        ChatOptions(answer_timeout_s=bot_settings.answer_timeout_s),
        prompts=prompts,
    )
    notifier = TaskNotifier(
        bus,
        redis,
        api,
        sink,
        door=DOOR,
        chat_for_owner=access.chat_of,
        poll_s=bot_settings.notify_poll_s,
        edit_interval_s=bot_settings.edit_interval_s,
    )
    dispatcher = Dispatcher()
    dispatcher["deps"] = BotDeps(
        api=api, conversation=conversation, notifier=notifier, prompts=prompts
    )
    router = build_router()
    router.message.outer_middleware(AccessMiddleware(access))
    router.message.outer_middleware(SecretPromptMiddleware(prompts))
    dispatcher.include_router(router)

    async def poll() -> None:
        await dispatcher.start_polling(
            bot,
            handle_signals=False,
            close_bot_session=False,
            polling_timeout=bot_settings.polling_timeout_s,
            allowed_updates=["message"],
        )

    try:
        resumed = await conversation.resume_pending()
        log.info("telegram_bot_started", resumed_questions=resumed)
        await run_parts(
            registry.Actor.TELEGRAM_BOT.value,
            background={"notifier": notifier.run, "polling": poll},
            shutdown_grace_s=settings.shutdown_grace_s,
        )
    finally:
        await conversation.aclose()


async def run_actor(ctx: ActorContext) -> None:
    """`orchestrator up` / `run telegram-bot`: the bot, or without a token only the relay of
    the front doors' replies (so `up` keeps the others running)."""
    await run_telegram_bot(ctx.settings, ctx.redis_url)
    redis = ctx.redis()
    try:
        relay = ReplyRelay(Bus(redis, actor=registry.Actor.TELEGRAM_BOT), redis)
        await run_parts(
            registry.Actor.TELEGRAM_BOT.value,
            background={"reply-relay": relay.run},
            shutdown_grace_s=ctx.settings.shutdown_grace_s,
        )
    finally:
        await redis.aclose()
