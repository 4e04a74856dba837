"""Repository mirrors: a task's clone comes from a local mirror fetched just before."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.worker_manager.errors import WorkerStartError
from services.worker_manager.mirrors import RepositoryMirrors
from services.worker_manager.workspace import clone_repository
from tests.workers.helpers import base_env, git, make_repo_with_remote


def test_clone_from_a_mirror_is_current_and_points_at_the_remote(tmp_path: Path) -> None:
    """The second clone sees what was pushed after the first (the mirror is fetched); the
    workspace's origin is the real remote and shares no file with the mirror."""
    clone, remote = make_repo_with_remote(tmp_path)
    mirrors = RepositoryMirrors(tmp_path / "mirrors")
    first = mirrors.refreshed(str(remote))
    assert first is not None
    assert (first / "HEAD").exists()
    (clone / "later.txt").write_text("pushed after the mirror was made\n")
    git(clone, "add", "later.txt")
    git(clone, "commit", "-q", "-m", "later")
    git(clone, "push", "-q", "origin", "HEAD:main")
    git(clone, "push", "-q", "origin", "HEAD:feature/old")
    mirror = mirrors.refreshed(str(remote))
    assert mirror == first
    workspace = tmp_path / "ws"
    clone_repository(str(remote), workspace, "feature/old", base_env(), mirror=mirror)
    assert (workspace / "later.txt").exists()
    assert git(workspace, "branch", "--show-current") == "feature/old"
    assert git(workspace, "remote", "get-url", "origin") == str(remote)
    assert not (workspace / ".git" / "objects" / "info" / "alternates").exists()
    mirror_inodes = {p.stat().st_ino for p in (mirror / "objects").rglob("*") if p.is_file()}
    ws_inodes = {
        p.stat().st_ino for p in (workspace / ".git" / "objects").rglob("*") if p.is_file()
    }
    assert not mirror_inodes & ws_inodes


def test_an_unreachable_remote_has_no_mirror_and_the_clone_names_it(tmp_path: Path) -> None:
    """No mirror for a remote that does not exist; the direct clone fails with its URL."""
    mirrors = RepositoryMirrors(tmp_path / "mirrors")
    missing = tmp_path / "nowhere.git"
    assert mirrors.refreshed(str(missing)) is None
    with pytest.raises(WorkerStartError, match=r"nowhere\.git"):
        clone_repository(str(missing), tmp_path / "ws", "b", dict(os.environ), mirror=None)


def test_mirror_names_carry_no_secret(tmp_path: Path) -> None:
    """The mirror's directory name is a digest of the URL without its credentials."""
    mirrors = RepositoryMirrors(tmp_path / "mirrors")
    with_token = mirrors.path_of("https://x-access-token:ghs_secret@example.invalid/o/r.git")
    assert "ghs_secret" not in str(with_token)
    assert with_token == mirrors.path_of("https://example.invalid/o/r.git")
