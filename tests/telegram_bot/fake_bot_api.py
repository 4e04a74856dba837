"""A local HTTP server that speaks the Telegram Bot API methods our bot uses.

Real HTTP on 127.0.0.1: aiogram is pointed at it with `TelegramAPIServer.from_base(url)`.
Updates are queued by the test (`send_text`) and served by long-polling `getUpdates`;
messages the bot sends or edits are kept per chat, with their edit history, for assertions.
The users' messages are kept too (`from_users`), until the bot deletes one (`deleteMessage`,
recorded in `deleted`): `history(chat)` is what the chat would still show.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

JsonDict = dict[str, Any]


@dataclass
class SentMessage:
    """A message the bot sent, with every text it has had (the last is the current one)."""

    chat_id: int
    message_id: int
    texts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The current text."""
        return self.texts[-1]


class FakeBotApi:
    """The fake server: start(), send_text() as a user, then inspect what the bot did."""

    def __init__(self, *, bot_id: int = 777, username: str = "orchestrator_test_bot") -> None:
        self.bot_id = bot_id
        self.username = username
        self.calls: list[tuple[str, JsonDict]] = []
        self.messages: dict[int, list[SentMessage]] = {}
        self.from_users: dict[int, dict[int, str]] = {}
        """chat id → message id → text of the users' messages still in the chat."""
        self.deleted: list[tuple[int, int]] = []
        """(chat id, message id) of every message the bot deleted, in order."""
        self._updates: list[JsonDict] = []
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1000)
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def start(self) -> str:
        """Listen on a free port; returns the base URL for `TelegramAPIServer.from_base`."""
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()

    async def send_text(self, user_id: int, text: str, *, first_name: str = "User") -> None:
        """Queue a private text message from a user, as Telegram would deliver it."""
        update_id = next(self._update_ids)
        message_id = next(self._message_ids)
        self.from_users.setdefault(user_id, {})[message_id] = text
        message: JsonDict = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {"id": user_id, "type": "private", "first_name": first_name},
            "from": {"id": user_id, "is_bot": False, "first_name": first_name},
            "text": text,
        }
        if text.startswith("/"):
            command = text.split()[0]
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        async with self._changed:
            self._updates.append({"update_id": update_id, "message": message})
            self._changed.notify_all()

    def texts(self, chat_id: int) -> list[str]:
        """Current texts of every message the bot sent to a chat, in order."""
        return [message.text for message in self.messages.get(chat_id, [])]

    def history(self, chat_id: int) -> list[str]:
        """Every text a chat still shows (the users' and the bot's), oldest first."""
        texts = dict(self.from_users.get(chat_id, {}))
        texts.update({m.message_id: m.text for m in self.messages.get(chat_id, [])})
        return [texts[message_id] for message_id in sorted(texts)]

    def methods(self) -> list[str]:
        """Names of the methods called so far, in order."""
        return [method for method, _ in self.calls]

    async def wait_for(self, predicate: Callable[[], bool], *, timeout_s: float = 20.0) -> None:
        """Wait until `predicate()` holds (checked whenever the bot calls the server)."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(predicate), timeout_s)

    async def _dispatch(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await self._params(request)
        handler = getattr(self, f"_m_{method.lower()}", None)
        if method.lower() != "getupdates":
            self.calls.append((method, params))
        if handler is None:
            return web.json_response(
                {"ok": False, "error_code": 404, "description": f"Not Found: {method}"},
                status=404,
            )
        result = await handler(params)
        async with self._changed:
            self._changed.notify_all()
        return web.json_response({"ok": True, "result": result})

    @staticmethod
    async def _params(request: web.Request) -> JsonDict:
        if request.content_type == "application/json":
            body: JsonDict = await request.json()
            return body
        form = await request.post()
        params: JsonDict = {}
        for key, value in form.items():
            text = value if isinstance(value, str) else str(value)
            try:
                params[key] = json.loads(text)
            except ValueError:
                params[key] = text
        return params

    async def _m_getme(self, _params: JsonDict) -> JsonDict:
        return {"id": self.bot_id, "is_bot": True, "first_name": "Bot", "username": self.username}

    async def _m_deletewebhook(self, _params: JsonDict) -> bool:
        return True

    async def _m_setmycommands(self, _params: JsonDict) -> bool:
        return True

    async def _m_sendchataction(self, _params: JsonDict) -> bool:
        return True

    async def _m_getupdates(self, params: JsonDict) -> list[JsonDict]:
        offset = int(params.get("offset") or 0)
        timeout_s = float(params.get("timeout") or 0)
        async with self._changed:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
            if not self._updates and timeout_s > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._changed.wait_for(lambda: bool(self._updates)), min(timeout_s, 1.0)
                    )
            return list(self._updates)

    def _message(self, chat_id: int, message_id: int, text: str) -> JsonDict:
        return {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private"},
            "from": {"id": self.bot_id, "is_bot": True, "first_name": "Bot"},
            "text": text,
        }

    async def _m_sendmessage(self, params: JsonDict) -> JsonDict:
        chat_id = int(params["chat_id"])
        text = str(params["text"])
        if len(text) > 4096:
            raise web.HTTPBadRequest(text="message is too long")
        sent = SentMessage(chat_id=chat_id, message_id=next(self._message_ids), texts=[text])
        self.messages.setdefault(chat_id, []).append(sent)
        return self._message(chat_id, sent.message_id, text)

    async def _m_editmessagetext(self, params: JsonDict) -> JsonDict:
        chat_id = int(params["chat_id"])
        message_id = int(params["message_id"])
        text = str(params["text"])
        for sent in self.messages.get(chat_id, []):
            if sent.message_id == message_id:
                sent.texts.append(text)
                return self._message(chat_id, message_id, text)
        raise web.HTTPBadRequest(text="message to edit not found")

    async def _m_deletemessage(self, params: JsonDict) -> bool:
        chat_id = int(params["chat_id"])
        message_id = int(params["message_id"])
        if self.from_users.get(chat_id, {}).pop(message_id, None) is None:
            sent = self.messages.get(chat_id, [])
            kept = [m for m in sent if m.message_id != message_id]
            if len(kept) == len(sent):
                raise web.HTTPBadRequest(text="message to delete not found")
            self.messages[chat_id] = kept
        self.deleted.append((chat_id, message_id))
        return True
