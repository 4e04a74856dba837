"""The `codex` adapter: OpenAI's Codex CLI, `codex exec --json`.

Invocation: ``codex exec --json --skip-git-repo-check <sandbox flag> -c model_provider=...
[-m <model>] [resume <session>] -``, the prompt on stdin (never argv). The model provider is
always the adapter's own entry (``orchestrator``): the OpenAI Responses API at
``base_url`` (the setting, else ``OPENAI_BASE_URL`` of the agent's environment, else
OpenAI's), its key read by the CLI from ``OPENAI_API_KEY``, and bounded retries.

Every stdout line is a JSON event: ``thread.started`` (``thread_id``: the session),
``turn.started``, ``item.started`` / ``item.updated`` / ``item.completed`` (an ``item`` of
type ``agent_message``, ``reasoning``, ``command_execution``, ``file_change``,
``mcp_tool_call``, ``web_search``, ``todo_list`` or ``error``), ``turn.completed``
(``usage``), ``turn.failed`` (``error.message``) and top-level ``error`` (``message``:
reconnects, fatal errors).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Unpack

from services.worker_wrapper.agents.base import (
    ActivitySink,
    AgentActivity,
    AgentRequest,
    AgentResult,
)
from services.worker_wrapper.agents.cli_agent import CliAgent, CliOptions
from services.worker_wrapper.agents.kinds import CodexSandbox
from services.worker_wrapper.agents.metering import UsageRelay
from services.worker_wrapper.agents.stream_json import StreamJsonParser
from services.worker_wrapper.agents.streams import error_text

__all__ = ["CodexAgent", "CodexSandbox", "CodexStreamParser"]

"""`bypass`: no sandbox and no approvals (the worker is the sandbox); the others are Codex's
own sandbox modes (they need a kernel that allows them, and block network access)."""

OPENAI_BASE_URL = "https://api.openai.com/v1"
_PROVIDER = "orchestrator"
_COMMAND_CHARS = 160


class CodexStreamParser(StreamJsonParser):
    """Turns `codex exec --json` lines into activity and a result."""

    session_keys = ()
    """The session is `thread.started`'s `thread_id`."""

    def __init__(self, model: str | None = None) -> None:
        super().__init__()
        self.model = model
        self.usage: dict[str, Any] = {}
        self.turn_completed = False
        self.failure: str | None = None
        self.errors: list[str] = []

    @property
    def messages(self) -> list[str]:
        """The agent's messages so far."""
        return self.texts

    def usage_so_far(self) -> list[tuple[str | None, dict[str, Any]]]:
        """The usage of each model response a metering relay saw (a cap is set), else that
        of the turns completed so far (codex reports it only per turn)."""
        if self.metered:
            return list(self.metered)
        return [(self.model, self.usage)] if self.usage else []

    def handle(self, event: dict[str, Any]) -> list[AgentActivity]:
        """Map one event."""
        kind = event.get("type")
        if kind == "thread.started" and isinstance(event.get("thread_id"), str):
            self.session_id = event["thread_id"]
            return self.started()
        if kind == "item.completed" and isinstance(event.get("item"), dict):
            return self._item(event["item"])
        if kind == "turn.completed":
            self.turn_completed = True
            usage = event.get("usage")
            if isinstance(usage, dict):
                for key, value in usage.items():  # one exec may run several turns
                    if isinstance(value, int | float):
                        self.usage[key] = self.usage.get(key, 0) + value
            return []
        if kind == "turn.failed":
            error = event.get("error")
            message = error.get("message") if isinstance(error, dict) else None
            self.failure = str(message or "the turn failed")
            return [AgentActivity("warning", self.failure[:200])]
        if kind == "error":
            message = str(event.get("message") or "error")
            self.errors.append(message)
            return [AgentActivity("warning", message[:200])]
        return []

    def _item(self, item: dict[str, Any]) -> list[AgentActivity]:
        kind = item.get("type")
        if kind == "agent_message" and isinstance(item.get("text"), str):
            return self.text(item["text"])
        if kind == "command_execution":
            command = str(item.get("command") or "").replace("\n", " ")[:_COMMAND_CHARS]
            code = item.get("exit_code")
            outcome = "unknown" if code is None else ("ok" if code == 0 else f"exit {code}")
            self.tool_call("shell", None, target=command, outcome=outcome)
            suffix = f" (exit {code})" if code is not None else ""
            return [AgentActivity("tool", f"shell: {command}{suffix}")]
        if kind == "file_change" and isinstance(item.get("changes"), list):
            found = []
            ok = item.get("status") in (None, "completed")
            for change in item["changes"]:
                if isinstance(change, dict) and isinstance(change.get("path"), str):
                    what = str(change.get("kind", "edit"))
                    found += self.tool_call(
                        what,
                        {"path": change["path"]},
                        outcome="ok" if ok else f"error: {item.get('status')}",
                    )
            return found
        if kind == "mcp_tool_call":
            name = f"{item.get('server', 'mcp')}.{item.get('tool', '?')}"
            return self.tool_call(name, None)
        if kind == "web_search":
            return self.tool_call("web_search", {"query": str(item.get("query", ""))})
        if kind == "error" and isinstance(item.get("message"), str):
            return [AgentActivity("warning", item["message"][:200])]
        return []

    def finish(self, *, exit_code: int, stderr_tail: str) -> AgentResult:
        """The result once the CLI exited."""
        if self.failure is not None or exit_code != 0 or not self.turn_completed:
            reason = self.failure or (self.errors[-1] if self.errors else None)
            message = (
                f"the model API failed: {reason}"
                if reason
                else "codex exited without completing its turn"
            )
            return AgentResult(
                status="error",
                response=self.partial() or None,
                error=error_text(message, exit_code=exit_code, stderr_tail=stderr_tail),
                session_id=self.session_id,
                usage=dict(self.usage),
                exit_code=exit_code,
            )
        return AgentResult(
            status="success",
            response=self.messages[-1] if self.messages else "",
            session_id=self.session_id,
            usage=dict(self.usage),
            exit_code=exit_code,
        )


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


class CodexAgent(CliAgent):
    """OpenAI's Codex through its CLI (`codex exec --json`)."""

    name = "codex"
    supports_sessions = True

    def __init__(
        self,
        command: Sequence[str] = ("codex",),
        *,
        model: str | None = None,
        base_url: str | None = None,
        sandbox: CodexSandbox = "bypass",
        max_retries: int = 2,
        extra_args: Sequence[str] = (),
        **options: Unpack[CliOptions],
    ) -> None:
        super().__init__(command, **options)
        self.model = model
        self.base_url = base_url
        self.sandbox: CodexSandbox = sandbox
        self.max_retries = max_retries
        self.extra_args = list(extra_args)

    def upstream(self, env: Mapping[str, str]) -> str:
        """The model API's base URL: the setting, else the environment's, else OpenAI's."""
        return self.base_url or env.get("OPENAI_BASE_URL") or OPENAI_BASE_URL

    def provider(self, env: Mapping[str, str], base_url: str | None = None) -> str:
        """The `-c` value defining the adapter's model provider (no secret: the CLI reads
        the key from `OPENAI_API_KEY` itself); `base_url` overrides the upstream (a
        metering relay)."""
        base_url = base_url or self.upstream(env)
        fields = {
            "name": _toml_string("orchestrator (OpenAI Responses API)"),
            "base_url": _toml_string(base_url),
            "env_key": _toml_string("OPENAI_API_KEY"),
            "wire_api": _toml_string("responses"),
            "request_max_retries": str(self.max_retries),
            "stream_max_retries": str(self.max_retries),
        }
        body = ", ".join(f"{key} = {value}" for key, value in fields.items())
        return f"model_providers.{_PROVIDER}={{ {body} }}"

    def argv(
        self, session_id: str | None, env: Mapping[str, str], base_url: str | None = None
    ) -> list[str]:
        """The command line for one prompt (read from stdin: the final `-`)."""
        argv = [*self.command, "exec", "--json", "--skip-git-repo-check"]
        if self.sandbox == "bypass":
            argv.append("--dangerously-bypass-approvals-and-sandbox")
        else:
            argv += ["--sandbox", self.sandbox]
        provider = self.provider(env, base_url)
        argv += ["-c", f"model_provider={_toml_string(_PROVIDER)}", "-c", provider]
        if self.model:
            argv += ["--model", self.model]
        argv += self.extra_args
        if session_id:
            argv += ["resume", session_id]
        return [*argv, "-"]

    def environment(self) -> dict[str, str]:
        """The adapter's defaults for the CLI's environment (the worker's own win)."""
        return {"NO_COLOR": "1"}

    async def run(self, request: AgentRequest, on_activity: ActivitySink) -> AgentResult:
        """Run one prompt through `codex exec`. Under a cap, the CLI talks to its model API
        through a metering relay: each response's usage is priced as it passes, so the
        run is stopped within one model request of the cap, not at the turn's end."""
        parser = CodexStreamParser(self.model)
        if not self._budgets():
            return await self._run(request, on_activity, parser, None)
        try:
            relay = UsageRelay(
                self.upstream(request.env), parser.add_metered_usage, lambda: parser.over_budget
            )
        except ValueError as exc:
            return AgentResult(status="error", error=str(exc))
        async with relay:
            return await self._run(request, on_activity, parser, relay.base_url)

    async def _run(
        self,
        request: AgentRequest,
        on_activity: ActivitySink,
        parser: CodexStreamParser,
        base_url: str | None,
    ) -> AgentResult:
        return await self.run_parsed(
            self.argv(request.session_id, request.env, base_url),
            request,
            parser,
            on_activity,
            stdin_text=request.prompt,
            extra_env=self.environment(),
        )
