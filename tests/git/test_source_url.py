"""check_source_url: what an import may name, refused with the reason and never a crash."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.git.importer import SourceError, check_source_url


def test_a_home_of_an_unknown_user_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="'~no-such-user-q7' names no home directory"):
        check_source_url("~no-such-user-q7/repo", local_roots=[tmp_path])


def test_a_repository_inside_an_allowed_root_is_taken(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    answer = check_source_url(str(repo), local_roots=[tmp_path])
    assert answer == repo.resolve().as_uri()


def test_a_path_outside_the_allowed_roots_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="outside the directories allowed"):
        check_source_url("/etc", local_roots=[tmp_path / "allowed"])
