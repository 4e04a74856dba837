"""A deploy with secrets: they reach the project, and nothing else (argv, logs, results)."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import textwrap

import httpx
import psutil
import pytest

from services.infra_service.handlers import handle_ansible_deploy_message
from services.infra_service.settings import InfraSettings
from shared.contracts import AnsibleDeployMessage, ProvisionerResult
from shared.redis_server import free_port
from tests.support.infra_service import make_deps, make_repo

pytestmark = pytest.mark.slow

PLANTED = "s3cr3t-PLANTED-7f1c9e2a"
FASTAPI_MAIN = textwrap.dedent(
    """
    import os
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/health")
    def health() -> dict[str, object]:
        secret = os.environ.get("API_SECRET", "")
        return {"status": "ok", "secret_length": len(secret), "greeting": os.environ["GREETING"]}
    """
)
PYPROJECT = textwrap.dedent(
    """
    [project]
    name = "vault-backend"
    version = "0.1.0"
    dependencies = ["fastapi>=0.110", "uvicorn>=0.27"]
    """
)


async def scan_process_table(found: list[str], stop: asyncio.Event, planted: str = PLANTED) -> None:
    """Collect every command line that shows the planted secret until `stop` is set."""
    while not stop.is_set():
        for process in psutil.process_iter(["cmdline"]):
            cmdline = " ".join(process.info["cmdline"] or [])
            if planted in cmdline:
                found.append(cmdline)
        await asyncio.sleep(0.05)


async def test_secret_reaches_the_project_and_leaks_nowhere(
    infra_settings: InfraSettings,
    provisioned: ProvisionerResult,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A planted secret is in the 0600 env file and the app, never in argv, logs or results."""
    caplog.set_level(logging.DEBUG)
    secrets_file = infra_settings.data_dir / "secrets" / "vault.env"
    secrets_file.parent.mkdir(parents=True, exist_ok=True)
    secrets_file.write_text(f"API_SECRET={PLANTED}\nGREETING=hello\n")
    make_repo(
        infra_settings,
        "acme/vault",
        {
            "backend/app/__init__.py": "",
            "backend/app/main.py": FASTAPI_MAIN,
            "backend/pyproject.toml": PYPROJECT,
        },
    )
    deps, progress = make_deps(infra_settings, {"GITHUB_TOKEN": "ghp_" + PLANTED})
    message = AnsibleDeployMessage(
        project_id="vault",
        project_name="Vault",
        repo_full_name="acme/vault",
        server_ip="127.0.0.1",
        port=free_port(),
        modules=["backend"],
        github_token_ref="env:GITHUB_TOKEN",
        secrets_ref=f"file:{secrets_file}",
    )
    found: list[str] = []
    stop = asyncio.Event()
    scanner = asyncio.create_task(scan_process_table(found, stop))
    try:
        result = await handle_ansible_deploy_message(message, deps)
    finally:
        stop.set()
        await scanner

    assert result.status == "success", result.error
    assert result.deployed_url is not None
    answer = await asyncio.to_thread(httpx.get, f"{result.deployed_url}/health", timeout=5)
    assert answer.json() == {"status": "ok", "secret_length": len(PLANTED), "greeting": "hello"}
    env_file = infra_settings.local_base_dir / "apps" / "vault" / ".env"
    assert stat.S_IMODE(os.stat(env_file).st_mode) == 0o600
    assert PLANTED in env_file.read_text()
    assert found == []
    assert PLANTED not in result.model_dump_json()
    assert all(PLANTED not in event.model_dump_json() for event in progress.events)
    captured = capfd.readouterr()
    assert PLANTED not in captured.out + captured.err
    assert PLANTED not in caplog.text
    assert not list((infra_settings.work_dir / "jobs").iterdir())  # inventories and keys gone
