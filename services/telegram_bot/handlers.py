"""The bot's router: quick commands straight to the API, free text to the PO worker.

Handlers receive `user` (a `ChatUser`, put there by the access middleware) and `deps`.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from aiogram import F, Router
from aiogram.filters import Command, CommandObject, CommandStart, ExceptionTypeFilter
from aiogram.types import ErrorEvent, Message

from shared.api_client import (
    ApiClient,
    ApiClientError,
    ConflictError,
    ForbiddenError,
    ValidationError,
    refusal_text,
)
from shared.api_client.schemas import UserCreate
from shared.chat import ChatUser, Conversation, TaskNotifier
from shared.chat.control import CONTROL_COMMANDS, CONTROL_HELP, ChatControl
from shared.chat.secret_prompt import SecretPrompts
from shared.contracts import ProjectCreate, TaskDTO

_log = structlog.get_logger("services.telegram_bot")

__all__ = ["HELP", "BotDeps", "build_router"]

HELP = (
    "Talk to me in plain words: your Product-Owner agent turns them into projects and tasks, "
    "and I show each task's progress here, ending with the commit or the URL.\n\n"
    "Quick commands:\n"
    "/projects — your projects\n"
    "/tasks — your latest tasks\n"
    "/status <task> — one task (its id, or the first characters of it)\n"
    "/new <name> — create a project\n" + CONTROL_HELP + "\n/help — this text"
)
ADMIN_HELP = "\n\nAdmins: /adduser <telegram_id> [admin] — let someone in."


@dataclass(frozen=True)
class BotDeps:
    """What the handlers use."""

    api: ApiClient
    conversation: Conversation
    notifier: TaskNotifier
    prompts: SecretPrompts


def _help(user: ChatUser) -> str:
    return HELP + (ADMIN_HELP if user.is_admin else "")


def _task_line(task: TaskDTO) -> str:
    return f"• {task.id[:8]} {task.type.value}: {task.status.value}"


async def _user_tasks(deps: BotDeps, user: ChatUser, limit: int) -> list[TaskDTO]:
    return (await deps.api.list_tasks(owner_id=user.user_id, limit=limit)).items


def build_router() -> Router:
    """The router with every handler of the bot."""
    router = Router(name="telegram-bot")

    @router.message(CommandStart())
    async def start(message: Message, user: ChatUser) -> None:
        await message.answer("Hello! I am the codegen orchestrator.\n\n" + _help(user))

    @router.message(Command("help"))
    async def help_(message: Message, user: ChatUser) -> None:
        await message.answer(_help(user))

    @router.message(Command("projects"))
    async def projects(message: Message, user: ChatUser, deps: BotDeps) -> None:
        page = await deps.api.list_projects(owner_id=user.user_id, limit=50)
        if not page.items:
            await message.answer("No projects yet. /new <name> creates one.")
            return
        lines = [f"• {p.name} — {p.status.value} (id {p.id[:8]})" for p in page.items]
        await message.answer("Your projects:\n" + "\n".join(lines))

    @router.message(Command("tasks"))
    async def tasks(message: Message, user: ChatUser, deps: BotDeps) -> None:
        items = await _user_tasks(deps, user, 10)
        if not items:
            await message.answer("No tasks yet. Tell me what to build.")
            return
        await message.answer("Your latest tasks:\n" + "\n".join(map(_task_line, items)))

    @router.message(Command("status"))
    async def status(
        message: Message, command: CommandObject, user: ChatUser, deps: BotDeps
    ) -> None:
        wanted = (command.args or "").strip()
        if not wanted:
            await message.answer("Usage: /status <task id>")
            return
        found = [t for t in await _user_tasks(deps, user, 200) if t.id.startswith(wanted)]
        if len(found) != 1:
            reason = "No task of yours" if not found else "Several tasks"
            await message.answer(f"{reason} matches {wanted!r}.")
            return
        task = found[0]
        lines = [_task_line(task), f"project {task.project_id[:8]}"]
        for name, value in (task.result or {}).items():
            if name in ("commit_sha", "branch", "deployed_url", "error"):
                lines.append(f"{name}: {value}")
        await message.answer("\n".join(lines))

    @router.message(Command("new"))
    async def new(message: Message, command: CommandObject, user: ChatUser, deps: BotDeps) -> None:
        name = (command.args or "").strip()
        if not name:
            await message.answer("Usage: /new <project name>")
            return
        try:
            project = await deps.api.create_project(ProjectCreate(name=name), owner_id=user.user_id)
        except ValidationError as error:
            await message.answer(f"That name cannot be used: {refusal_text(error)}")
            return
        await message.answer(f"Created project {project.name} (id {project.id}).")

    @router.message(Command("adduser"))
    async def adduser(
        message: Message, command: CommandObject, user: ChatUser, deps: BotDeps
    ) -> None:
        if not user.is_admin:
            await message.answer("Only admins can add users.")
            return
        args = (command.args or "").split()
        if not args or not args[0].isdigit() or int(args[0]) < 1:
            await message.answer("Usage: /adduser <telegram_id> [admin]")
            return
        is_admin = len(args) > 1 and args[1].lower() == "admin"
        try:
            added = await deps.api.create_user(
                UserCreate(telegram_id=int(args[0]), is_admin=is_admin)
            )
        except ConflictError:
            await message.answer(f"{args[0]} is already registered.")
            return
        except ForbiddenError:
            await message.answer("This bot's API credential cannot create users (admin needed).")
            return
        role = "an admin" if added.is_admin else "a user"
        await message.answer(f"Added {added.telegram_id} as {role} (user id {added.id}).")

    @router.message(Command(*CONTROL_COMMANDS))
    async def control(message: Message, user: ChatUser, deps: BotDeps) -> None:
        turn = f"tg-{message.chat.id}-{message.message_id}"  # the turn's id, as for free text
        _log.info("chat_control", correlation_id=turn, user_id=user.user_id)
        answer = await ChatControl(deps.api, deps.prompts).handle(
            user, message.text or "", correlation_id=turn
        )
        await message.answer(answer or _help(user))
        deps.notifier.wake()

    @router.message(F.text.startswith("/"))
    async def unknown_command(message: Message, user: ChatUser) -> None:
        await message.answer("I do not know that command.\n\n" + _help(user))

    @router.message(F.text)
    async def free_text(message: Message, user: ChatUser, deps: BotDeps) -> None:
        request_id = f"tg-{message.chat.id}-{message.message_id}"
        await deps.conversation.ask(user, message.text or "", request_id=request_id)
        deps.notifier.wake()

    @router.errors(ExceptionTypeFilter(ApiClientError))
    async def api_errors(event: ErrorEvent) -> None:
        message = event.update.message
        if message is not None:
            await message.answer(f"⚠️ The orchestrator API failed: {str(event.exception)[:300]}")

    return router
