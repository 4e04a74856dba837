"""A usage-metering relay between an agent CLI and its model API.

Some CLIs report token usage only when their turn ends (`codex exec --json` writes it in
`turn.completed`, after every model request of the prompt). To hold a cost cap within one
model request, the wrapper points such a CLI at a relay of its own on 127.0.0.1: each
request is forwarded unchanged to the real API (headers, key and body pass through in
memory only), the response is streamed back as it arrives, and the usage each response
reports is handed to `on_usage` the moment it passes:

- the OpenAI Responses API's `response.completed`;
- the Anthropic Messages stream's `message_start` (the input tokens, known before the model
  writes anything) and `message_delta` (the output tokens, cumulative: only the increase
  is reported), so a cap is reached as soon as a response's input is priced;
- OpenAI Chat Completions' final chunk (`usage` with `prompt_tokens` /
  `completion_tokens`), and a plain JSON body's `usage` of any of these APIs.

The relay answers one request per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx

__all__ = ["UsageRelay", "openai_usage", "usage_record"]

UsageSink = Callable[[str | None, dict[str, Any]], None]
"""Called with (model, usage record) for each model response that reports its usage."""

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}
_NOT_FORWARDED = _HOP_BY_HOP | {"accept-encoding"}
"""The relay asks for an uncompressed body, to read the usage in it."""
_NOT_RETURNED = _HOP_BY_HOP | {"content-encoding"}
"""The body is returned decoded, close-delimited."""
_MAX_HEAD_BYTES = 256 * 1024


def openai_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """A Responses API usage object as the price table counts it (cached input apart)."""
    record: dict[str, Any] = {}
    for key in ("input_tokens", "output_tokens"):
        if isinstance(usage.get(key), int):
            record[key] = usage[key]
    details = usage.get("input_tokens_details")
    if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
        record["cached_input_tokens"] = details["cached_tokens"]
    return record


_ANTHROPIC_KEYS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)


def usage_record(usage: dict[str, Any]) -> dict[str, Any]:
    """A usage object of the Responses, Chat Completions or Messages API as the price table
    counts it (OpenAI's cached input apart, as `cached_input_tokens`)."""
    if "prompt_tokens" in usage or "completion_tokens" in usage:  # Chat Completions
        record: dict[str, Any] = {}
        for key, name in (
            ("prompt_tokens", "input_tokens"),
            ("completion_tokens", "output_tokens"),
        ):
            if isinstance(usage.get(key), int):
                record[name] = usage[key]
        details = usage.get("prompt_tokens_details")
        if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
            record["cached_input_tokens"] = details["cached_tokens"]
        return record
    if "input_tokens_details" in usage:
        return openai_usage(usage)
    return {key: usage[key] for key in _ANTHROPIC_KEYS if isinstance(usage.get(key), int)}


class _UsageScanner:
    """Finds the usage in a response body as its bytes pass (SSE `data:` lines or JSON)."""

    def __init__(self, on_usage: UsageSink, request_model: str | None) -> None:
        self.on_usage = on_usage
        self.model = request_model
        self.buffer = b""
        self.sse = False
        self.message_usage: dict[str, int] = {}
        """What this response's Anthropic events reported so far (counts are cumulative)."""

    def feed(self, chunk: bytes) -> None:
        self.buffer += chunk
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            line = line.strip()
            if line.startswith(b"data:"):
                self.sse = True
                self._event(line[5:].strip())

    def close(self) -> None:
        """The body ended: a non-streamed JSON body is read whole."""
        if not self.sse and self.buffer.strip():
            self._event(self.buffer.strip())

    def _event(self, data: bytes) -> None:
        try:
            event = json.loads(data)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        if kind in ("message_start", "message_delta"):
            self._anthropic(event)
            return
        response = event.get("response") if kind == "response.completed" else event
        if isinstance(response, dict) and isinstance(response.get("usage"), dict):
            model = response.get("model") if isinstance(response.get("model"), str) else None
            self.on_usage(model or self.model, usage_record(response["usage"]))

    def _anthropic(self, event: dict[str, Any]) -> None:
        """A Messages stream event: report what its cumulative usage adds."""
        message = event.get("message") if event.get("type") == "message_start" else event
        if not isinstance(message, dict) or not isinstance(message.get("usage"), dict):
            return
        if isinstance(message.get("model"), str) and message["model"]:
            self.model = message["model"]
        added: dict[str, Any] = {}
        for key, value in usage_record(message["usage"]).items():
            increase = value - self.message_usage.get(key, 0)
            if increase > 0:
                added[key] = increase
                self.message_usage[key] = value
        if added:
            self.on_usage(self.model, added)


class UsageRelay:
    """`async with UsageRelay(upstream, on_usage) as relay:` point the CLI at
    `relay.base_url` (the upstream's path on the relay's own address)."""

    def __init__(
        self, upstream: str, on_usage: UsageSink, closed: Callable[[], bool] | None = None
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"the model API's base URL is not http(s): {upstream!r}")
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.host = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        """The origin without any user or password (for error texts)."""
        self.path = parts.path.rstrip("/")
        self.on_usage = on_usage
        self.closed = closed or (lambda: False)
        """True once the run reached its cap: a new request is answered with an error
        without reaching the model (a response already under way is relayed whole, so its
        usage is counted as the model bills it)."""
        self._server: asyncio.Server | None = None
        self._client: httpx.AsyncClient | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def base_url(self) -> str:
        """The base URL the CLI is given."""
        assert self._server is not None, "the relay is not running"
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}{self.path}"

    async def __aenter__(self) -> UsageRelay:
        timeout = httpx.Timeout(None, connect=30.0)
        self._client = httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._relay(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass  # the CLI went away (killed at a cap) or sent garbage: nothing to answer
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > _MAX_HEAD_BYTES:
            raise ValueError("request head too large")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers: list[tuple[str, str]] = []
        length = 0
        chunked = False
        for line in lines[1:]:
            if ":" not in line:
                continue
            name, value = line.split(":", 1)
            name, value = name.strip(), value.strip()
            lowered = name.lower()
            if lowered == "content-length":
                length = int(value)
            elif lowered == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            if lowered not in _NOT_FORWARDED:
                headers.append((name, value))
        body = await _read_chunked(reader) if chunked else await reader.readexactly(length)
        if self.closed():
            await _refuse(writer, 402, "Payment Required", "the task's budget is spent")
            return
        assert self._client is not None
        request = self._client.build_request(
            method,
            self.origin + target,
            headers=[*headers, ("Accept-Encoding", "identity")],
            content=body,
        )
        scanner = _UsageScanner(self.on_usage, _request_model(body))
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            reason = f"the relay cannot reach {self.host}: {type(exc).__name__}"
            await _refuse(writer, 502, "Bad Gateway", reason)
            return
        try:
            status = f"HTTP/1.1 {response.status_code} {response.reason_phrase or 'Status'}\r\n"
            out = [status.encode("latin-1")]
            for name, value in response.headers.multi_items():
                if name.lower() not in _NOT_RETURNED:
                    out.append(f"{name}: {value}\r\n".encode("latin-1"))
            out.append(b"Connection: close\r\n\r\n")
            writer.write(b"".join(out))
            await writer.drain()
            async for chunk in response.aiter_bytes():
                writer.write(chunk)
                await writer.drain()
                if response.status_code < 400:
                    scanner.feed(chunk)
            if response.status_code < 400:
                scanner.close()
        finally:
            await response.aclose()


async def _refuse(writer: asyncio.StreamWriter, code: int, phrase: str, reason: str) -> None:
    """Answer the CLI with an error of the relay's own (JSON, as the model APIs do)."""
    message = json.dumps({"error": {"message": reason}}).encode()
    writer.write(
        f"HTTP/1.1 {code} {phrase}\r\nContent-Type: application/json\r\n".encode()
        + f"Content-Length: {len(message)}\r\nConnection: close\r\n\r\n".encode()
        + message
    )
    await writer.drain()


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return body
        body += await reader.readexactly(size)
        await reader.readexactly(2)


def _request_model(body: bytes) -> str | None:
    try:
        value = json.loads(body)
    except ValueError:
        return None
    model = value.get("model") if isinstance(value, dict) else None
    return model if isinstance(model, str) else None
