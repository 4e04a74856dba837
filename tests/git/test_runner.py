"""run_git: secrets reach git through the environment, are redacted, and deadlines kill git."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from shared.git import GitAuth, GitCommandError, GitTimeoutError, run_git


async def test_auth_config_reaches_git_and_is_redacted(tmp_path: Path) -> None:
    """git sees the auth entry (via GIT_CONFIG_* env) but our output shows it redacted."""
    auth = GitAuth(config={"http.https://git.example/.extraheader": "AUTHORIZATION: basic s3cr3t"})
    code, out, _ = await run_git(
        "config", "--get", "http.https://git.example/.extraheader", cwd=tmp_path, auth=auth
    )
    assert code == 0
    assert out.strip() == "[REDACTED]"
    assert "s3cr3t" in auth.secrets
    assert "s3cr3t" not in repr(auth)


async def test_failure_raises_with_gits_reason(tmp_path: Path) -> None:
    """A failing git raises GitCommandError naming the command and exit status."""
    with pytest.raises(GitCommandError, match=r"git rev-parse failed with exit status 128"):
        await run_git("rev-parse", "HEAD", cwd=tmp_path)


async def test_a_hanging_git_is_killed_at_its_deadline(tmp_path: Path) -> None:
    """A git waiting on a server that never answers is killed after timeout_s."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(GitTimeoutError):
            await run_git("ls-remote", f"http://127.0.0.1:{port}/x.git", timeout_s=0.5)
        assert time.monotonic() - started < 5
