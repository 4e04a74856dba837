"""Helpers of the worker tests: fake CLI commands, process-table checks, git fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil

FAKE_CLIS = Path(__file__).parent / "fake_clis"
FAKE_CLAUDE = [sys.executable, str(FAKE_CLIS / "fake_claude.py")]
FAKE_DROID = [sys.executable, str(FAKE_CLIS / "fake_droid.py")]
CHILD_MARKER = "fake-cli-child"


def processes_with(marker: str) -> list[psutil.Process]:
    """Live (non-zombie) processes whose command line contains `marker`."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
            if marker in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def base_env() -> dict[str, str]:
    """A minimal environment for agent processes in tests."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}


def git(cwd: Path, *args: str) -> str:
    """Run git in `cwd`; answer its stdout."""
    env = {
        **base_env(),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def make_repo_with_remote(root: Path) -> tuple[Path, Path]:
    """A bare remote and a clone of it with one commit on `main`: (clone, remote)."""
    remote = root / "remote.git"
    clone = root / "clone"
    git(root, "init", "-q", "--bare", "-b", "main", str(remote))
    git(root, "clone", "-q", str(remote), str(clone))
    (clone / "README.md").write_text("hello\n")
    git(clone, "add", "README.md")
    git(clone, "commit", "-q", "-m", "init")
    git(clone, "push", "-q", "origin", "HEAD:main")
    return clone, remote


def read_text(path: Path) -> str:
    """A file's text (a plain function, so async tests need no blocking-call waiver)."""
    return path.read_text(encoding="utf-8")


def exists(path: Path) -> bool:
    """True when the path exists."""
    return path.exists()
