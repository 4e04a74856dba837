"""Scripted model APIs for the real agent CLIs: Anthropic Messages and OpenAI Responses.

A `ModelScript` is a list of turns; each conversation request the CLI makes (one that offers
tools) takes the next turn. A turn is either a `Reply` (text and tool calls, with usage) or a
`Failure` (an HTTP error status, a stream dropped halfway, or one that hangs). Side requests
a CLI makes on its own (a title, a quota probe: requests without tools) get a short text
answer and do not advance the script. When the script is used up, every further
conversation request gets the last turn's text as a plain final answer, so a CLI never
waits for a reply that will not come.

The servers listen on 127.0.0.1 only, answer every request within the script's delays,
and record each request body (for assertions on what the CLI sent).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "AnthropicFake",
    "Failure",
    "ModelScript",
    "OpenAIFake",
    "Reply",
    "ToolCall",
    "serve_anthropic",
    "serve_openai",
    "session_of",
]


@dataclass(frozen=True)
class ToolCall:
    """One tool the scripted model calls: the CLI's own tool name and its input."""

    name: str
    input: dict[str, Any]


@dataclass(frozen=True)
class Reply:
    """One model turn: text, then tool calls (none: the turn ends the conversation)."""

    text: str = ""
    tools: tuple[ToolCall, ...] = ()
    input_tokens: int = 100
    output_tokens: int = 20
    delay_s: float = 0.0
    """Wait this long before answering (a slow model, for timeouts)."""


@dataclass(frozen=True)
class Failure:
    """One model turn that fails: an HTTP status with an error body, or a dropped stream."""

    status: int = 500
    drop_stream: bool = False
    """Answer 200, send the first events, then close the connection mid-stream."""
    hang_s: float = 0.0
    """Answer 200, send the first events, then nothing for this long (a model API that
    hangs mid-stream; cut short when the server stops), then close the connection."""
    message: str = "scripted failure"

    @property
    def streams(self) -> bool:
        """True when the failure answers 200 and starts a stream (dropped or hanging)."""
        return self.drop_stream or self.hang_s > 0


Turn = Reply | Failure


@dataclass
class ModelScript:
    """The turns of a scripted model, consumed in order by conversation requests."""

    turns: list[Turn]
    repeat_failures: bool = False
    """A `Failure` as the last turn answers every later request too (retries fail)."""
    requests: list[dict[str, Any]] = field(default_factory=list)
    """Every request body received (conversation and side requests), in order."""
    paths: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    """The headers of every request, in order (lower-case names)."""
    arrived: list[float] = field(default_factory=list)
    """When each request arrived (`time.monotonic()`), in order."""
    served: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopped: threading.Event = field(default_factory=threading.Event)
    """Set when the server stops: a hanging answer ends."""

    def next_turn(self) -> Turn:
        """The turn for the next conversation request."""
        with self.lock:
            if self.served < len(self.turns):
                turn = self.turns[self.served]
                self.served += 1
                return turn
            self.served += 1
            last = self.turns[-1] if self.turns else Reply(text="done")
            if isinstance(last, Failure) and self.repeat_failures:
                return last
            return Reply(text=last.text if isinstance(last, Reply) else "done")

    @property
    def conversation_requests(self) -> int:
        """How many conversation requests were answered."""
        return self.served


def session_of(body: dict[str, Any]) -> str | None:
    """The Claude Code session a Messages API request belongs to: the CLI sends it in
    `metadata.user_id` (a JSON object with `session_id`); None when the body has none."""
    metadata = body.get("metadata")
    raw = metadata.get("user_id") if isinstance(metadata, dict) else None
    try:
        value = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        return None
    session = value.get("session_id") if isinstance(value, dict) else None
    return session if isinstance(session, str) and session else None


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


class _Handler(BaseHTTPRequestHandler):
    """Shared plumbing: body decoding, JSON answers, SSE headers, quiet logs."""

    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # base signature
        """No request logging on stderr."""

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            value = json.loads(raw or b"{}")
        except ValueError:
            value = {"_raw": raw.decode(errors="replace")}
        return value if isinstance(value, dict) else {"_value": value}

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _start_sse(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def _record(self, body: dict[str, Any]) -> None:
        script = self.server.script
        with script.lock:
            script.requests.append(body)
            script.paths.append(self.path)
            script.headers.append({k.lower(): v for k, v in self.headers.items()})
            script.arrived.append(time.monotonic())

    def do_GET(self) -> None:
        """Probes some CLIs make (models list, health): a small valid answer."""
        self._record({"_get": self.path})
        if "models" in self.path:
            self._json(200, {"data": [], "object": "list", "models": []})
        else:
            self._json(200, {})

    def do_HEAD(self) -> None:
        """Connectivity checks."""
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler: type[_Handler], script: ModelScript) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.script = script

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


# Anthropic Messages API ------------------------------------------------------------------


def _anthropic_error(status: int, message: str) -> dict[str, Any]:
    kind = {529: "overloaded_error", 429: "rate_limit_error", 401: "authentication_error"}
    return {"type": "error", "error": {"type": kind.get(status, "api_error"), "message": message}}


class _AnthropicHandler(_Handler):
    def do_POST(self) -> None:
        """`/v1/messages` (streaming or not) and `/v1/messages/count_tokens`."""
        body = self._body()
        self._record(body)
        path = self.path.split("?")[0]
        if path.endswith("/count_tokens"):
            self._json(200, {"input_tokens": 100})
            return
        if not path.endswith("/v1/messages"):
            self._json(404, _anthropic_error(404, f"no route {path}"))
            return
        model = str(body.get("model") or "claude-fake")
        if not body.get("tools"):  # a side request (title, quota probe): not the script
            self._answer(body, model, Reply(text="ok", input_tokens=1, output_tokens=1))
            return
        turn = self.server.script.next_turn()
        if isinstance(turn, Failure) and not turn.streams:
            self._json(turn.status, _anthropic_error(turn.status, turn.message))
            return
        if isinstance(turn, Failure):
            self._start_sse()
            self.wfile.write(_sse("message_start", self._message_start(model, 10)))
            self.wfile.flush()
            self.server.script.stopped.wait(turn.hang_s)
            return  # the connection closes without message_stop
        if turn.delay_s:
            time.sleep(turn.delay_s)
        self._answer(body, model, turn)

    @staticmethod
    def _message_start(model: str, input_tokens: int) -> dict[str, Any]:
        message: dict[str, Any] = {
            "id": f"msg_{uuid.uuid4().hex[:20]}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": input_tokens,
                "output_tokens": 1,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        }
        return {"type": "message_start", "message": message}

    def _answer(self, body: dict[str, Any], model: str, turn: Reply) -> None:
        blocks: list[dict[str, Any]] = []
        if turn.text:
            blocks.append({"type": "text", "text": turn.text})
        for call in turn.tools:
            blocks.append(
                {
                    "type": "tool_use",
                    "id": f"toolu_{uuid.uuid4().hex[:20]}",
                    "name": call.name,
                    "input": call.input,
                }
            )
        stop = "tool_use" if turn.tools else "end_turn"
        usage = {"input_tokens": turn.input_tokens, "output_tokens": turn.output_tokens}
        if not body.get("stream"):
            self._json(
                200,
                {
                    "id": f"msg_{uuid.uuid4().hex[:20]}",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": blocks,
                    "stop_reason": stop,
                    "stop_sequence": None,
                    "usage": usage,
                },
            )
            return
        self._start_sse()
        out = [_sse("message_start", self._message_start(model, turn.input_tokens))]
        for index, block in enumerate(blocks):
            start: dict[str, Any]
            if block["type"] == "text":
                start = {"type": "text", "text": ""}
                delta = {"type": "text_delta", "text": block["text"]}
            else:
                start = {**block, "input": {}}
                delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
            out.append(
                _sse(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": start},
                )
            )
            out.append(
                _sse(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            )
            out.append(_sse("content_block_stop", {"type": "content_block_stop", "index": index}))
        out.append(
            _sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": turn.output_tokens},
                },
            )
        )
        out.append(_sse("message_stop", {"type": "message_stop"}))
        self.wfile.write(b"".join(out))
        self.wfile.flush()


# OpenAI Responses API --------------------------------------------------------------------


class _OpenAIHandler(_Handler):
    def do_POST(self) -> None:
        """`/v1/responses` (streaming), as the Codex CLI calls it."""
        body = self._body()
        self._record(body)
        path = self.path.split("?")[0]
        if not path.endswith("/responses"):
            self._json(404, {"error": {"message": f"no route {path}", "type": "not_found"}})
            return
        given = body.get("input")
        offers_tools = bool(body.get("tools")) or any(
            isinstance(item, dict) and item.get("type") == "additional_tools"
            for item in (given if isinstance(given, list) else [])
        )
        if not offers_tools:
            turn: Turn = Reply(text="ok", input_tokens=1, output_tokens=1)
        else:
            turn = self.server.script.next_turn()
        if isinstance(turn, Failure) and not turn.streams:
            error = {"message": turn.message, "type": "server_error", "code": None}
            self._json(turn.status, {"error": error})
            return
        response_id = f"resp_{uuid.uuid4().hex[:20]}"
        self._start_sse()
        created = {"id": response_id, "object": "response", "status": "in_progress"}
        self.wfile.write(
            _sse("response.created", {"type": "response.created", "response": created})
        )
        self.wfile.flush()
        if isinstance(turn, Failure):
            self.server.script.stopped.wait(turn.hang_s)
            return  # dropped (after the hang): no response.completed
        if turn.delay_s:
            time.sleep(turn.delay_s)
        out: list[bytes] = []
        items: list[dict[str, Any]] = []
        if turn.text:
            items.append(
                {
                    "type": "message",
                    "id": f"msg_{uuid.uuid4().hex[:16]}",
                    "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": turn.text, "annotations": []}],
                }
            )
        for call in turn.tools:
            items.append(
                {
                    "type": "function_call",
                    "id": f"fc_{uuid.uuid4().hex[:16]}",
                    "call_id": f"call_{uuid.uuid4().hex[:16]}",
                    "name": call.name,
                    "arguments": json.dumps(call.input),
                    "status": "completed",
                }
            )
        for index, item in enumerate(items):
            out.append(
                _sse(
                    "response.output_item.added",
                    {"type": "response.output_item.added", "output_index": index, "item": item},
                )
            )
            if item["type"] == "message":
                out.append(
                    _sse(
                        "response.output_text.delta",
                        {
                            "type": "response.output_text.delta",
                            "item_id": item["id"],
                            "output_index": index,
                            "content_index": 0,
                            "delta": turn.text,
                        },
                    )
                )
            out.append(
                _sse(
                    "response.output_item.done",
                    {"type": "response.output_item.done", "output_index": index, "item": item},
                )
            )
        usage = {
            "input_tokens": turn.input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": turn.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": turn.input_tokens + turn.output_tokens,
        }
        completed = {**created, "status": "completed", "output": items, "usage": usage}
        out.append(
            _sse("response.completed", {"type": "response.completed", "response": completed})
        )
        self.wfile.write(b"".join(out))
        self.wfile.flush()


# servers ---------------------------------------------------------------------------------


@dataclass
class _Running:
    url: str
    script: ModelScript


AnthropicFake = _Running
OpenAIFake = _Running


@contextmanager
def _serve(handler: type[_Handler], script: ModelScript) -> Iterator[_Running]:
    server = _Server(handler, script)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield _Running(url=server.url, script=script)
    finally:
        script.stopped.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def serve_anthropic(script: ModelScript) -> Iterator[AnthropicFake]:
    """A scripted Anthropic Messages API on 127.0.0.1 (its `url` is the base URL)."""
    with _serve(_AnthropicHandler, script) as running:
        yield running


@contextmanager
def serve_openai(script: ModelScript) -> Iterator[OpenAIFake]:
    """A scripted OpenAI Responses API on 127.0.0.1 (its `url` + `/v1` is the base URL)."""
    with _serve(_OpenAIHandler, script) as running:
        yield running
