"""Fixtures of the git tests: a local provider under tmp_path, a worktree with one commit."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.git import LocalGitProvider, commit_all, init_worktree


@pytest.fixture
def provider(tmp_path: Path) -> LocalGitProvider:
    """A local provider whose bare repositories live under tmp_path/repos."""
    return LocalGitProvider(tmp_path / "repos")


@pytest.fixture
async def worktree(tmp_path: Path) -> Path:
    """A working copy on branch main with one commit (README.md, src/app.py)."""
    path = tmp_path / "work"
    await init_worktree(path, branch="main")
    (path / "README.md").write_text("hello\n")
    (path / "src").mkdir()
    (path / "src" / "app.py").write_text("print('hi')\n")
    await commit_all(path, "first")
    return path
