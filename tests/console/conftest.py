"""A real system (`orchestrator up`: private Redis, SQLite) and headless Chromium for the
console's browser tests. Chromium is Debian's (/usr/bin/chromium), driven by Playwright:
nothing is downloaded at test time. Screenshots go to var/screenshots/ (ignored by git)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.support.console import CHROMIUM, ConsoleSystem


@pytest.fixture(scope="module")
def console_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleSystem]:
    """`orchestrator up` on a fresh data directory, for a whole test module."""
    system = ConsoleSystem(tmp_path_factory.mktemp("console"), start_timeout_s=240)
    with system:
        # the first requests of a fresh system on a busy machine can take long (every actor
        # is starting): make them here, with time, not in the first test
        assert system.api("GET", "/api/users/me", system.admin_key).status_code == 200
        assert system.api("POST", "/console/links", system.admin_key).status_code == 201
        yield system
    up_log = system.log_path.read_text(errors="replace")
    assert f"console {system.base}/console/" in up_log, up_log[-2000:]


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
