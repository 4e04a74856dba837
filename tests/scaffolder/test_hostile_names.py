"""A project's name is a free label: hostile names render into projects whose code, paths and
package metadata stay intact, run no command, and carry the name back exactly."""

from __future__ import annotations

import ast
import os
import tomllib
from pathlib import Path

import pytest

from services.scaffolder.render import CopierRenderer, render_project
from services.scaffolder.settings import TEMPLATES_DIR
from tests.scaffolder.test_templates import _pytest_in

HOSTILE = [
    'x"); import os; os.system("touch PWNED"); ("',
    '"""; __import__("os").system("touch PWNED"); """',
    "a\\\" + __import__('os').system('touch PWNED') + \\\"",
    "$(touch PWNED) `touch PWNED`",
    "../../etc/passwd",
    "line one\nline two\r\n\ttab",
    "{{ 7 * 7 }} {% raw %}",
    "Ünïcødé ✓ 🚀 שלום",
    "x" * 300,
]


@pytest.mark.parametrize("name", HOSTILE, ids=range(len(HOSTILE)))
async def test_a_hostile_name_renders_safe_code_and_paths(
    name: str, tmp_path: Path, renderer: CopierRenderer
) -> None:
    """Every generated Python file parses and holds the name only as an exact literal; the
    TOML metadata reads back; every file lies under the destination with a tame name."""
    dest = tmp_path / "out"
    files = await render_project(
        dest,
        renderer=renderer,
        templates_dir=TEMPLATES_DIR,
        modules=["backend", "telegram"],
        project_name=name,
        repo_full_name="projects/x-12345678",
    )
    for relative in files:
        path = (dest / relative).resolve()
        assert path.is_relative_to(dest.resolve())
        assert all(part.isascii() and len(part) <= 80 for part in Path(relative).parts)
    main = (dest / "backend/app/main.py").read_text()
    literals = {node.value for node in ast.walk(ast.parse(main)) if isinstance(node, ast.Constant)}
    assert name in literals
    for source in dest.rglob("*.py"):
        ast.parse(source.read_text(), filename=str(source))
    for module, suffix in (("backend", "backend service"), ("telegram", "Telegram bot")):
        meta = tomllib.loads((dest / module / "pyproject.toml").read_text())
        assert meta["project"]["description"] == f"{name}: {suffix}"
        assert meta["project"]["name"].replace("-", "").isalnum()


async def test_the_generated_tests_pass_and_run_nothing_of_the_name(
    tmp_path: Path, renderer: CopierRenderer
) -> None:
    """The module's own tests pass with the worst of the names, and no `PWNED` file appears."""
    dest = tmp_path / "out"
    await render_project(
        dest,
        renderer=renderer,
        templates_dir=TEMPLATES_DIR,
        modules=["backend"],
        project_name=HOSTILE[0] + HOSTILE[1],
        repo_full_name="projects/x-12345678",
    )
    status, output = await _pytest_in(dest / "backend")
    assert status == 0, output
    assert _pwned(tmp_path) == []


def _pwned(*roots: Path) -> list[Path]:
    """`PWNED` files a hostile name would have made (the tests run in `roots`, cwd, /tmp)."""
    found = [path for root in roots for path in root.rglob("PWNED")]
    return found + [p for p in (Path("PWNED"), Path(os.sep) / "tmp" / "PWNED") if p.exists()]
