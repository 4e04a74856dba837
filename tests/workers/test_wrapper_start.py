"""A worker's start: what its interpreter imports, how it reads its settings, and that its
log lines never print a traceback's local variables (secrets included)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest
import redis.asyncio as aioredis
from pydantic import AliasChoices, Field, ValidationError, create_model
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.worker_manager.registry import WorkerRecord, WorkerRegistry
from services.worker_wrapper.settings import WrapperSettings, wrapper_env
from tests.support.waiting import eventually
from tests.support.workers import Client, ManagerRunner

ROOT = Path(__file__).resolve().parents[2]
SECRET = "sk-live-9f8e7d6c5b4a-never-logged"


def _python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter of this checkout (stdout and stderr together)."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# -- settings: plain environment parsing, the same results as pydantic-settings ------------


class _ReferenceBase(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WORKER_", extra="ignore")


def _reference_model() -> type[BaseSettings]:
    """`WrapperSettings`' fields on pydantic-settings, as the wrapper read them before."""
    fields: dict[str, Any] = {}
    for name, info in WrapperSettings.model_fields.items():
        if name == "redis_url":
            alias = AliasChoices("WORKER_REDIS_URL", "REDIS_URL")
            fields[name] = (info.annotation, Field(validation_alias=alias))
        else:
            fields[name] = (info.annotation, info)
    model: type[BaseSettings] = create_model("Reference", __base__=_ReferenceBase, **fields)
    return model


REFERENCE = _reference_model()
BASE = {
    "WORKER_ID": "w-1",
    "WORKER_REDIS_URL": "redis://:pw@127.0.0.1:6379/0",
    "WORKER_REGISTRY_KEY": "worker:w-1",
    "WORKER_WORKSPACE": "/tmp/ws",
    "WORKER_SESSION_DIR": "/tmp/session",
}
BYOK = {"base_url": "https://models.example/", "model": "m1", "api_key_env": "TEAM_KEY"}
GOOD_ENVS: list[dict[str, str]] = [
    {},
    {"WORKER_REDIS_URL": "", "REDIS_URL": "redis://fallback"},
    {"REDIS_URL": "redis://fallback"},
    {
        "WORKER_ADAPTER": "claude-code",
        "WORKER_TASK_ID": "t-1",
        "WORKER_PROFILE": "po",
        "WORKER_HEARTBEAT_INTERVAL_S": "0.5",
        "WORKER_SESSION_TTL_S": "60",
        "WORKER_CLAUDE_COMMAND": '["/opt/claude", "--verbose"]',
        "WORKER_CLAUDE_MAX_RETRIES": "3",
        "WORKER_CLAUDE_ROOT_SANDBOX": "false",
        "WORKER_TASK_BUDGET_USD": "1.25",
        "WORKER_MONTH_BUDGET_USD": "10",
        "WORKER_MONTH_SPENT_USD": "2.5",
        "WORKER_LOG_LEVEL": "debug",
        "WORKER_READY_KEY": "bind:w-1",
    },
    {
        "WORKER_ADAPTER": "factory-droid",
        "WORKER_DROID_AUTONOMY": "medium",
        "WORKER_DROID_BYOK": json.dumps(BYOK),
        "WORKER_DROID_COMMAND": '["droid"]',
        "WORKER_AGENT_USER": "10001:10001",
    },
    {"WORKER_DROID_BYOK": "null", "WORKER_CLAUDE_ROOT_SANDBOX": "1"},
    {
        "WORKER_ADAPTER": "codex",
        "WORKER_CODEX_SANDBOX": "workspace-write",
        "WORKER_CODEX_BASE_URL": "http://127.0.0.1:9/v1",
        "WORKER_CODEX_MAX_RETRIES": "0",
    },
    {
        "WORKER_ADAPTER": "command",
        "WORKER_COMMAND_TEMPLATE": '["sh", "-c", "echo {prompt}"]',
        "WORKER_COMMAND_OUTPUT_FORMAT": "claude-stream-json",
    },
    {"worker_adapter": "codex", "Worker_Profile": "reviewer"},  # names are case-insensitive
    {"WORKER_UNKNOWN_THING": "ignored", "OTHER": "x"},
]
BAD_ENVS: list[dict[str, str]] = [
    {"WORKER_ADAPTER": "gpt-engineer"},
    {"WORKER_HEARTBEAT_INTERVAL_S": "soon"},
    {"WORKER_CLAUDE_MAX_RETRIES": "2.5"},
    {"WORKER_CLAUDE_ROOT_SANDBOX": "perhaps"},
    {"WORKER_CLAUDE_COMMAND": "claude --verbose"},  # not JSON
    {"WORKER_COMMAND_TEMPLATE": '{"a": 1}'},
    {"WORKER_DROID_BYOK": "not json"},
    {"WORKER_DROID_BYOK": json.dumps({**BYOK, "base_url": "file:///etc/passwd"})},
    {"WORKER_DROID_AUTONOMY": "max"},
    {"WORKER_TASK_BUDGET_USD": ""},
]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No WORKER_* or REDIS_URL variable of the test's own environment."""
    for name in list(os.environ):
        if name.upper().startswith(("WORKER_", "REDIS_URL")):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.mark.parametrize("extra", GOOD_ENVS)
def test_settings_equal_the_pydantic_settings_reading(
    clean_env: pytest.MonkeyPatch, extra: dict[str, str]
) -> None:
    """The same environment gives the same settings as pydantic-settings did."""
    env = {**BASE, **extra}
    if "REDIS_URL" in extra and extra.get("WORKER_REDIS_URL") is None:
        del env["WORKER_REDIS_URL"]
    for name, value in env.items():
        clean_env.setenv(name, value)
    assert WrapperSettings().model_dump() == REFERENCE().model_dump()


@pytest.mark.parametrize("extra", BAD_ENVS)
def test_bad_values_fail_as_with_pydantic_settings_naming_the_field_not_the_value(
    clean_env: pytest.MonkeyPatch, extra: dict[str, str]
) -> None:
    """A value pydantic-settings refused is refused too, with an error that names the
    field (or its variable) and does not repeat the value."""
    for name, value in {**BASE, **extra}.items():
        clean_env.setenv(name, value)
    with pytest.raises(ValueError):  # noqa: PT011 - pydantic-settings raised several kinds
        REFERENCE()
    with pytest.raises(ValueError) as caught:  # noqa: PT011
        WrapperSettings()
    ((name, value),) = extra.items()
    field = name.removeprefix("WORKER_").lower()
    assert field in str(caught.value).lower()
    if value:
        assert value not in str(caught.value)


def test_missing_required_variables_are_named(clean_env: pytest.MonkeyPatch) -> None:
    """Without WORKER_ID (or any Redis URL) the error names what is missing."""
    for name, value in BASE.items():
        if name not in ("WORKER_ID", "WORKER_REDIS_URL"):
            clean_env.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        WrapperSettings()
    assert {error["loc"] for error in caught.value.errors()} == {("id",), ("redis_url",)}


def test_given_values_win_over_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    """Values passed in override the environment's; the rest still come from it."""
    for name, value in BASE.items():
        clean_env.setenv(name, value)
    clean_env.setenv("WORKER_HEARTBEAT_INTERVAL_S", "9")
    settings = WrapperSettings(id="given", heartbeat_interval_s=0.1)
    assert (settings.id, settings.heartbeat_interval_s) == ("given", 0.1)
    assert settings.registry_key == BASE["WORKER_REGISTRY_KEY"]
    assert wrapper_env({"WORKER_ID": "a", "REDIS_URL": "r", "WORKER_REDIS_URL": "w"}) == {
        "id": "a",
        "redis_url": "w",
    }


# -- imports: only what the named adapter needs ------------------------------------------

_LOADED = """
import json, sys
from services.worker_wrapper.__main__ import skip_unused_imports
skip_unused_imports()
import services.worker_wrapper.main, services.worker_wrapper.warm, shared.observability.tracing
from services.worker_wrapper.agents import build_agent, preload_adapter
from services.worker_wrapper.settings import WrapperSettings
preload_adapter(sys.argv[-1]) if len(sys.argv) > 1 else None
build_agent(WrapperSettings())
print(json.dumps(sorted(name for name, module in sys.modules.items() if module)))
"""


def _loaded(adapter: str, *, preload: bool = False) -> set[str]:
    code = _LOADED.replace("sys.argv[-1]", repr(adapter)).replace(
        "len(sys.argv) > 1", repr(preload)
    )
    done = _python(code, {**BASE, "WORKER_ADAPTER": adapter})
    assert done.returncode == 0, done.stderr
    loaded: set[str] = set(json.loads(done.stdout.splitlines()[-1]))
    return loaded


def _tops(names: set[str]) -> set[str]:
    return {name.split(".")[0] for name in names}


def test_a_worker_imports_only_its_adapter_and_skips_unused_packages() -> None:
    """The built-in worker imports neither the CLI adapters nor httpx, psutil, rich,
    colorama, pydantic-settings or the OpenTelemetry SDK (traces are off)."""
    loaded = _loaded("builtin")
    assert "services.worker_wrapper.agents.builtin_po" in loaded
    for module in ("claude_code", "codex", "factory_droid", "command", "metering"):
        assert f"services.worker_wrapper.agents.{module}" not in loaded
    unused = {"httpx", "psutil", "rich", "colorama", "pydantic_settings", "pygments"}
    assert not unused & _tops(loaded)
    assert not {name for name in loaded if name.startswith("opentelemetry.sdk")}


def test_a_cli_worker_imports_its_adapter_alone() -> None:
    """A codex worker imports the codex adapter (and its metering relay), not the others."""
    loaded = _loaded("codex")
    assert {"services.worker_wrapper.agents.codex", "httpx"} <= loaded | _tops(loaded)
    assert "services.worker_wrapper.agents.claude_code" not in loaded
    assert "services.worker_wrapper.agents.factory_droid" not in loaded
    assert "psutil" not in _tops(loaded)  # until a process tree has to be killed


def test_preload_imports_the_named_adapter_and_ignores_unknown_names() -> None:
    """A warm wrapper's `WORKER_ADAPTER` imports that adapter ahead; an unknown name
    imports nothing and fails nothing (the bound settings refuse it)."""
    from services.worker_wrapper import agents

    agents.preload_adapter("no-such-adapter")
    assert "services.worker_wrapper.agents.claude_code" in _loaded("claude-code", preload=True)


def test_adapter_classes_stay_importable_from_the_package() -> None:
    """`from services.worker_wrapper.agents import ClaudeCodeAgent` works as before; an
    unknown name is an ImportError."""
    from services.worker_wrapper.agents import ClaudeCodeAgent, CommandAgent
    from services.worker_wrapper.agents.claude_code import ClaudeCodeAgent as Direct

    assert ClaudeCodeAgent is Direct
    assert CommandAgent.__name__ == "CommandAgent"
    with pytest.raises(ImportError):
        from services.worker_wrapper.agents import NoSuchAgent  # noqa: F401


# -- tracebacks: never a local variable ---------------------------------------------------

_RAISE = f"""
import structlog
log = structlog.get_logger("t")
def handle(prompt):
    api_key = {SECRET!r}
    raise RuntimeError("agent failed for " + prompt[:3])
try:
    handle("build it")
except RuntimeError:
    log.exception("agent_crashed")
"""


def test_worker_tracebacks_never_show_locals() -> None:
    """The worker's log setup, and the API's and the bot's entry points, render a crash's
    traceback (exception, function, line) without the frames' local variables, with rich
    installed or not."""
    setups = [
        "from services.worker_wrapper.__main__ import configure_worker_logs\n"
        "configure_worker_logs('INFO')\n",
        "from services.worker_wrapper.__main__ import configure_worker_logs, skip_unused_imports\n"
        "skip_unused_imports()\nconfigure_worker_logs('INFO')\n",
        # the entry points `python -m services.api` and `python -m services.telegram_bot`
        "from services.api.__main__ import setup_logs\n"
        "from shared.settings import Settings\nsetup_logs(Settings(log_format='console'))\n",
        "from services.telegram_bot.__main__ import setup_logs\n"
        "from services.settings import SystemSettings\n"
        "setup_logs(SystemSettings(log_format='console'))\n",
    ]
    for setup in setups:
        done = _python(setup + _RAISE)
        output = done.stdout + done.stderr
        assert "agent_crashed" in output
        assert "RuntimeError: agent failed for bui" in output
        assert "in handle" in output
        assert SECRET not in output
        assert "api_key" not in output


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_shared_logging_tracebacks_never_show_locals(fmt: str) -> None:
    """`shared.logs.configure_logging`, console and JSON alike, for structlog and the
    standard library's loggers."""
    stdlib = (
        "import logging\ntry:\n    handle('x')\nexcept RuntimeError:\n"
        "    logging.getLogger('lib').exception('lib_crashed')\n"
    )
    setup = f"from shared.logs import configure_logging\nconfigure_logging('INFO', {fmt!r})\n"
    done = _python(setup + _RAISE + stdlib)
    output = done.stdout + done.stderr
    assert "agent_crashed" in output
    assert "lib_crashed" in output
    assert "RuntimeError" in output
    assert SECRET not in output


def test_structlog_default_would_show_locals() -> None:
    """The hazard the setups above avoid: structlog's default console renderer, with rich
    installed, prints each frame's locals (so the tests above are not vacuous)."""
    done = _python("import rich")
    if done.returncode != 0:
        pytest.skip("rich is not installed: structlog's default prints no locals")
    done = _python(_RAISE)
    assert SECRET in done.stdout + done.stderr


# -- a warm wrapper: its idle read, its adapter ------------------------------------------


def test_warm_env_blocks_about_4_5_s_within_the_heartbeat_timeout() -> None:
    """An idle read blocks 4.5 s, a third of a short heartbeat timeout at most, and never
    less than the heartbeat interval; a bad number is a clear error. The wrapper's client
    waits for answers far longer than that."""
    from services.worker_wrapper.warm import IDLE_BLOCK_S, WarmEnv, redis_client

    needed = {
        "WORKER_ID": "w",
        "WORKER_REDIS_URL": "redis://x",
        "WORKER_REGISTRY_KEY": "k",
        "WORKER_BIND_KEY": "b",
    }
    assert WarmEnv(needed).block_s == IDLE_BLOCK_S == 4.5
    short = {"WORKER_HEARTBEAT_TIMEOUT_S": "3", "WORKER_HEARTBEAT_INTERVAL_S": "0.2"}
    assert WarmEnv({**needed, **short}).block_s == 1.0
    slow = {"WORKER_HEARTBEAT_TIMEOUT_S": "3", "WORKER_HEARTBEAT_INTERVAL_S": "2"}
    assert WarmEnv({**needed, **slow}).block_s == 2.0
    with pytest.raises(ValueError, match="WORKER_HEARTBEAT_TIMEOUT_S"):
        WarmEnv({**needed, "WORKER_HEARTBEAT_TIMEOUT_S": "soon"})
    # its client waits for an answer far longer than a read blocks: an answer that comes
    # late (a busy machine) is never given up on after Redis popped the binding for it
    client = redis_client("redis://127.0.0.1:1")
    assert client.connection_pool.connection_kwargs["socket_timeout"] >= IDLE_BLOCK_S + 20


async def test_an_idle_warm_wrapper_blocks_in_redis_until_bound(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    """The warm wait's reads are BLPOPs of 4.5 s on the binding list (seen by MONITOR), and
    the binding pushed meanwhile is answered."""
    from services.worker_wrapper.warm import WarmEnv, wait_for_binding

    key = f"test-warm:{uuid.uuid4().hex[:8]}"
    await redis_client.hset(f"{key}:record", mapping={"status": "warming"})
    warm = WarmEnv(
        {
            "WORKER_ID": "w",
            "WORKER_REDIS_URL": redis_url,
            "WORKER_REGISTRY_KEY": f"{key}:record",
            "WORKER_BIND_KEY": f"{key}:bind",
            "WORKER_HEARTBEAT_INTERVAL_S": "0.1",
        }
    )
    async with redis_client.monitor() as monitor:
        waiting = asyncio.create_task(wait_for_binding(warm))
        while True:
            command = (await monitor.next_command())["command"]
            if command.startswith("BLPOP") and key in command:
                break
    assert command.split()[-1] == "4.5"
    assert await redis_client.hget(f"{key}:record", "status") == b"warm"
    await redis_client.rpush(f"{key}:bind", json.dumps({"WORKER_ID": "w", "X": "1"}))
    assert await asyncio.wait_for(waiting, 30) == {"WORKER_ID": "w", "X": "1"}
    await redis_client.delete(f"{key}:record")


async def test_the_pool_names_the_adapter_its_warm_workers_preload(
    manager: ManagerRunner, client: Client
) -> None:
    """A warm worker's environment carries WORKER_ADAPTER, the adapter a create for its pool
    binds it to, and the manager's heartbeat timeout."""
    await manager.start(pool={"size": 1, "prewarm": ["claude-code/developer"], "idle_s": 600.0})

    async def one_warm() -> list[WorkerRecord]:
        records = await WorkerRegistry(client.redis).all()
        return [r for r in records if r.status == "warm"]

    (warm,) = await eventually(one_warm, timeout_s=90, what="a warm worker")
    env = psutil.Process(int(warm.runtime_ref.split(":", 1)[0])).environ()
    assert env["WORKER_HEARTBEAT_TIMEOUT_S"]
    created = await client.create()
    assert created.success, created.error
    assert created.worker_id == warm.worker_id
    assert env["WORKER_ADAPTER"] == (await client.record(warm.worker_id)).adapter
    assert (await client.delete(warm.worker_id)).success


def test_traces_still_work_in_a_worker_that_skips_unused_imports() -> None:
    """With OTEL_* asking for traces, the worker's lazily imported tracing SDK exports its
    spans although the SDK's metrics are marked absent."""
    code = (
        "from services.worker_wrapper.__main__ import skip_unused_imports\n"
        "skip_unused_imports()\n"
        "import services.worker_wrapper.main\n"
        "from opentelemetry import trace\n"
        "from shared.observability.tracing import configure_tracing, shutdown_tracing\n"
        "assert configure_tracing('worker') is not None\n"
        "with trace.get_tracer('t').start_as_current_span('worker-span'):\n"
        "    pass\n"
        "shutdown_tracing()\n"
    )
    done = _python(code, {"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "bench"})
    assert done.returncode == 0, done.stderr
    assert '"name": "worker-span"' in done.stdout
    assert '"service.name": "bench-worker"' in done.stdout


async def test_a_bound_wrapper_waits_for_its_go_longer_than_a_read_timeout(
    redis_url: str, redis_client: aioredis.Redis
) -> None:
    """A workspace made slowly: the bound wrapper's wait for `go` goes on past its client's
    read timeout (redis-py's default, 5 s), in reads that each end before it, and it starts
    when `go` comes."""
    from services.worker_wrapper.heartbeat import RegistryReporter
    from services.worker_wrapper.main import _go_ahead

    key = f"test-go:{uuid.uuid4().hex[:8]}"
    await redis_client.hset(f"{key}:record", mapping={"status": "starting"})
    settings = SimpleNamespace(
        ready_key=f"{key}:ready", started_key=f"{key}:started", orphan_after_s=600.0
    )
    client = aioredis.Redis.from_url(redis_url)  # redis-py's default read timeout
    try:
        waiting = asyncio.create_task(
            _go_ahead(client, RegistryReporter(client, f"{key}:record"), settings)  # type: ignore[arg-type]
        )
        await asyncio.sleep(6)
        assert not waiting.done(), waiting.exception() if waiting.done() else None
        await redis_client.rpush(f"{key}:ready", "go")
        assert await asyncio.wait_for(waiting, 15) == "running"
        assert await redis_client.hget(f"{key}:record", "status") == b"running"
    finally:
        await client.aclose()
        await redis_client.delete(f"{key}:record", f"{key}:ready", f"{key}:started")
