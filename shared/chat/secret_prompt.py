"""`SecretPrompts`: a secret asked for in the chat, taken from the user's next message.

A prompt is started by the user (`/secret <project> NAME`) or by the PO agent, whose answer
holds the line `[[ask-secret <project> NAME]]` (the front door removes that line and asks in
its place). While a prompt is open, the user's next message that is not a command is the
value: the front door stores it through the API (`PUT /api/projects/{id}/secrets/{NAME}`),
answers "NAME stored for <project>", and never relays it to the PO agent. `/cancel` ends the
prompt without storing anything; other commands work as usual and leave it open.

The open prompt is a Redis record per front door and user (`chat:{door}:secret-prompt:{user}`:
project, name, expiry; never a value), so it survives a restart of the front door. It expires
after `ttl_s` (10 minutes by default): a message that arrives later is neither stored nor
relayed (the user is told the prompt expired), and the record itself is gone a day later.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass

import redis.asyncio as aioredis

from shared.api_client import (
    ApiClient,
    ApiClientError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    ValidationError,
    refusal_text,
)
from shared.api_client.schemas import SECRET_NAME_PATTERN
from shared.chat.po_profile import ask_secret_line
from shared.chat.sink import ChatUser
from shared.contracts import ProjectDTO

__all__ = [
    "ASK_SECRET_MARKER",
    "DEFAULT_PROMPT_TTL_S",
    "SecretPrompt",
    "SecretPrompts",
    "ask_secret_line",
    "secret_prompt_key",
]

DEFAULT_PROMPT_TTL_S = 600.0
_KEEP_EXPIRED_S = 86400
"""How long an expired prompt's record stays, so a late value is recognised, not relayed."""
_SCAN = 200
ASK_SECRET_MARKER = re.compile(
    r"^[ \t]*\[\[ask-secret[ \t]+(?P<project>\S+)[ \t]+(?P<name>[^\s\]]+)[ \t]*\]\][ \t]*$\n?",
    re.MULTILINE,
)
"""The line of a PO answer asking the front door to take the next message as a secret."""
_NAME = re.compile(SECRET_NAME_PATTERN)


def secret_prompt_key(door: str, user_id: int) -> str:
    """The open secret prompt of a user at a front door (JSON; never a value)."""
    return f"chat:{door}:secret-prompt:{user_id}"


@dataclass(frozen=True)
class SecretPrompt:
    """An open prompt: which secret of which project the next message is."""

    project_id: str
    project_name: str
    name: str
    expires_at: float

    @property
    def expired(self) -> bool:
        """Whether the prompt ran out (its record still exists to catch a late value)."""
        return time.time() >= self.expires_at


class SecretPrompts:
    """Opens, answers and cancels secret prompts of one front door."""

    def __init__(
        self,
        api: ApiClient,
        redis: aioredis.Redis,
        door: str,
        *,
        ttl_s: float = DEFAULT_PROMPT_TTL_S,
    ) -> None:
        self.api = api
        self.redis = redis
        self.door = door
        self.ttl_s = ttl_s

    async def ask(self, user: ChatUser, project_ref: str, name: str) -> str:
        """Open a prompt for `name` of the user's project `project_ref` (its name or id);
        the text to show. A bad project or name opens nothing and says why."""
        if not _NAME.match(name):
            return (
                f"Not asking: {name[:64]!r} is not a secret name (an environment variable "
                "name: letters, digits and _, not starting with a digit)."
            )
        project = await self._project(user, project_ref)
        if project is None:
            return f"Not asking: you have no project {project_ref[:64]!r}."
        prompt = SecretPrompt(project.id, project.name, name, time.time() + self.ttl_s)
        await self.redis.set(
            secret_prompt_key(self.door, user.user_id),
            json.dumps(asdict(prompt)),
            ex=int(self.ttl_s) + _KEEP_EXPIRED_S,
        )
        minutes = max(1, round(self.ttl_s / 60))
        return (
            f"🔑 Send the value of {name} for {project.name} as your next message. It is "
            "stored encrypted, never shown again and never passed to your PO agent"
            " (in Telegram, your message is deleted). "
            f"This prompt expires in {minutes} min; /cancel to abort."
        )

    async def pending(self, user: ChatUser) -> SecretPrompt | None:
        """The user's open (or recently expired) prompt."""
        raw = await self.redis.get(secret_prompt_key(self.door, user.user_id))
        if raw is None:
            return None
        data = json.loads(raw)
        return SecretPrompt(
            project_id=str(data["project_id"]),
            project_name=str(data["project_name"]),
            name=str(data["name"]),
            expires_at=float(data["expires_at"]),
        )

    async def take(self, user: ChatUser, prompt: SecretPrompt, value: str) -> str:
        """Store `value` as the prompt's secret (or refuse it); the answer, never the value.

        An expired prompt stores nothing. A value the API refuses leaves the prompt open."""
        key = secret_prompt_key(self.door, user.user_id)
        if prompt.expired:
            await self.redis.delete(key)
            return (
                f"The prompt for {prompt.name} of {prompt.project_name} had expired: your "
                "message was not stored and not passed on. Ask again with "
                f"/secret {prompt.project_name} {prompt.name}"
            )
        try:
            await self.api.put_secret(prompt.project_id, prompt.name, value.strip())
        except ValidationError as error:
            return f"Not stored: {refusal_text(error)}. Send the value again, or /cancel."
        except (NotFoundError, ForbiddenError, ConflictError) as error:
            await self.redis.delete(key)
            return f"Not stored: {refusal_text(error)}"
        except ApiClientError as error:  # the API is down or failed: the value may be re-sent
            return (
                f"Not stored: the orchestrator API failed ({type(error).__name__}). "
                "Send the value again, or /cancel."
            )
        await self.redis.delete(key)
        return (
            f"✅ {prompt.name} stored for {prompt.project_name}. "
            "The next deploy hands it to the project."
        )

    async def intercept(self, user: ChatUser, text: str) -> tuple[str, bool] | None:
        """What an open prompt makes of an incoming message: `(answer, True)` when the message
        was the value (stored or refused: the front door deletes it), `(answer, False)` for
        `/cancel`, None when no prompt is open or the message is another command."""
        prompt = await self.pending(user)
        if prompt is None:
            return None
        stripped = text.strip()
        if stripped.startswith("/"):
            command = stripped.split()[0][1:].split("@", 1)[0].lower()
            if command == "cancel":
                await self.redis.delete(secret_prompt_key(self.door, user.user_id))
                return f"Cancelled: {prompt.name} of {prompt.project_name} was not set.", False
            return None
        return await self.take(user, prompt, text), True

    async def from_answer(self, user: ChatUser, text: str) -> str:
        """A PO answer with its `[[ask-secret ...]]` line replaced by the prompt (the last
        such line wins; a bad one is answered with why nothing was asked)."""
        asks = list(ASK_SECRET_MARKER.finditer(text))
        if not asks:
            return text
        cleaned = ASK_SECRET_MARKER.sub("", text).rstrip()
        last = asks[-1]
        try:
            prompt = await self.ask(user, last["project"], last["name"])
        except ApiClientError as error:
            prompt = (
                f"⚠️ I could not ask for {last['name']}: the API failed ({type(error).__name__})."
            )
        return f"{cleaned}\n\n{prompt}" if cleaned else prompt

    async def _project(self, user: ChatUser, ref: str) -> ProjectDTO | None:
        projects = (await self.api.list_projects(owner_id=user.user_id, limit=_SCAN)).items
        for project in projects:
            if ref in (project.name, project.id):
                return project
        return None
