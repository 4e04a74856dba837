"""The shipped templates render with copier and generate projects whose own tests pass."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from pathlib import Path

import httpx
import pytest

from services.scaffolder.errors import TemplateRenderError, UnknownModuleError
from services.scaffolder.render import (
    CopierRenderer,
    available_modules,
    check_modules,
    render_project,
    slugify,
)
from services.scaffolder.settings import TEMPLATES_DIR

_RUN_TIMEOUT_S = 100.0


def _clean_env(**extra: str) -> dict[str, str]:
    """Our environment without pytest's own variables; the generated tests load no plugins."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    env.update(extra)
    return env


async def _pytest_in(project: Path) -> tuple[int, str]:
    """Run the generated project's tests with our interpreter; (exit status, output)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
        cwd=project, env=_clean_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), _RUN_TIMEOUT_S)
    return process.returncode or 0, out.decode(errors="replace")


async def _render(dest: Path, modules: list[str], renderer: CopierRenderer) -> list[str]:
    return await render_project(
        dest,
        renderer=renderer,
        templates_dir=TEMPLATES_DIR,
        modules=modules,
        project_name="Demo Shop",
        repo_full_name="acme/demo-shop",
    )


def test_shipped_modules() -> None:
    """backend and telegram are shipped; the root template is not a module."""
    assert {"backend", "telegram"} <= set(available_modules(TEMPLATES_DIR))
    assert "_project" not in available_modules(TEMPLATES_DIR)


def test_module_checks_and_slugs() -> None:
    """Modules are de-duplicated in order; unknown or no modules are refused; slugs are tame."""
    assert check_modules(["telegram", "backend", "telegram"], TEMPLATES_DIR) == [
        "telegram",
        "backend",
    ]
    with pytest.raises(UnknownModuleError, match="mobile"):
        check_modules(["mobile"], TEMPLATES_DIR)
    with pytest.raises(UnknownModuleError, match="no module"):
        check_modules([], TEMPLATES_DIR)
    assert slugify("My Shop! 2.0") == "my-shop-2-0"
    assert slugify("¡¿") == "project"


async def test_root_files_and_module_layout(tmp_path: Path, renderer: CopierRenderer) -> None:
    """The root gets README and .gitignore; each module renders into its own directory."""
    files = await _render(tmp_path, ["backend"], renderer)
    assert "README.md" in files
    assert ".gitignore" in files
    assert "backend/app/main.py" in files
    assert "backend/Procfile" in files
    assert not any(name.startswith("telegram/") for name in files)
    assert not any(name.endswith((".jinja", "copier.yml")) for name in files)
    assert "Demo Shop" in (tmp_path / "README.md").read_text()
    assert "demo-shop-backend" in (tmp_path / "backend" / "pyproject.toml").read_text()


async def test_a_broken_template_raises_render_error(
    tmp_path: Path, renderer: CopierRenderer
) -> None:
    """A template copier cannot render raises TemplateRenderError naming the template."""
    templates = tmp_path / "templates"
    for name, body in (("_project", "ok\n"), ("broken", "{{ oops\n")):
        (templates / name).mkdir(parents=True)
        (templates / name / "copier.yml").write_text("project_name:\n  type: str\n")
        (templates / name / "README.md.jinja").write_text(body)
    with pytest.raises(TemplateRenderError, match="broken"):
        await render_project(
            tmp_path / "out",
            renderer=renderer,
            templates_dir=templates,
            modules=["broken"],
            project_name="x",
            repo_full_name="a/b",
        )


async def test_a_render_past_its_deadline_is_killed(tmp_path: Path) -> None:
    """A renderer that outlives timeout_s is killed and the render fails as timed out."""
    impatient = CopierRenderer(timeout_s=0.05)
    try:
        with pytest.raises(TemplateRenderError, match="timed out"):
            await _render(tmp_path, ["backend"], impatient)
    finally:
        impatient.close()


@pytest.mark.slow
async def test_generated_backend_tests_pass_and_can_fail(
    tmp_path: Path, renderer: CopierRenderer
) -> None:
    """The generated FastAPI project's own tests pass, and fail in a copy with /health broken."""
    good, broken = tmp_path / "good", tmp_path / "broken"
    await asyncio.gather(
        _render(good, ["backend"], renderer), _render(broken, ["backend"], renderer)
    )
    main = broken / "backend" / "app" / "main.py"
    main.write_text(main.read_text().replace('"status": "ok"', '"status": "down"'))
    (good_code, good_out), (broken_code, broken_out) = await asyncio.gather(
        _pytest_in(good / "backend"), _pytest_in(broken / "backend")
    )
    assert good_code == 0, good_out
    assert "4 passed" in good_out
    assert broken_code == 1, broken_out
    assert "1 failed, 3 passed" in broken_out


@pytest.mark.slow
async def test_generated_telegram_tests_pass(tmp_path: Path, renderer: CopierRenderer) -> None:
    """The generated aiogram bot's own tests pass without any network."""
    await _render(tmp_path, ["telegram"], renderer)
    code, output = await _pytest_in(tmp_path / "telegram")
    assert code == 0, output
    assert "4 passed" in output


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.mark.slow
async def test_generated_backend_serves_health_on_port_from_env(
    tmp_path: Path, renderer: CopierRenderer
) -> None:
    """`python -m app.main` listens on $PORT and answers GET /health with 200."""
    await _render(tmp_path, ["backend"], renderer)
    port = _free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.main",
        cwd=tmp_path / "backend", env=_clean_env(PORT=str(port)),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient() as client:
            while True:
                try:
                    response = await client.get(f"http://127.0.0.1:{port}/health")
                    break
                except httpx.TransportError:
                    assert process.returncode is None, "the service exited"
                    assert time.monotonic() < deadline, "the service never answered"
                    await asyncio.sleep(0.2)
        assert response.status_code == 200
        assert response.json() == {"status": "ok", "service": "demo-shop-backend"}
    finally:
        process.terminate()
        await process.wait()
