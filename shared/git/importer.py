"""Bring an existing repository into a project's own one: check the source URL, mirror it.

`check_source_url` refuses what must never reach `git` (an option-looking URL such as
`--upload-pack=...`, a remote-helper transport such as `ext::`, credentials in the URL, a
local path outside the allowed roots or inside the system's own repositories).
`fetch_source` clones the source bare (all branches and tags), `push_copy` pushes every branch and
tag to the project's repository; when the source has no branch named like the system's
default branch, its HEAD branch is pushed under that name too, so engineering tasks and
deploys find their base. `SourceError` says, in words a user can act on, what is wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from shared.git.errors import GitCommandError, GitError, GitTimeoutError
from shared.git.runner import GitAuth, run_git

__all__ = [
    "SourceCopy",
    "SourceError",
    "check_source_url",
    "fetch_source",
    "push_copy",
    "source_name",
]

_SCP_LIKE = re.compile(r"^(?P<user>[A-Za-z0-9._-]+@)?(?P<host>[A-Za-z0-9.-]+):(?P<path>[^/].*)$")
_NETWORK_SCHEMES = ("https", "http", "ssh", "git")
_SAFE_PROTOCOLS = "https:http:ssh:git:file"
_MAX_URL = 2000


class SourceError(ValueError):
    """A source repository that cannot be imported; the message says why."""


def _is_within(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def check_source_url(
    url: str, *, local_roots: Sequence[Path], forbidden: Sequence[Path] = ()
) -> str:
    """The URL git will fetch (a local path as a `file://` URL), or `SourceError`.

    Network URLs (`https`, `http`, `ssh`, `git`, `user@host:path`) may name any host; a local
    path or `file://` URL must lie inside one of `local_roots` and outside `forbidden` (the
    system's own repositories: a user never imports another project's code this way)."""
    text = url.strip()
    if not text:
        raise SourceError("the repository URL is empty")
    if text.startswith("-"):
        raise SourceError("the repository URL must not start with '-' (it would be an option)")
    if len(text) > _MAX_URL or any(ord(char) < 32 or char.isspace() for char in text):
        raise SourceError("the repository URL must be one word without control characters")
    if "::" in text:
        raise SourceError("remote-helper transports ('<transport>::...') are not allowed")
    parts = urlsplit(text)
    if parts.scheme in _NETWORK_SCHEMES:
        if not parts.hostname:
            raise SourceError(f"the repository URL names no host: {text[:200]!r}")
        if parts.hostname.startswith("-") or (parts.username or "").startswith("-"):
            raise SourceError("the repository URL's host or user must not start with '-'")
        if parts.password or (parts.username and parts.scheme in ("https", "http")):
            raise SourceError(
                "the repository URL must not hold credentials (they would be stored and "
                "logged); import a repository the git provider can reach without them"
            )
        if parts.query or parts.fragment:
            raise SourceError("the repository URL must not have a query or a fragment")
        return text
    if parts.scheme == "file" or text.startswith("/") or text.startswith("~"):
        raw = parts.path if parts.scheme == "file" else text
        try:
            path = Path(raw).expanduser()
        except RuntimeError:  # '~name' of a user this machine does not know
            raise SourceError(
                f"{raw.split('/', 1)[0][:100]!r} names no home directory on this machine"
            ) from None
        if not path.is_absolute():
            raise SourceError("a local repository must be an absolute path")
        resolved = path.resolve()
        roots = [Path(root).expanduser().resolve() for root in local_roots]
        if not roots:
            raise SourceError(
                "local paths cannot be imported here (no allowed local roots: "
                "ORCHESTRATOR_API__IMPORT_ROOTS); use a network git URL"
            )
        if not _is_within(resolved, roots) or _is_within(
            resolved, [Path(p).resolve() for p in forbidden]
        ):
            allowed = ", ".join(str(root) for root in roots)
            raise SourceError(
                f"{resolved} is outside the directories allowed for import ({allowed})"
            )
        if not resolved.exists():
            raise SourceError(f"{resolved} does not exist")
        return resolved.as_uri()
    if parts.scheme:
        raise SourceError(
            f"scheme {parts.scheme!r} is not allowed (https, http, ssh, git, or a local path)"
        )
    if _SCP_LIKE.match(text):
        return text
    raise SourceError(
        f"not a git URL: {text[:200]!r} (https://host/owner/repo.git, user@host:owner/repo, "
        "ssh://..., or an absolute local path)"
    )


def source_name(url: str) -> str:
    """A project name from a source URL: its last path part without `.git` (`shop.git` →
    `shop`)."""
    path = urlsplit(url).path if "://" in url else url.rsplit(":", 1)[-1]
    last = path.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
    return last or "imported"


def _safe_env() -> dict[str, str]:
    """Git may use only plain transports (no `ext::`, also not in submodules or redirects)."""
    return {
        "GIT_ALLOW_PROTOCOL": _SAFE_PROTOCOLS,
        "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new",
    }


def _why(error: GitError) -> str:
    detail = ""
    if isinstance(error, GitCommandError):
        lines = [line.strip() for line in error.stderr.splitlines() if line.strip()]
        detail = lines[-1][:300] if lines else ""
    if isinstance(error, GitTimeoutError):
        return "the repository did not answer in time"
    return detail or str(error)[:300]


@dataclass(frozen=True)
class SourceCopy:
    """A bare copy of a source repository (`fetch_source`), ready to be pushed."""

    path: Path
    branches: list[str]
    head: str
    """The source's HEAD branch (its default), one of `branches`."""


@contextlib.asynccontextmanager
async def fetch_source(
    source: str, *, work_dir: Path, auth: GitAuth | None = None, timeout_s: float = 300.0
) -> AsyncIterator[SourceCopy]:
    """A bare clone of `source` (a URL from `check_source_url`) with every branch and tag,
    removed on exit; `SourceError` when it cannot be read (unreachable, not a repository,
    no branch)."""
    await asyncio.to_thread(work_dir.mkdir, parents=True, exist_ok=True)
    tmp = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="import-", dir=work_dir))
    mirror = tmp / "source.git"
    try:
        try:
            await run_git(
                "clone", "--bare", "--quiet", "--no-hardlinks", "--", source, str(mirror),
                auth=auth, extra_env=_safe_env(), timeout_s=timeout_s,
            )  # fmt: skip
        except GitError as error:
            raise SourceError(
                f"cannot read the repository (unreachable, or not a git repository): {_why(error)}"
            ) from None
        _, out, _ = await run_git(
            "for-each-ref", "--format=%(refname:short)", "refs/heads", cwd=mirror
        )
        branches = sorted(line for line in out.splitlines() if line)
        if not branches:
            raise SourceError("the repository has no branches (nothing to import)")
        code, head, _ = await run_git("symbolic-ref", "--short", "HEAD", cwd=mirror, check=False)
        main = head.strip() if code == 0 and head.strip() in branches else branches[0]
        yield SourceCopy(mirror, branches, main)
    finally:
        await asyncio.to_thread(shutil.rmtree, tmp, True)


async def push_copy(
    copy: SourceCopy,
    target_url: str,
    *,
    default_branch: str,
    auth: GitAuth | None = None,
    timeout_s: float = 300.0,
) -> list[str]:
    """Push every branch and tag of `copy` to `target_url`; the source's HEAD branch also as
    `default_branch` when the source has none of that name. Returns the branches pushed."""
    refspecs = ["refs/heads/*:refs/heads/*", "refs/tags/*:refs/tags/*"]
    if default_branch not in copy.branches:
        refspecs.append(f"refs/heads/{copy.head}:refs/heads/{default_branch}")
    await run_git(
        "push", "--quiet", "--", target_url, *refspecs,
        cwd=copy.path, auth=auth, extra_env=_safe_env(), timeout_s=timeout_s,
    )  # fmt: skip
    return sorted({*copy.branches, default_branch})
