"""The logging setup every process applies: levels, JSON lines, bad configuration."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from shared.logs import configure_logging

ROOT = Path(__file__).parents[1]


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    chatty = {name: logging.getLogger(name).level for name in ("httpx", "httpcore", "alembic")}
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in chatty.items():
        logging.getLogger(name).setLevel(old)


def test_json_lines_carry_the_event_its_fields_and_level_and_respect_the_level() -> None:
    """At INFO, debug lines vanish; structlog and stdlib lines are both JSON objects."""
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    log = structlog.get_logger()
    log.debug("hidden", detail=1)
    log.info("published", queue="engineering:queue", attempt=2)
    logging.getLogger("tests.stdlib").warning("port %d busy", 8800)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["published", "port 8800 busy"]
    assert lines[0]["queue"] == "engineering:queue"
    assert lines[0]["attempt"] == 2
    assert lines[0]["level"] == "info"
    assert lines[1]["level"] == "warning"
    assert lines[1]["logger"] == "tests.stdlib"
    assert all("timestamp" in line for line in lines)


def test_library_chatter_shows_from_warning_unless_debugging() -> None:
    """httpx's per-request INFO lines stay out at INFO and come back at DEBUG."""
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    logging.getLogger("httpx").info("HTTP Request: GET /health")
    logging.getLogger("httpx").warning("retrying")
    assert [json.loads(line)["event"] for line in out.getvalue().splitlines()] == ["retrying"]
    configure_logging("DEBUG", "json", stream=out)
    logging.getLogger("httpx").info("HTTP Request: GET /ready")
    assert "GET /ready" in out.getvalue()


def test_configuring_again_replaces_the_handler_instead_of_doubling_lines() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("INFO", "console", stream=first)
    configure_logging("INFO", "console", stream=second)
    logging.getLogger("x").error("once")
    assert first.getvalue() == ""
    assert second.getvalue().count("once") == 1


@pytest.mark.parametrize(("level", "fmt"), [("LOUD", "console"), ("INFO", "xml")])
def test_an_unknown_level_or_format_is_refused_by_name(level: str, fmt: str) -> None:
    with pytest.raises(ValueError, match=r"LOUD|xml"):
        configure_logging(level, fmt)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ORCHESTRATOR_LOG_LEVEL", "LOUD", "ORCHESTRATOR_LOG_LEVEL"),
        ("ORCHESTRATOR_LOG_FORMAT", "xml", "ORCHESTRATOR_LOG_FORMAT"),
        ("ORCHESTRATOR_LOCAL_PORTS", "[30000, 20099]", "the first and the last"),
    ],
)
def test_up_with_a_bad_log_setting_exits_2_naming_it(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    """A bad setting stops `orchestrator up` before anything starts, with the setting's name."""
    env = {**os.environ, variable: value, "ORCHESTRATOR_DATA_DIR": str(tmp_path / "var")}
    done = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "up"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert value in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "var").exists()  # nothing started, nothing written
