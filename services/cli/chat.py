"""`orchestrator chat`: talk to your PO agent from the terminal, for machines without a bot.

The same core as the Telegram bot (`shared.chat`): the same PO worker session, the same
queues, the same progress notifications (printed instead of edited). Lines come from stdin;
`/quit` or end of input stops, after the notifications of running tasks have finished.

Credential: `ORCHESTRATOR_API__KEY`, else the local admin's key that `orchestrator up` keeps
in `<data_dir>/secrets/cli.key`. It speaks for the credential's own user, or, with an admin
credential, for the user with `--telegram-id`: the same user, and the same PO worker, as on
Telegram.
"""

from __future__ import annotations

import asyncio
import getpass
import itertools
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import redis.asyncio as aioredis
import structlog
import typer

from shared import registry
from shared.api_client import ApiClient, ApiStatusError
from shared.api_client.schemas import UserCreate
from shared.chat import ChatOptions, ChatUser, Conversation, PoSessions, ReplyRelay, TaskNotifier
from shared.chat.control import ChatControl
from shared.chat.notifier import ChatForOwner
from shared.chat.secret_prompt import SecretPrompts
from shared.contracts import AgentName
from shared.embedded import CLI_KEY, read_runtime, read_secret, resolve_redis_url
from shared.messaging import Bus
from shared.settings import Settings

__all__ = ["TerminalSink", "chat", "run_chat"]

DOOR = "cli"
_log = structlog.get_logger("services.cli.chat")
LOCAL_CHAT_ID = 0
BANNER = (
    "Chat with your Product-Owner agent. /quit (or end of input) leaves; "
    "/cancel, /rollback, /deploys, /queue, /secret, /secrets act at once."
)


class TerminalSink:
    """A `ChatSink` that writes lines: a sent message, then each edit of it again."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write
        self._ids = itertools.count(1)
        self._shown: dict[int, str] = {}

    async def send(self, chat_id: int, text: str) -> int:
        """Print the message; returns a local id."""
        message_id = next(self._ids)
        self._shown[message_id] = text
        self.write(text)
        return message_id

    async def edit(self, chat_id: int, message_id: int, text: str) -> None:
        """Print the message again when its text changed."""
        if self._shown.get(message_id) != text:
            self._shown[message_id] = text
            self.write(text)

    async def typing(self, chat_id: int) -> None:
        """Nothing to show in a terminal."""


async def _local_user(api: ApiClient, telegram_id: int | None) -> ChatUser:
    """The user this chat speaks for: the credential's own, or one named by Telegram id."""
    if telegram_id is None:
        me = await api.me()
        return ChatUser(me.id, me.telegram_id, LOCAL_CHAT_ID, me.is_admin)
    found = await api.find_user(telegram_id)
    if found is None:
        found = await api.create_user(UserCreate(telegram_id=telegram_id))
    return ChatUser(found.id, found.telegram_id, LOCAL_CHAT_ID, found.is_admin)


async def run_chat(
    settings: Settings,
    redis_url: str,
    *,
    lines: AsyncIterator[str],
    write: Callable[[str], None],
    telegram_id: int | None = None,
    agent: AgentName = "claude-code",
    options: ChatOptions | None = None,
    notify_poll_s: float = 2.0,
    wait_for_tasks_s: float = 600.0,
    read_hidden: Callable[[str], Awaitable[str | None]] | None = None,
) -> int:
    """Run the conversation over `lines`; returns an exit code.

    While a secret prompt is open, the next line is its value: read with `read_hidden` (a
    prompt without echo, on a terminal) when given, else the next of `lines`."""
    key = settings.api.key.get_secret_value() if settings.api.key else None
    key = key or read_secret(settings, CLI_KEY)  # the local admin `orchestrator up` keeps
    redis: aioredis.Redis = aioredis.Redis.from_url(redis_url)
    try:
        async with ApiClient(settings.api.base_url, key=key) as api:
            try:
                user = await _local_user(api, telegram_id)
            except ApiStatusError as error:
                write(f"cannot tell who you are ({error}); pass --telegram-id with an admin key")
                return 2
            sink = TerminalSink(write)
            bus = Bus(redis, actor=registry.Actor.TELEGRAM_BOT)
            async with ReplyRelay(bus, redis) as replies:
                sessions = PoSessions(
                    bus=bus,
                    redis=redis,
                    replies=replies,
                    door=DOOR,
                    api_url=settings.api.base_url,
                    agent=agent,
                )
                prompts = SecretPrompts(api, redis, DOOR)
                conversation = Conversation(bus, redis, sessions, sink, options, prompts=prompts)
                notifier = TaskNotifier(
                    bus,
                    redis,
                    api,
                    sink,
                    door=DOOR,
                    owner_id=user.user_id,
                    chat_for_owner=_only(user.user_id),
                    poll_s=notify_poll_s,
                )
                control = ChatControl(api, prompts)
                notifying = asyncio.create_task(notifier.run(), name="chat-notifier")
                try:
                    write(BANNER)
                    await conversation.resume_pending()
                    async for line in lines:
                        text = line.strip()
                        if text in ("/quit", "/exit"):
                            break
                        taken = await prompts.intercept(user, line)
                        if taken is not None:
                            write(taken[0])
                            continue
                        turn = f"cli-{uuid.uuid4()}"  # the turn's correlation id
                        answer = await control.handle(user, text, correlation_id=turn)
                        if answer is not None:
                            _log.info("chat_control", correlation_id=turn, user_id=user.user_id)
                            write(answer)
                            notifier.wake()
                        elif text:
                            await conversation.ask(user, text, request_id=turn)
                            notifier.wake()
                        await _hidden_value(prompts, user, read_hidden, write)
                    await _drain(notifier, wait_for_tasks_s)
                finally:
                    notifying.cancel()
                    await asyncio.gather(notifying, return_exceptions=True)
                    await conversation.aclose()
    finally:
        await redis.aclose()
    return 0


async def _hidden_value(
    prompts: SecretPrompts,
    user: ChatUser,
    read_hidden: Callable[[str], Awaitable[str | None]] | None,
    write: Callable[[str], None],
) -> None:
    """On a terminal, read an open prompt's value without echo (it is not on the screen)."""
    if read_hidden is None:
        return
    prompt = await prompts.pending(user)
    if prompt is None or prompt.expired:
        return
    value = await read_hidden(f"{prompt.name} (hidden; empty line cancels): ")
    if not value or not value.strip():
        taken = await prompts.intercept(user, "/cancel")
    else:
        taken = await prompts.intercept(user, value)
    if taken is not None:
        write(taken[0])


def _only(user_id: int) -> ChatForOwner:
    async def chat_for_owner(owner_id: int) -> int | None:
        return LOCAL_CHAT_ID if owner_id == user_id else None

    return chat_for_owner


async def _drain(notifier: TaskNotifier, timeout_s: float) -> None:
    """Wait until every announced task's notification is final (or the timeout)."""
    await notifier.discover()
    await notifier.wait_idle(timeout_s)


async def _stdin_lines() -> AsyncIterator[str]:
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            return
        yield line


async def _getpass(prompt: str) -> str | None:
    try:
        return await asyncio.to_thread(getpass.getpass, prompt)
    except EOFError:
        return None


def chat(
    telegram_id: int = typer.Option(
        None, help="Speak as the user with this Telegram id (needs an admin credential)."
    ),
    agent: str = typer.Option("claude-code", help="Agent of the PO worker (claude-code, ...)."),
    data_dir: Path = typer.Option(None, help="Data directory of the running system."),  # noqa: B008
) -> None:
    """Talk to your Product-Owner agent here, with live progress of your tasks."""
    settings = Settings() if data_dir is None else Settings(data_dir=data_dir)
    redis_url = resolve_redis_url(settings)
    if redis_url is None:
        typer.echo("No running system found: start one with `orchestrator up`.", err=True)
        raise typer.Exit(2)
    runtime = read_runtime(settings)
    if settings.api.url is None and runtime is not None:
        settings = settings.model_copy(
            update={"api": settings.api.model_copy(update={"url": runtime.api_url})}
        )
    if agent not in ("claude-code", "factory-droid"):
        raise typer.BadParameter("agent must be claude-code or factory-droid")
    code = asyncio.run(
        run_chat(
            settings,
            redis_url,
            lines=_stdin_lines(),
            write=typer.echo,
            telegram_id=telegram_id,
            agent="claude-code" if agent == "claude-code" else "factory-droid",
            read_hidden=_getpass if sys.stdin.isatty() else None,
        )
    )
    raise typer.Exit(code)
