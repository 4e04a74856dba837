"""The README's and the docs' commands exist and their links resolve, so the docs cannot rot."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer.main

from services.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PAGES = [ROOT / "README.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)


def _commands(pages: list[Path] | None = None) -> list[list[str]]:
    """Every command line of the bash blocks of `pages` (default: the README), split into
    words (comments dropped)."""
    texts = [README] if pages is None else [page.read_text() for page in pages]
    lines: list[list[str]] = []
    for block in [block for text in texts for block in _blocks(text)]:
        for raw in block.splitlines():
            line = raw.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                lines.append(shlex.split(line))
    return lines


def _make_targets() -> set[str]:
    makefile = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z-]*):", makefile, flags=re.MULTILINE))


def _resolve(words: list[str]) -> Any:
    """The click command that `orchestrator <words>` runs; fails on an unknown subcommand."""
    # typer ships its own copy of click; its classes are reached through the command itself
    command: Any = typer.main.get_command(app)
    group_type = type(command)
    for word in words:
        if word.startswith("-") or not isinstance(command, group_type):
            break
        sub = command.get_command(command.context_class(command), word)
        if sub is None:
            if command.invoke_without_command:
                break  # an argument of the group itself
            pytest.fail(f"README runs `orchestrator {' '.join(words)}`: no command {word!r}")
        command = sub
    return command


def test_readme_has_the_quick_start() -> None:
    """The quick start is the two commands `make up` and `make test`."""
    commands = [" ".join(words) for words in _commands()]
    assert "make up" in commands
    assert "make test" in commands


def test_every_make_verb_in_the_readme_exists() -> None:
    """Each `make <verb>` of the README is a target of the Makefile."""
    targets = _make_targets()
    for words in _commands():
        if words[0] == "make":
            assert words[1] in targets, f"README runs `make {words[1]}`, Makefile lacks it"


def test_every_orchestrator_command_in_the_readme_exists() -> None:
    """Each `orchestrator ...` line of the README names commands that exist."""
    seen = 0
    for words in _commands():
        program = Path(words[0]).name
        if program == "orchestrator":
            _resolve(words[1:])
            seen += 1
    assert seen > 0


def test_every_orchestrator_command_and_make_verb_in_the_docs_exists() -> None:
    """The docs' bash blocks run only `orchestrator` commands and `make` verbs that exist."""
    targets = _make_targets()
    for words in _commands(PAGES):
        program = Path(words[0]).name
        if program == "orchestrator":
            _resolve(words[1:])
        elif program == "make" and len(words) > 1 and not words[1].startswith("-"):
            assert words[1] in targets, f"the docs run `make {words[1]}`, Makefile lacks it"


def test_every_relative_link_of_the_docs_resolves() -> None:
    """Each relative link of the README, bench/README.md and docs/*.md names a file that
    exists (anchors and web links are not checked)."""
    broken: list[str] = []
    for page in PAGES:
        for target in LINK.findall(page.read_text()):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue
            path = target.split("#", 1)[0]
            if not (page.parent / path).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, "broken links: " + ", ".join(broken)


def test_the_readme_fits_on_two_screens() -> None:
    """The README is a front door (at most 150 lines); the manuals live in docs/."""
    assert len(README.splitlines()) <= 150
