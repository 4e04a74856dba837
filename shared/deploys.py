"""How a deploy names the exact commit it ships, within the binding contracts.

Two places carry a commit without a field of their own (contract classes never grow fields):

- The deploy request to infra-service (`AnsibleDeployMessage`): its `repo_full_name` names
  the repository *pinned* at a commit, `owner/name@<sha>` (`pin_repo`; the `repo@rev` form
  pip and others use for git sources). `<sha>` is a full 40-character hex object name. A
  GitHub or local repository name never contains `@`, so the split is unambiguous, and a
  name without `@<sha>` still means the repository's default head (older publishers).
  infra-service reads it with `split_pinned` and fetches and releases exactly that commit.
- The deploy task (`TaskCreate.spec`): a deploy task whose spec is `commit <sha>` deploys
  that commit instead of the base branch's head (`deploy_spec`, `commit_of_spec`); a rollback
  is such a task. Any other spec of a deploy task (none, or free text) deploys the head.
"""

from __future__ import annotations

import re

__all__ = [
    "FULL_SHA",
    "SHA_PREFIX",
    "commit_of_spec",
    "deploy_spec",
    "pin_repo",
    "split_pinned",
]

FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
"""A full commit name (SHA-1 object id, lower case)."""
SHA_PREFIX = re.compile(r"^[0-9a-fA-F]{4,40}$")
"""What a person may type for a commit: 4 to 40 hex digits."""
_SPEC = re.compile(r"^\s*commit\s+(?P<sha>\S+)\s*$", re.IGNORECASE)
_PIN = "@"


def pin_repo(full_name: str, sha: str) -> str:
    """`owner/name` pinned at commit `sha`: `owner/name@sha` (ValueError on a bad sha)."""
    if not FULL_SHA.match(sha):
        raise ValueError(f"{sha!r} is not a full commit sha (40 hex digits)")
    return f"{full_name}{_PIN}{sha}"


def split_pinned(value: str) -> tuple[str, str | None]:
    """(`owner/name`, sha or None) of a possibly pinned repository name.

    Only a trailing `@<40 hex digits>` is a pin; anything else is returned unchanged."""
    name, sep, sha = value.rpartition(_PIN)
    if sep and name and FULL_SHA.match(sha):
        return name, sha
    return value, None


def deploy_spec(sha: str) -> str:
    """The spec of a deploy task that deploys commit `sha`."""
    if not FULL_SHA.match(sha):
        raise ValueError(f"{sha!r} is not a full commit sha (40 hex digits)")
    return f"commit {sha}"


def commit_of_spec(spec: str | None) -> str | None:
    """The commit a deploy task's spec names (`commit <sha>`), or None for any other spec.

    Raises ValueError when the spec has the form but the sha is not a full one."""
    match = _SPEC.match(spec or "")
    if match is None:
        return None
    sha = match.group("sha").lower()
    if not FULL_SHA.match(sha):
        raise ValueError(f"spec names {match.group('sha')!r}, not a full commit sha (40 hex)")
    return sha
