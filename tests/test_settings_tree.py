"""The settings tree: one root, a section per actor, `ORCHESTRATOR_<SECTION>__<FIELD>`, the
previous release's names with a warning, and `orchestrator config` (run as a user runs it)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from services.infra_service.settings import InfraSettings
from services.langgraph.settings import LanggraphSettings
from services.scaffolder.settings import ScaffolderSettings
from services.scheduler.settings import SchedulerSettings
from services.settings import SECTIONS, SystemSettings
from services.telegram_bot.settings import TelegramBotSettings
from services.worker_manager.settings import WorkerManagerSettings
from shared.settings import Section, Settings

ROOT = Path(__file__).resolve().parents[1]
ORCHESTRATOR = Path(sys.executable).parent / "orchestrator"


def config(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `orchestrator config` in `cwd` with only `env` (and PATH) set."""
    return subprocess.run(
        [str(ORCHESTRATOR), "config", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "250", **env},
        check=False,
    )


@pytest.mark.parametrize(
    ("variable", "section", "field", "value"),
    [
        ("ORCHESTRATOR_WORKERS__CONCURRENCY", WorkerManagerSettings, "concurrency", 7),
        ("ORCHESTRATOR_SCAFFOLDER__CONCURRENCY", ScaffolderSettings, "concurrency", 7),
        ("ORCHESTRATOR_INFRA__CONCURRENCY", InfraSettings, "concurrency", 7),
        ("ORCHESTRATOR_LANGGRAPH__CONCURRENCY", LanggraphSettings, "concurrency", 7),
        ("ORCHESTRATOR_SCHEDULER__MAX_REDRIVES", SchedulerSettings, "max_redrives", 7),
        ("ORCHESTRATOR_TELEGRAM__REFUSAL_TTL_S", TelegramBotSettings, "refusal_ttl_s", 7),
    ],
)
def test_every_section_reads_the_one_prefix_style(
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    section: type[Section],
    field: str,
    value: int,
) -> None:
    """Each actor's section of the one root is set by `ORCHESTRATOR_<SECTION>__<FIELD>`."""
    monkeypatch.setenv(variable, str(value))
    assert getattr(section.of(SystemSettings()), field) == value
    assert {type(getattr(SystemSettings(), s.section)) for s in SECTIONS} == set(SECTIONS)


def test_nested_fields_of_a_section_use_the_same_delimiter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deeper fields go on with `__`: a job's interval, the local server's host."""
    monkeypatch.setenv("ORCHESTRATOR_SCHEDULER__INTERVALS_S__TRIM_STREAMS", "12")
    monkeypatch.setenv("ORCHESTRATOR_INFRA__LOCAL__PUBLIC_HOST", "apps.example")
    tree = SystemSettings()
    assert SchedulerSettings.of(tree).intervals_s.trim_streams == 12.0
    assert InfraSettings.of(tree).local.public_host == "apps.example"


def test_sections_take_the_system_data_dir_unless_they_name_their_own(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Under a bare `Settings` (tests) and under the tree alike, a section without its own
    data directory works under the system's; one it names wins."""
    bare = Settings(data_dir=tmp_path)
    assert WorkerManagerSettings.of(bare).data_dir == tmp_path / "workers"
    assert InfraSettings.of(bare).data_dir == tmp_path
    monkeypatch.setenv("ORCHESTRATOR_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ORCHESTRATOR_WORKERS__DATA_DIR", str(tmp_path / "elsewhere"))
    tree = SystemSettings()
    assert WorkerManagerSettings.of(tree).data_dir == tmp_path / "elsewhere"
    assert ScaffolderSettings.of(tree).data_dir == tmp_path


def test_an_old_name_still_works_and_warns_naming_the_new_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`ORCHESTRATOR_INFRA_<FIELD>` and `ORCHESTRATOR_SCAFFOLDER_<FIELD>` (the previous
    release's prefixes) set their sections, each with a warning naming its new name."""
    monkeypatch.setenv("ORCHESTRATOR_INFRA_HEALTH_TIMEOUT_S", "42")
    monkeypatch.setenv("ORCHESTRATOR_SCAFFOLDER_GIT__PROVIDER", "github")
    with pytest.warns(FutureWarning) as caught:
        tree = SystemSettings()
    assert tree.infra.health_timeout_s == 42.0
    assert tree.scaffolder.git.provider == "github"
    messages = sorted(str(warning.message) for warning in caught)
    assert len(messages) == 2
    assert messages[0].startswith("ORCHESTRATOR_INFRA_HEALTH_TIMEOUT_S is deprecated")
    assert messages[0].endswith("use ORCHESTRATOR_INFRA__HEALTH_TIMEOUT_S")
    assert messages[1].endswith("use ORCHESTRATOR_SCAFFOLDER__GIT__PROVIDER")


def test_a_new_name_beside_its_old_one_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both set: the tree's name decides (the old one still warns)."""
    monkeypatch.setenv("ORCHESTRATOR_INFRA_CONCURRENCY", "3")
    monkeypatch.setenv("ORCHESTRATOR_INFRA__CONCURRENCY", "9")
    with pytest.warns(FutureWarning, match="use ORCHESTRATOR_INFRA__CONCURRENCY"):
        tree = SystemSettings()
    assert tree.infra.concurrency == 9


def test_a_bad_value_under_an_old_name_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """A value the section refuses is an error, whichever name carried it."""
    monkeypatch.setenv("ORCHESTRATOR_INFRA_CONCURRENCY", "many")
    with pytest.warns(FutureWarning), pytest.raises(ValueError, match=r"infra\.concurrency"):
        SystemSettings()


def test_the_bot_token_is_read_from_its_short_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """`TELEGRAM_BOT_TOKEN` sets the telegram section's token, without a warning."""
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:abc")
    token = TelegramBotSettings.of(SystemSettings()).token
    assert token is not None
    assert token.get_secret_value() == "123:abc"


def test_config_names_each_value_source(tmp_path: Path) -> None:
    """`orchestrator config --json`: every setting of the tree with its value and where it
    came from: default, an environment variable, `.env`, an old name, derived."""
    (tmp_path / ".env").write_text("ORCHESTRATOR_SCHEDULER__MAX_REDRIVES=5\n")
    done = config(
        tmp_path,
        "--json",
        ORCHESTRATOR_DATA_DIR=str(tmp_path / "data"),
        ORCHESTRATOR_INFRA__CANCEL_POLL_S="3",
        ORCHESTRATOR_INFRA_HEALTH_TIMEOUT_S="61",
        REDIS_URL="redis://127.0.0.1:6390/0",
    )
    assert done.returncode == 0, done.stderr
    described = json.loads(done.stdout)
    assert described["infra.cancel_poll_s"] == {
        "value": 3.0,
        "source": "env",
        "variable": "ORCHESTRATOR_INFRA__CANCEL_POLL_S",
    }
    assert described["scheduler.max_redrives"] == {
        "value": 5,
        "source": ".env",
        "variable": "ORCHESTRATOR_SCHEDULER__MAX_REDRIVES",
    }
    assert described["redis_url"] == {
        "value": "redis://127.0.0.1:6390/0",
        "source": "env",
        "variable": "REDIS_URL",
    }
    assert described["infra.health_timeout_s"] == {
        "value": 61.0,
        "source": "deprecated",
        "variable": "ORCHESTRATOR_INFRA_HEALTH_TIMEOUT_S",
        "use": "ORCHESTRATOR_INFRA__HEALTH_TIMEOUT_S",
    }
    assert described["workers.data_dir"] == {
        "value": str(tmp_path / "data" / "workers"),
        "source": "derived",
    }
    assert described["api.port"] == {"value": 8800, "source": "default"}
    assert "deprecated" in done.stderr
    assert "use ORCHESTRATOR_INFRA__HEALTH_TIMEOUT_S" in done.stderr


def test_config_never_prints_a_secret(tmp_path: Path) -> None:
    """Secrets show as `********`, in the table and in `--json`: `SecretStr` settings, those
    named like a key or token, a URL's password, and secret-named entries of a mapping."""
    secrets = {
        "ORCHESTRATOR_API__KEY": "api-key-value-1",
        "ORCHESTRATOR_WORKERS__API_KEY": "manager-key-value-2",
        "TELEGRAM_BOT_TOKEN": "123:bot-token-value-3",
        "REDIS_URL": "redis://user:redis-password-4@127.0.0.1:6390/0",
        "ORCHESTRATOR_DATABASE_URL": "postgresql://u:db-password-5@127.0.0.1/db",
        "ORCHESTRATOR_WORKERS__AGENT_ENV": json.dumps({"ANTHROPIC_API_KEY": "raw-key-6"}),
        "ORCHESTRATOR_SECRETS__KEYS": json.dumps(["env:SECRETS_KEY_7"]),
    }
    for args in ((), ("--json",)):
        done = config(tmp_path, *args, **secrets)
        assert done.returncode == 0, done.stderr
        shown = done.stdout + done.stderr
        for value in ("value-1", "value-2", "value-3", "password-4", "password-5", "key-6"):
            assert value not in shown
        assert "KEY_7" not in shown
        assert "********" in shown
    described = json.loads(done.stdout)
    assert described["api.key"] == {
        "value": "********",
        "source": "env",
        "variable": "ORCHESTRATOR_API__KEY",
    }
    assert described["redis_url"]["value"] == "redis://user:********@127.0.0.1:6390/0"
    assert described["workers.agent_env"]["value"] == {"ANTHROPIC_API_KEY": "********"}
    assert described["telegram.token"] == {
        "value": "********",
        "source": "env",
        "variable": "TELEGRAM_BOT_TOKEN",
    }
    assert described["api.service_key"]["value"] is None  # unset shows as unset
    assert described["langgraph.github_token_ref"]["value"] == "env:GITHUB_TOKEN"  # a reference


def test_config_refuses_a_bad_value_naming_it(tmp_path: Path) -> None:
    """A bad setting ends `orchestrator config` with exit 2 naming it, no traceback; given
    under an old name, the deprecation is reported too."""
    done = config(tmp_path, ORCHESTRATOR_INFRA_CONCURRENCY="many")
    assert done.returncode == 2
    shown = done.stdout + done.stderr
    assert "bad configuration ORCHESTRATOR_INFRA__CONCURRENCY='many'" in shown
    assert "ORCHESTRATOR_INFRA_CONCURRENCY is deprecated" in shown
    assert "Traceback" not in shown


_WRITES = {"setdefault", "update", "clear", "pop", "popitem", "__setitem__", "__delitem__"}
_ALLOWED = {ROOT / "services" / "worker_wrapper" / "__main__.py"}
"""The worker-wrapper is not an actor of the tree but the program inside a worker: a warm
wrapper adopts its task's whole environment (the one its agent's processes inherit)."""


def _environ_writes(path: Path) -> list[str]:
    """The `os.environ` writes (and `os.putenv` / `os.unsetenv` calls) of a module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        written: list[ast.expr] = []
        if isinstance(node, ast.Assign | ast.Delete):
            written = [t.value for t in node.targets if isinstance(t, ast.Subscript)]
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Subscript):
            written = [node.target.value]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in _WRITES:
                written = [node.func.value]
            elif node.func.attr in {"putenv", "unsetenv"}:
                found.append(f"{path}:{node.lineno}")
        if any(ast.unparse(target) in {"os.environ", "environ"} for target in written):
            found.append(f"{path}:{getattr(node, 'lineno', 0)}")
    return found


def test_no_actor_configures_itself_through_os_environ() -> None:
    """Settings are passed down: nothing under services/ or shared/ writes the process's
    environment (e.g. `orchestrator up` hands the worker-manager its section instead)."""
    modules = [*ROOT.glob("services/**/*.py"), *ROOT.glob("shared/**/*.py")]
    assert len(modules) > 100
    writes = [w for m in modules if m not in _ALLOWED for w in _environ_writes(m)]
    assert writes == []
    assert _environ_writes(ROOT / "services" / "worker_wrapper" / "__main__.py")  # it sees one
