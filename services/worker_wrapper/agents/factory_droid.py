"""The `factory-droid` adapter: `droid exec` in its headless stream-json mode.

Invocation: ``droid exec --output-format stream-json --auto <low|medium|high>
[--session-id <id>] --file <prompt file>``; the prompt is written to a file in the worker's
private directory, never put in argv. Every stdout line is a JSON event: ``system``
(``init`` carries ``session_id``), ``message`` (``role``, ``text``), ``tool_call``
(``toolName``, ``parameters``), ``tool_result`` (``isError``), ``error`` (``message``) and one final
``completion`` (``finalText``, ``session_id``, ``usage``).

The CLI signs in to Factory with ``FACTORY_API_KEY``; a model of the user's own (BYOK: a
``customModels`` entry of ``~/.factory/settings.json``, chosen with ``model``
``custom:<displayName>-<index>``) talks to that model's API directly.

With a `DroidByok` setting the adapter configures that model itself: before each run it
writes a ``settings.json`` into a Factory home of the worker's own (``FACTORY_HOME_OVERRIDE``,
the CLI's switch for where its ``.factory`` lives): the user's own
``$HOME/.factory/settings.json`` when there is one, with the system's model added to its
``customModels``. The entry names the key's variable (``"apiKey": "${NAME}"``, which the CLI
expands from its environment), never a value. Under a cap the entry's base URL is a
metering relay of the wrapper (`metering.py`) in front of the model's API, so the cap holds
within one model request; otherwise it is the model's API itself.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Unpack

from services.worker_wrapper.agents.base import (
    ActivitySink,
    AgentActivity,
    AgentRequest,
    AgentResult,
)
from services.worker_wrapper.agents.cli_agent import CliAgent, CliOptions, write_prompt_file
from services.worker_wrapper.agents.kinds import AutonomyLevel
from services.worker_wrapper.agents.metering import UsageRelay
from services.worker_wrapper.agents.stream_json import StreamJsonParser
from services.worker_wrapper.agents.streams import error_text
from shared.droid_byok import DroidByok

__all__ = ["AutonomyLevel", "DroidByok", "DroidStreamParser", "FactoryDroidAgent"]


def byok_settings(
    byok: DroidByok, base_url: str, user_settings: Mapping[str, Any]
) -> tuple[dict[str, Any], str]:
    """`user_settings` with the system's model as the last of its `customModels` (an entry
    of the same display name is replaced), and the `--model` that selects it."""
    settings = dict(user_settings)
    given = settings.get("customModels")
    models = [
        entry
        for entry in (given if isinstance(given, list) else [])
        if not (isinstance(entry, dict) and entry.get("displayName") == byok.display_name)
    ]
    models.append(
        {
            "model": byok.model,
            "displayName": byok.display_name,
            "baseUrl": base_url,
            "apiKey": "${" + byok.key_variable + "}",
            "provider": byok.provider,
            "maxOutputTokens": byok.max_output_tokens,
        }
    )
    settings["customModels"] = models
    return settings, f"custom:{byok.display_name}-{len(models) - 1}"


def _user_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """The agent's own `$HOME/.factory/settings.json`, when it is a JSON object."""
    home = env.get("HOME")
    if not home:
        return {}
    try:
        value = json.loads((Path(home) / ".factory" / "settings.json").read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


class DroidStreamParser(StreamJsonParser):
    """Turns droid's stream-json lines into activity and a result."""

    def __init__(self) -> None:
        super().__init__()
        self.completion: dict[str, Any] | None = None
        self.errors: list[str] = []
        self.pricing_model: str | None = None
        """The model the usage is priced as (a BYOK model's name at its API), when the
        CLI's own name for it (`custom:...`) says nothing to the price table."""

    def usage_so_far(self) -> list[tuple[str | None, dict[str, Any]]]:
        """The usage of each model response a metering relay saw (a BYOK model under a
        cap), else the completion's (droid reports usage once, at the end)."""
        if self.metered:
            return list(self.metered)
        usage = self.completion.get("usage") if self.completion else None
        return [(self.pricing_model or self.model, usage)] if isinstance(usage, dict) else []

    def handle(self, event: dict[str, Any]) -> list[AgentActivity]:
        """Map one event."""
        kind = event.get("type")
        if kind == "system" and event.get("subtype") == "init":
            if isinstance(event.get("model"), str):
                self.model = event["model"]
            return self.started()
        if kind == "message" and event.get("role") == "assistant":
            text = event.get("text")
            return self.text(text) if isinstance(text, str) and text else []
        if kind == "tool_call":
            name = str(event.get("toolName") or event.get("toolId") or "tool")
            call_id = event.get("id")
            return self.tool_call(
                name,
                event.get("parameters"),
                call_id=call_id if isinstance(call_id, str) else None,
            )
        if kind == "tool_result":
            return self._tool_result(event)
        if kind == "error":
            message = str(event.get("message") or event.get("error") or "error")
            self.errors.append(message)
            return [AgentActivity("warning", message[:200])]
        if kind == "completion":
            self.completion = event
        return []

    def _tool_result(self, event: dict[str, Any]) -> list[AgentActivity]:
        failed = event.get("isError") is True
        error = event.get("error")
        detail = error.get("message") if isinstance(error, dict) else event.get("value")
        call_id = event.get("id")
        self.tool_outcome(
            call_id if isinstance(call_id, str) else None, ok=not failed, detail=detail
        )
        if not failed:
            return []
        tool = event.get("toolName") or event.get("toolId") or "tool"
        return [AgentActivity("warning", f"{tool} failed: {str(detail)[:160]}")]

    def finish(self, *, exit_code: int, stderr_tail: str) -> AgentResult:
        """The result once the CLI exited."""
        done = self.completion
        if done is None or exit_code != 0:
            reason = "; ".join(self.errors) or "droid exited without a completion event"
            return AgentResult(
                status="error",
                response=self.partial() or None,
                error=error_text(reason, exit_code=exit_code, stderr_tail=stderr_tail),
                session_id=self.session_id,
                exit_code=exit_code,
            )
        text = done.get("finalText")
        usage = done.get("usage")
        return AgentResult(
            status="success",
            response=text if isinstance(text, str) else self.partial(),
            session_id=self.session_id,
            usage=dict(usage) if isinstance(usage, dict) else {},
            exit_code=exit_code,
        )


class FactoryDroidAgent(CliAgent):
    """Factory's Droid through its CLI (`droid exec -o stream-json`)."""

    name = "factory-droid"
    supports_sessions = True

    def __init__(
        self,
        command: Sequence[str] = ("droid",),
        *,
        autonomy: AutonomyLevel = "high",
        extra_args: Sequence[str] = (),
        model: str | None = None,
        byok: DroidByok | None = None,
        factory_home: Path | None = None,
        **options: Unpack[CliOptions],
    ) -> None:
        super().__init__(command, **options)
        self.model = model
        self.autonomy: AutonomyLevel = autonomy
        self.extra_args = list(extra_args)
        self.byok = byok
        self.factory_home = factory_home
        """Where the CLI keeps its `.factory` when the adapter writes its settings (a BYOK
        model); None: a directory of the run's own."""

    def argv(
        self, session_id: str | None, prompt_file: Path, model: str | None = None
    ) -> list[str]:
        """The command line for one prompt read from `prompt_file`."""
        argv = [*self.command, "exec", "--output-format", "stream-json", "--auto", self.autonomy]
        if session_id:
            argv += ["--session-id", session_id]
        model = model or self.model
        if model:
            argv += ["--model", model]
        return [*argv, *self.extra_args, "--file", str(prompt_file)]

    async def run(self, request: AgentRequest, on_activity: ActivitySink) -> AgentResult:
        """Run one prompt through `droid exec`; with a BYOK model under a cap, through a
        metering relay in front of the model's API."""
        parser = DroidStreamParser()
        parser.model = self.model
        if self.byok is None:
            return await self._run(request, on_activity, parser, None)
        parser.pricing_model = self.byok.model
        if not self._budgets():
            return await self._run(request, on_activity, parser, self.byok.base_url)
        try:
            relay = UsageRelay(
                self.byok.base_url, parser.add_metered_usage, lambda: parser.over_budget
            )
        except ValueError as exc:
            return AgentResult(status="error", error=str(exc))
        async with relay:
            return await self._run(request, on_activity, parser, relay.base_url)

    async def _run(
        self,
        request: AgentRequest,
        on_activity: ActivitySink,
        parser: DroidStreamParser,
        base_url: str | None,
    ) -> AgentResult:
        with tempfile.TemporaryDirectory(prefix="droid-prompt-") as tmp:
            prompt_file = write_prompt_file(Path(tmp), request.prompt, self.run_as)
            extra_env: dict[str, str] = {}
            model = None
            if self.byok is not None and base_url is not None:
                home = self.factory_home or Path(tmp) / "factory-home"
                model = self._write_settings(home, base_url, request.env)
                extra_env["FACTORY_HOME_OVERRIDE"] = str(home)
            return await self.run_parsed(
                self.argv(request.session_id, prompt_file, model),
                request,
                parser,
                on_activity,
                stdin_text=None,
                extra_env=extra_env,
            )

    def _write_settings(self, home: Path, base_url: str, env: Mapping[str, str]) -> str:
        """Write `<home>/.factory/settings.json` for this run; answer the `--model`."""
        assert self.byok is not None
        settings, model = byok_settings(self.byok, base_url, _user_settings(env))
        factory = home / ".factory"
        factory.mkdir(parents=True, exist_ok=True)
        path = factory / "settings.json"
        path.write_text(json.dumps(settings, indent=2), encoding="utf-8")
        path.chmod(0o600)
        if self.run_as is not None:
            for target in (home, factory, path):
                os.chown(target, *self.run_as)
        return model
