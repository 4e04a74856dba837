"""`orchestrator console`: a one-time sign-in link to the web console, printed and opened.

The link is asked for with the CLI's credential (`ORCHESTRATOR_API__KEY`, else the local
admin's key of `orchestrator up`), so the browser signs in as that credential's holder. It
works once and expires after `ORCHESTRATOR_API__CONSOLE__LINK_TTL_S` seconds (default 600).
`--no-open` only prints it; without a graphical browser nothing is opened.
"""

from __future__ import annotations

import os
import webbrowser

import httpx
import typer

from shared.embedded import CLI_KEY, read_runtime, read_secret
from shared.settings import Settings

__all__ = ["console", "console_url"]

TIMEOUT_S = 60.0


def console_url(api_url: str) -> str:
    """Where the console of the API at `api_url` is served."""
    return api_url.rstrip("/") + "/console/"


def _api(settings: Settings) -> tuple[str, str | None]:
    url = settings.api.base_url
    if not settings.api.url and "ORCHESTRATOR_API__PORT" not in os.environ:
        info = read_runtime(settings)
        url = info.api_url if info else url
    secret = settings.api.key
    key = secret.get_secret_value() if secret else read_secret(settings, CLI_KEY)
    return url, key


def console(
    open_browser: bool = typer.Option(True, "--open/--no-open", help="Open it in a browser."),
) -> None:
    """Print (and open) a one-time sign-in link to the web console."""
    url, key = _api(Settings())
    if key is None:
        typer.echo("no credential: set ORCHESTRATOR_API__KEY or start `orchestrator up`", err=True)
        raise typer.Exit(2)
    try:
        answer = httpx.post(
            url.rstrip("/") + "/console/links",
            headers={"Authorization": f"Bearer {key}"},
            timeout=TIMEOUT_S,
        )
    except httpx.HTTPError as error:
        typer.echo(f"the API at {url} cannot be reached ({type(error).__name__})", err=True)
        raise typer.Exit(2) from None
    if answer.status_code != 201:
        typer.echo(f"the API refused a sign-in link ({answer.status_code})", err=True)
        raise typer.Exit(1)
    link = url.rstrip("/") + answer.json()["path"]
    typer.echo(f"Console: {console_url(url)}")
    typer.echo(f"Sign in (one use, until {answer.json()['expires_at']}): {link}")
    if open_browser and _has_browser():
        webbrowser.open(link)


def _has_browser() -> bool:
    """True when a browser can be opened (a display, or a configured $BROWSER)."""
    if os.environ.get("BROWSER"):
        return True
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        webbrowser.get()
    except webbrowser.Error:
        return False
    return True
