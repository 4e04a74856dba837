"""The console tests' running system (`orchestrator up` and a browser) and its screenshots."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import httpx
from playwright.sync_api import Page

from tests.support.system import ROOT, UpSystem

CHROMIUM = Path(os.environ.get("ORCHESTRATOR_TEST_CHROMIUM", "/usr/bin/chromium"))


SCREENSHOTS = ROOT / "var" / "screenshots"


class ConsoleSystem(UpSystem):
    """`orchestrator up` (see `UpSystem`), its API's URL, and its local admin's key."""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

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


def screenshot(page: Page, name: str) -> None:
    """Save what the page shows, for a reviewer (var/screenshots/NAME.png)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
