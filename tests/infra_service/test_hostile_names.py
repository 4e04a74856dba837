"""Hostile names on a deploy server: infra-service names a project's directory after its id
(`app_name_of`), and the scripts it ships (`deployctl.py`, `supervise.py`) refuse any name
that is not one plain directory name, so no value reaches outside `<root>/apps/`, and names
travel as argv (never through a shell)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from services.infra_service.errors import InfraError
from services.infra_service.handlers import app_name_of
from tests.infra_service.test_units import SCRIPTS, _load_script
from tests.support.hostile import HOSTILE_NAMES, PWNED

IDS = [f"{index}:{name[:16]!r}" for index, name in enumerate(HOSTILE_NAMES)]
REFUSED = [*HOSTILE_NAMES, "a/b", "a b", "-x", "x" * 65, ""]
"""Names the scripts refuse: every hostile one, plus a few a careless caller could send."""
REASONS = ("invalid project name", "needs a project name", "unrecognized arguments")
"""How they refuse: the name check, or argparse for a name that looks like an option."""


@pytest.fixture
def supervise(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The server's supervise.py, imported as the scripts import it."""
    return _load_script("supervise", monkeypatch)


@pytest.mark.parametrize("project_id", HOSTILE_NAMES, ids=IDS)
def test_app_name_of_a_hostile_id_is_one_plain_bounded_name(
    project_id: str, supervise: ModuleType
) -> None:
    """A hostile project id gives a name the scripts accept (at most 64 characters, one path
    component) or an error; never a path."""
    try:
        name = app_name_of(project_id)
    except InfraError:
        with pytest.raises(InfraError, match="no usable characters"):
            app_name_of(project_id)
        return
    assert supervise.is_app_name(name), name
    assert len(name) <= 64
    assert Path(name).name == name
    assert name not in (".", "..")


@pytest.mark.parametrize("command", ["fetch", "install", "prepare", "release", "abort"])
def test_deployctl_refuses_a_hostile_name_and_touches_nothing(
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every step refuses every name that is not a plain directory name with a JSON error,
    before it reads or writes anything (the job's step record included)."""
    deployctl = _load_script("deployctl", monkeypatch)
    root = tmp_path / "srv" / "base"
    for name in REFUSED:
        argv = ["--root", str(root), "--job", "job-1", "--repo", "/nope.git", command, name]
        try:
            code = deployctl.main(argv)
        except SystemExit as exited:  # argparse took a leading dash for an option
            code = exited.code
        out, err = capsys.readouterr()
        assert code in (1, 2), name[:40]
        error = json.loads(out)["error"] if code == 1 else err
        assert any(reason in error for reason in REASONS), error
    assert not (tmp_path / "srv").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert not PWNED.exists()


@pytest.mark.parametrize("command", ["start", "stop", "status", "run"])
def test_supervise_refuses_a_hostile_name(
    command: str, tmp_path: Path, supervise: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    """The supervisor exits with a usage error for every such name and creates nothing."""
    root = tmp_path / "srv"
    for name in [n for n in REFUSED if n]:
        with pytest.raises(SystemExit) as exited:
            supervise.main(["--root", str(root), command, name])
        assert exited.value.code == 2
        error = capsys.readouterr().err
        assert any(reason in error for reason in REASONS), error
    assert not root.exists()
    assert not PWNED.exists()


def test_a_shell_word_as_a_name_runs_nothing_through_the_real_script(tmp_path: Path) -> None:
    """Run as the playbook runs it (a process, argv): `$(touch ...)` is refused as a name,
    not executed."""
    name = f"$(touch {PWNED})"
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "deployctl.py"), "--root", str(tmp_path), "fetch", name],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "invalid project name" in json.loads(done.stdout)["error"]
    assert not PWNED.exists()
    assert list(tmp_path.iterdir()) == []
