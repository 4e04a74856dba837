"""Repository mirrors: a task's clone comes from a local mirror fetched just before."""

from __future__ import annotations

import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from services.worker_manager.errors import WorkerStartError
from services.worker_manager.mirrors import RepositoryMirrors
from services.worker_manager.workspace import clone_repository, update_prepared_clone
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


def test_concurrent_refreshes_share_fetches_and_stay_current(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight clones of a burst asking at once do not queue for eight fetches: a call that
    finds a fetch begun after it asked uses it; every one still sees what was pushed before
    it asked, and a call made after a push fetches again."""
    clone, remote = make_repo_with_remote(tmp_path)
    mirrors = RepositoryMirrors(tmp_path / "mirrors")
    assert mirrors.refreshed(str(remote)) is not None
    fetches: list[list[str]] = []
    real_run = subprocess.run

    def counting_run(argv: list[str], **kwargs: Any) -> Any:
        if "fetch" in argv:
            fetches.append(argv)
            time.sleep(0.2)  # a slow remote: the others arrive while this one runs
        return real_run(argv, **kwargs)

    monkeypatch.setattr(subprocess, "run", counting_run)
    (clone / "burst.txt").write_text("pushed before the burst\n")
    git(clone, "add", "burst.txt")
    git(clone, "commit", "-q", "-m", "burst")
    git(clone, "push", "-q", "origin", "HEAD:main")
    head = git(clone, "rev-parse", "HEAD")
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: mirrors.refreshed(str(remote)), range(8)))
    assert all(answer == mirrors.path_of(str(remote)) for answer in answers)
    assert 1 <= len(fetches) <= 3, fetches
    mirror = mirrors.path_of(str(remote))
    assert git(mirror, "rev-parse", "refs/heads/main") == head
    before = len(fetches)
    git(clone, "commit", "-q", "--allow-empty", "-m", "after")
    git(clone, "push", "-q", "origin", "HEAD:main")
    assert mirrors.refreshed(str(remote)) == mirror
    assert len(fetches) == before + 1
    assert git(mirror, "rev-parse", "refs/heads/main") == git(clone, "rev-parse", "HEAD")


def test_a_prepared_clone_is_claimed_once_and_brought_up_to_date(tmp_path: Path) -> None:
    """One claim gets the prepared clone (the next finds none); brought up to date, it has
    what was pushed after it was made, the task's branch at the base, and origin the remote;
    without a branch, the default branch is reset to the remote's."""
    clone, remote = make_repo_with_remote(tmp_path)
    mirrors = RepositoryMirrors(tmp_path / "mirrors")
    prepared = mirrors.prepare(str(remote))
    assert prepared == mirrors.prepared_path(str(remote))
    assert mirrors.prepare(str(remote)) is None  # one is there already
    (clone / "later.txt").write_text("later\n")
    git(clone, "add", "later.txt")
    git(clone, "commit", "-q", "-m", "later")
    git(clone, "push", "-q", "origin", "HEAD:main")
    first, second = tmp_path / "ws1", tmp_path / "ws2"
    assert mirrors.claim_prepared(str(remote), first)
    assert not mirrors.claim_prepared(str(remote), second)
    update_prepared_clone(str(remote), first, "task/1", base_env(), base="main")
    assert (first / "later.txt").exists()
    assert git(first, "branch", "--show-current") == "task/1"
    assert git(first, "rev-parse", "HEAD") == git(clone, "rev-parse", "HEAD")
    assert git(first, "remote", "get-url", "origin") == str(remote)
    assert mirrors.prepare(str(remote)) is not None
    git(clone, "commit", "-q", "--allow-empty", "-m", "again")
    git(clone, "push", "-q", "origin", "HEAD:main")
    assert mirrors.claim_prepared(str(remote), second)
    update_prepared_clone(str(remote), second, None, base_env(), base=None)
    assert git(second, "rev-parse", "HEAD") == git(clone, "rev-parse", "HEAD")


def test_a_prepared_clone_whose_remote_is_gone_fails_with_its_url(tmp_path: Path) -> None:
    """Bringing a prepared clone up to date fails with the remote's name, like a clone."""
    _, remote = make_repo_with_remote(tmp_path)
    mirrors = RepositoryMirrors(tmp_path / "mirrors")
    assert mirrors.prepare(str(remote)) is not None
    workspace = tmp_path / "ws"
    assert mirrors.claim_prepared(str(remote), workspace)
    moved = remote.rename(tmp_path / "moved.git")
    with pytest.raises(WorkerStartError, match=r"remote\.git"):
        update_prepared_clone(str(remote), workspace, "b", base_env(), base=None)
    assert moved.exists()


def test_a_prepared_clone_is_freshened_and_dropped_when_that_fails(tmp_path: Path) -> None:
    """Freshening fetches what was pushed into the prepared clone and moves its default
    branch there; with no prepared clone it does nothing; when the remote is gone the
    prepared clone is removed (the next create clones as without one)."""
    clone, remote = make_repo_with_remote(tmp_path)
    mirrors = RepositoryMirrors(tmp_path / "mirrors")
    assert not mirrors.freshen(str(remote))
    prepared = mirrors.prepare(str(remote))
    assert prepared is not None
    git(clone, "commit", "-q", "--allow-empty", "-m", "integrated")
    git(clone, "push", "-q", "origin", "HEAD:main")
    assert mirrors.freshen(str(remote))
    assert git(prepared, "rev-parse", "HEAD") == git(clone, "rev-parse", "HEAD")
    assert git(prepared, "status", "--porcelain") == ""
    remote.rename(tmp_path / "moved.git")
    assert not mirrors.freshen(str(remote))
    assert not prepared.exists()
