"""A real system (`orchestrator up`: private Redis, SQLite) and headless Chromium for the
console's browser tests. Chromium is Debian's (/usr/bin/chromium), driven by Playwright:
nothing is downloaded at test time. Screenshots go to var/screenshots/ (ignored by git)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.conftest import local_ports_env
from tests.telegram_bot.test_whole_system import _reap
from tests.test_quickstart import ROOT, VENV_BIN, System, _healthy

CHROMIUM = Path(os.environ.get("ORCHESTRATOR_TEST_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = ROOT / "var" / "screenshots"


class ConsoleSystem(System):
    """A running system, its API's URL, and its local admin's key."""

    def __init__(self, data_dir: Path, env: dict[str, str], port: int) -> None:
        super().__init__(data_dir, env)
        self.base = f"http://127.0.0.1:{port}"

    @property
    def admin_key(self) -> str:
        return (self.data_dir / "secrets" / "cli.key").read_text().strip()

    @property
    def redis_url(self) -> str:
        info = json.loads((self.data_dir / "runtime.json").read_text())
        return str(info["redis_url"])

    def sign_in_link(self) -> str:
        """A one-time link, as `orchestrator console` prints it."""
        printed = self.cli("console", "--no-open")
        assert printed.returncode == 0, printed.stderr
        found = re.search(r"(http://\S+/console/link/\S+)", printed.stdout)
        assert found, printed.stdout
        assert f"Console: {self.base}/console/" in printed.stdout
        return found.group(1)

    def api(self, method: str, path: str, key: str, **kwargs: object) -> httpx.Response:
        """A REST call with `key`."""
        return httpx.request(
            method,
            self.base + path,
            headers={"Authorization": f"Bearer {key}"},
            timeout=120,
            **kwargs,  # type: ignore[arg-type]
        )


@pytest.fixture(scope="module")
def console_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleSystem]:
    """`orchestrator up` on a fresh data directory, for a whole test module."""
    from shared.redis_server import free_port

    tmp_path = tmp_path_factory.mktemp("console")
    data_dir = tmp_path / "var"
    port = free_port()
    env = {
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": os.environ.get("HOME", "/tmp"),
        "ORCHESTRATOR_DATA_DIR": str(data_dir),
        "ORCHESTRATOR_API__PORT": str(port),
        "ORCHESTRATOR_LOCAL_PORTS": local_ports_env(),
        "ORCHESTRATOR_SCHEDULER__INTERVALS_S__PROVISION_SERVERS": "2",
        "COLUMNS": "200",
    }
    log = (tmp_path / "up.log").open("wb")
    process = subprocess.Popen(
        [str(VENV_BIN / "orchestrator"), "up"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not (data_dir / "secrets" / "cli.key").exists() or not _healthy(port):
            assert process.poll() is None, (tmp_path / "up.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "orchestrator up did not come up in 240 s"
            time.sleep(0.3)
        started = ConsoleSystem(data_dir, env, port)
        # the first requests of a fresh system on a busy machine can take long (every actor
        # is starting): make them here, with time, not in the first test
        assert started.api("GET", "/api/users/me", started.admin_key).status_code == 200
        assert started.api("POST", "/console/links", started.admin_key).status_code == 201
        yield started
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        up_log = (tmp_path / "up.log").read_text(errors="replace")
        assert f"console http://127.0.0.1:{port}/console/" in up_log, up_log[-2000:]
        _reap(data_dir)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Debian Chromium; the browser tests skip without it (CI makes it mandatory)."""
    if not CHROMIUM.exists():
        if os.environ.get("REQUIRE_CHROMIUM") == "1":
            pytest.fail(f"REQUIRE_CHROMIUM=1 but no Chromium at {CHROMIUM}")
        pytest.skip(f"no Chromium at {CHROMIUM}")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile (no cookies) per test."""
    ctx = browser.new_context(viewport={"width": 1200, "height": 800})
    ctx.set_default_timeout(30_000)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def screenshot(page: Page, name: str) -> None:
    """Save what the page shows, for a reviewer (var/screenshots/NAME.png)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
