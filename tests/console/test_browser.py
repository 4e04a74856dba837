"""The console in headless Chromium against a real `orchestrator up`: the whole loop
(sign in with the one-time link, create a project, a task watched live, a deploy, the
deployed URL), cancelling a running task, replaying a dead letter; and its access rules."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from typing import Any

import httpx
import pytest
import redis
from playwright._impl._api_structures import SetCookieParam
from playwright.sync_api import Browser, BrowserContext, Cookie, Page, expect

from tests.support.console import ConsoleSystem, screenshot

pytestmark = [pytest.mark.slow]


def _entries(client: redis.Redis, stream: str) -> list[tuple[str, dict[str, str]]]:
    """XRANGE of a stream (the client decodes responses)."""
    found: Any = client.xrange(stream)
    return [(str(entry_id), dict(fields)) for entry_id, fields in found]


def _cookie(cookie: Cookie, value: str) -> SetCookieParam:
    """The console cookie as the browser holds it, with `value`."""
    return {
        "name": cookie["name"],
        "value": value,
        "domain": cookie["domain"],
        "path": cookie["path"],
        "httpOnly": True,
        "sameSite": "Strict",
    }


def sign_in(page: Page, console_system: ConsoleSystem) -> None:
    """Open a fresh `orchestrator console` link: it lands on the projects page, signed in."""
    page.goto(console_system.sign_in_link())
    expect(page).to_have_url(f"{console_system.base}/console/")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def create_project(page: Page, name: str) -> str:
    page.fill("#name", name)
    page.get_by_role("button", name="Create").click()
    expect(page.locator("h1")).to_contain_text(name)
    return page.url.rsplit("/", 1)[-1]


def wait_status(page: Page, status: str, timeout_s: float) -> None:
    expect(page.locator("#status")).to_have_text(status, timeout=int(timeout_s * 1000))


@pytest.mark.timeout(420)
def test_whole_loop_in_the_browser(console_system: ConsoleSystem, page: Page) -> None:
    """Link sign-in → project → engineering task watched live (no reload) → deploy → the
    deployed URL from the project page answers with the deployed commit."""
    sign_in(page, console_system)
    project_id = create_project(page, "shop")
    screenshot(page, "project")

    page.fill("#spec", "add a /hello endpoint")
    page.get_by_role("button", name="Start task").click()
    assert "/console/tasks/" in page.url
    task_id = page.url.rsplit("/", 1)[-1]
    page.evaluate("window.__sameDocument = true")
    # the bar and the step list move while the document stays the same (no reload)
    page.wait_for_function(
        "window.__sameDocument === true && document.getElementById('bar').value > 0"
        " && document.querySelectorAll('#steps li').length >= 3",
        timeout=120_000,
    )
    first_value = page.evaluate("document.getElementById('bar').value")
    screenshot(page, "task-running")
    page.wait_for_function(
        f"window.__sameDocument === true && document.getElementById('bar').value > {first_value}",
        timeout=120_000,
    )
    wait_status(page, "completed", 180)
    result = page.locator("#result")
    expect(result).to_contain_text("commit_sha")
    expect(page.locator("#steps li").first).to_be_visible()  # a finished task keeps its steps
    screenshot(page, "task-completed")
    api_task = console_system.api("GET", f"/api/tasks/{task_id}", console_system.admin_key).json()
    assert api_task["status"] == "completed"
    commit = api_task["result"]["commit_sha"]
    expect(result).to_contain_text(commit)
    merged = api_task["result"].get("merged_sha") or commit
    # the result's commit with its diff, read from the project's repository
    expect(page.locator("#diff")).to_contain_text("hello")
    expect(page.locator("h2", has_text="Commit")).to_contain_text(merged[:12])
    runs = console_system.api("GET", f"/api/tasks/{task_id}/runs", console_system.admin_key).json()
    expect(page.locator("#activity li.run")).to_have_count(len(runs))

    page.goto(f"{console_system.base}/console/projects/{project_id}")
    page.get_by_role("button", name="Deploy main").click()
    assert "/console/tasks/" in page.url
    wait_status(page, "completed", 240)
    page.goto(f"{console_system.base}/console/projects/{project_id}")
    link = page.locator("#deployed-url")
    expect(link).to_be_visible()
    href = link.get_attribute("href")
    assert href
    expect(page.locator("#deploys")).to_contain_text(commit[:12])
    expect(page.locator("#commits")).to_contain_text(merged[:12])
    expect(page.locator("#health .health")).to_be_visible()
    screenshot(page, "project-deployed")
    page.goto(f"{console_system.base}/console/")
    expect(page.locator("#projects")).to_contain_text(commit[:12])
    expect(page.locator("#projects a.deployed")).to_have_attribute("href", href)
    screenshot(page, "projects")

    deployed = page.context.new_page()
    deployed.goto(href)
    served = json.loads(deployed.locator("body").inner_text())
    assert served["commit"] == commit
    deployed.goto(href.rstrip("/") + "/hello")
    assert "Hello from /hello" in deployed.locator("body").inner_text()


@pytest.mark.timeout(180)
def test_cancel_a_running_task(console_system: ConsoleSystem, page: Page) -> None:
    """The cancel button (with its confirmation) cancels the task; the page shows it live.
    The task is the second of its project, so it waits for its turn (task order) and cannot
    finish before the click, as a lone task of the built-in agent can on a warm system."""
    sign_in(page, console_system)
    create_project(page, "to-cancel")
    project_page = page.url
    page.fill("#spec", "add a /first endpoint")
    page.get_by_role("button", name="Start task").click()
    page.goto(project_page)
    page.fill("#spec", "add a /slow endpoint")
    page.get_by_role("button", name="Start task").click()
    task_id = page.url.rsplit("/", 1)[-1]
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel task").click()
    wait_status(page, "cancelled", 90)
    expect(page.get_by_role("button", name="Cancel task")).to_have_count(0)
    screenshot(page, "task-cancelled")
    api_task = console_system.api("GET", f"/api/tasks/{task_id}", console_system.admin_key).json()
    assert api_task["status"] == "cancelled"
    expect(page.locator("dl.facts dt", has_text="Cancelled")).to_have_count(1)


@pytest.mark.timeout(180)
def test_replay_a_dead_letter(console_system: ConsoleSystem, page: Page) -> None:
    """A message infra-service cannot read dies; the operations page shows it and replays it
    onto its stream."""
    stream = "provisioner:queue"
    client = redis.Redis.from_url(console_system.redis_url, decode_responses=True)
    marker = f"not json {time.time_ns()}"
    client.xadd(stream, {"type": "ProvisionerMessage", "payload": marker})
    dead = f"{{{stream}}}:dlq"
    deadline = time.monotonic() + 60
    dead_id = None
    while dead_id is None:
        assert time.monotonic() < deadline, "the malformed message was never dead-lettered"
        for entry_id, fields in _entries(client, dead):
            if marker in fields.values():
                dead_id = entry_id
        time.sleep(0.3)

    sign_in(page, console_system)
    page.goto(f"{console_system.base}/console/admin")
    screenshot(page, "operations")
    page.locator("#queues tr", has_text=stream).get_by_role("link").click()
    letter = page.locator("article.letter", has=page.locator(f"input[value='{dead_id}']"))
    expect(letter).to_contain_text(marker[:8])
    screenshot(page, "dead-letters")
    letter.get_by_role("button", name="Replay").click()
    expect(page.locator(f"input[value='{dead_id}']")).to_have_count(0)
    assert dead_id not in [entry_id for entry_id, _ in _entries(client, dead)]
    # moved back as a fresh entry of the stream (infra-service may dead-letter it again)
    payloads = [f.get("payload") for _, f in _entries(client, stream)]
    payloads += [f.get("payload") for _, f in _entries(client, dead)]
    assert marker in payloads
    client.close()


def _user_key(console_system: ConsoleSystem, telegram_id: int) -> str:
    created = console_system.api(
        "POST", "/api/users", console_system.admin_key, json={"telegram_id": telegram_id}
    )
    assert created.status_code == 201, created.text
    key = console_system.api(
        "POST",
        "/api/keys",
        console_system.admin_key,
        json={"name": "someone", "scope": "user", "user_id": created.json()["id"]},
    )
    assert key.status_code == 201, key.text
    return str(key.json()["key"])


@pytest.mark.timeout(180)
def test_access_rules(console_system: ConsoleSystem, context: BrowserContext, page: Page) -> None:
    """A user signed in with their key sees neither another user's project (404) nor the
    admin pages (403); a used link, a forged, expired or signed-out cookie is refused; a form
    without its CSRF token is refused."""
    theirs = console_system.api(
        "POST", "/api/projects", console_system.admin_key, json={"name": "admins"}
    )
    assert theirs.status_code == 201
    other_id = theirs.json()["id"]
    user_key = _user_key(console_system, 4242)

    page.goto(f"{console_system.base}/console/")
    expect(page).to_have_url(f"{console_system.base}/console/login?next=/console/")
    page.fill("#api_key", "orc_not-a-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".error")).to_contain_text("invalid or revoked")
    page.fill("#api_key", user_key)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{console_system.base}/console/")
    expect(page.locator("#projects")).not_to_contain_text("admins")
    expect(page.get_by_role("link", name="Operations")).to_have_count(0)

    answer = page.goto(f"{console_system.base}/console/projects/{other_id}")
    assert answer is not None
    assert answer.status == 404
    admin_pages = (
        "/console/admin",
        "/console/admin/users",
        "/console/admin/dlq?stream=x",
        "/console/admin/servers",
        "/console/admin/servers/local",
    )
    for admin_page in admin_pages:
        answer = page.goto(console_system.base + admin_page)
        assert answer is not None
        assert answer.status == 403, admin_page
    screenshot(page, "forbidden")

    # CSRF: a post without the token, or with a wrong one, is refused; with it, it works
    page.goto(f"{console_system.base}/console/")
    token = page.locator("input[name=csrf]").first.get_attribute("value")
    assert token
    forms: list[dict[str, str | float | bool]] = [
        {"name": "no-token"},
        {"name": "bad-token", "csrf": "0" * 64},
    ]
    for form in forms:
        refused = context.request.post(f"{console_system.base}/console/projects", form=form)
        assert refused.status == 403, form
    accepted = context.request.post(
        f"{console_system.base}/console/projects", form={"name": "with-token", "csrf": token}
    )
    assert accepted.ok
    archive = context.request.post(
        f"{console_system.base}/console/projects/{other_id}/archive",
        form={"confirm": "admins", "csrf": token},
    )
    assert archive.status == 404  # another user's project cannot be archived either
    assert console_system.api("GET", f"/api/projects/{other_id}", console_system.admin_key).json()[
        "status"
    ] != ("archived")
    listed = console_system.api("GET", "/api/projects?limit=500", user_key).json()["items"]
    assert sorted(p["name"] for p in listed) == ["with-token"]

    # expiry: the session key's age is past the session's time to live
    cookie = next(c for c in context.cookies() if c["name"] == "orc_console")
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"
    database = next(console_system.data_dir.glob("*.db"))
    with sqlite3.connect(database) as db:
        db.execute(
            "UPDATE api_keys SET created_at = '2020-01-01 00:00:00.000000'"
            " WHERE name = 'console-session' AND revoked_at IS NULL AND user_id = "
            "(SELECT id FROM users WHERE telegram_id = 4242)"
        )
    page.goto(f"{console_system.base}/console/")
    expect(page).to_have_url(f"{console_system.base}/console/login?next=/console/")

    # forged cookie
    context.add_cookies([_cookie(cookie, "orc_forged-secret")])
    page.goto(f"{console_system.base}/console/")
    expect(page).to_have_url(f"{console_system.base}/console/login?next=/console/")
    events = context.request.get(f"{console_system.base}/console/tasks/x/events")
    assert events.status == 401

    # sign out ends the session on the server: its cookie no longer works
    context.clear_cookies()
    link = console_system.sign_in_link()
    page.goto(link)
    expect(page).to_have_url(f"{console_system.base}/console/")
    spent = context.new_page().goto(link)
    assert spent is not None
    assert spent.status == 401
    live = next(c for c in context.cookies() if c["name"] == "orc_console")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{console_system.base}/console/login")
    context.add_cookies([_cookie(live, live["value"])])
    page.goto(f"{console_system.base}/console/")
    expect(page).to_have_url(f"{console_system.base}/console/login?next=/console/")
    screenshot(page, "login")


def test_link_endpoint_needs_a_key(console_system: ConsoleSystem) -> None:
    """`POST /console/links` without a key, with a bad one, or with a console session's own
    secret is refused."""
    assert httpx.post(f"{console_system.base}/console/links", timeout=10).status_code == 401
    bad = console_system.api("POST", "/console/links", "orc_nope")
    assert bad.status_code == 401
    good = console_system.api("POST", "/console/links", console_system.admin_key)
    assert good.status_code == 201
    assert good.json()["path"].startswith("/console/link/orc_")


@pytest.mark.timeout(480)
def test_chat_three_messages(console_system: ConsoleSystem, page: Page) -> None:
    """The chat page: create a project, develop an endpoint (its progress bar moves live),
    deploy it; the URL the PO reports answers."""
    sign_in(page, console_system)
    page.get_by_role("link", name="Chat").click()
    expect(page).to_have_url(f"{console_system.base}/console/chat")

    def say(text: str) -> None:
        page.fill("#text", text)
        page.get_by_role("button", name="Send").click()
        expect(page.locator(".from-you").last).to_contain_text(text)

    say("create project chatshop")
    expect(page.locator("#chat")).to_contain_text("Created project chatshop", timeout=120_000)
    say("develop a /hello endpoint")
    page.evaluate("window.__sameDocument = true")
    page.wait_for_function(
        "window.__sameDocument === true && [...document.querySelectorAll('.msg progress')]"
        ".some((bar) => bar.value > 0 && bar.value < 100)",
        timeout=180_000,
    )
    screenshot(page, "chat-progress")
    page.wait_for_function(
        "window.__sameDocument === true && /commit: [0-9a-f]{40}/"
        ".test(document.getElementById('chat').innerText)",
        timeout=240_000,
    )
    say("deploy")
    page.wait_for_function(
        "/URL: \\S+/.test(document.getElementById('chat').innerText)", timeout=240_000
    )
    screenshot(page, "chat")
    found = re.search(r"URL: (\S+)", page.locator("#chat").inner_text())
    assert found
    answer = httpx.get(found.group(1), timeout=30)
    assert answer.status_code == 200

    # the PO worker the chat started is listed on the operations page; deleting it stops it
    page.goto(f"{console_system.base}/console/admin")
    row = page.locator("#workers tbody tr", has_text="running").first
    expect(row).to_be_visible()
    worker_id = row.locator("td").first.inner_text()
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Delete").click()
    deadline = time.monotonic() + 60
    while True:
        page.goto(f"{console_system.base}/console/admin")
        still = page.locator("#workers tbody tr", has_text=worker_id)
        if still.count() == 0 or "stopped" in still.inner_text():
            break
        assert time.monotonic() < deadline, f"worker {worker_id} was not deleted"
        page.wait_for_timeout(1000)


def _no_horizontal_overflow(page: Page) -> None:
    """The document is no wider than the viewport (wide tables scroll inside their box)."""
    widths = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1], f"{page.url}: {widths[0]} px wide in {widths[1]} px"


@pytest.mark.timeout(240)
def test_a_phone_reads_every_main_page(console_system: ConsoleSystem, browser: Browser) -> None:
    """At 390x844 (a phone), no main page is wider than the screen: projects, a project, a
    task, chat, operations, servers, users."""
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    phone.set_default_timeout(30_000)
    try:
        page = phone.new_page()
        sign_in(page, console_system)
        project_id = create_project(page, "a-project-with-a-rather-long-name-on-a-phone")
        page.fill("#spec", "add a /phone endpoint")
        page.get_by_role("button", name="Start task").click()
        task_id = page.url.rsplit("/", 1)[-1]
        _no_horizontal_overflow(page)
        screenshot(page, "phone-task")
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Cancel task").click()
        wait_status(page, "cancelled", 90)
        _no_horizontal_overflow(page)
        for path in (
            "/console/",
            f"/console/projects/{project_id}",
            f"/console/tasks/{task_id}",
            "/console/chat",
            "/console/admin",
            "/console/admin/servers",
            "/console/admin/servers/local",
            "/console/admin/users",
        ):
            answer = page.goto(console_system.base + path)
            assert answer is not None
            assert answer.status == 200, path
            _no_horizontal_overflow(page)
        page.goto(f"{console_system.base}/console/projects/{project_id}")
        screenshot(page, "phone-project")
    finally:
        phone.close()


def _tab_to(page: Page, selector: str, most: int = 60) -> None:
    """Press Tab until the element `selector` has the focus."""
    for _ in range(most):
        page.keyboard.press("Tab")
        if page.evaluate(f"document.activeElement === document.querySelector({selector!r})"):
            return
    raise AssertionError(f"{selector} never got the focus in {most} presses of Tab")


@pytest.mark.timeout(240)
def test_keyboard_only(console_system: ConsoleSystem, page: Page) -> None:
    """With Tab, typing and Enter only: sign in with a key, reach the spec form and start a
    task, then cancel it (its confirmation accepted)."""
    page.goto(f"{console_system.base}/console/login")
    _tab_to(page, "#api_key")
    page.keyboard.type(console_system.admin_key)
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{console_system.base}/console/")
    _tab_to(page, "#name")
    page.keyboard.type("by-keyboard")
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_contain_text("by-keyboard")
    _tab_to(page, "#spec")
    page.keyboard.type("add a /keys endpoint")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Start task"
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/console/tasks/[0-9a-f-]+$"))
    task_id = page.url.rsplit("/", 1)[-1]
    page.once("dialog", lambda dialog: dialog.accept())
    _tab_to(page, "#cancel")
    page.keyboard.press("Enter")
    wait_status(page, "cancelled", 90)
    api_task = console_system.api("GET", f"/api/tasks/{task_id}", console_system.admin_key).json()
    assert api_task["spec"] == "add a /keys endpoint"


@pytest.mark.timeout(120)
def test_servers_and_archive_in_the_browser(console_system: ConsoleSystem, page: Page) -> None:
    """An admin sees the system's deploy server and its allocations; a project archived
    from its page (its name typed, the confirmation accepted) leaves the projects list."""
    sign_in(page, console_system)
    page.get_by_role("link", name="Servers").click()
    expect(page.locator("#servers")).to_contain_text("local")
    page.locator("#servers").get_by_role("link", name="local").click()
    expect(page.locator("#allocated")).to_contain_text(" of ")
    screenshot(page, "servers")

    page.goto(f"{console_system.base}/console/")
    create_project(page, "to-archive")
    page.locator("#archive summary").click()
    page.fill("#confirm-archive", "to-archive")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Archive").click()
    expect(page.locator("#archived-note")).to_be_visible()
    expect(page.locator("#spec")).to_have_count(0)
    page.goto(f"{console_system.base}/console/")
    expect(page.locator("#projects")).not_to_contain_text("to-archive")
    page.locator("#show-archived").click()
    expect(page.locator("#projects")).to_contain_text("to-archive")
