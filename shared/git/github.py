"""`GitHubProvider`: repositories on GitHub (or GitHub Enterprise) through its REST API.

The token is resolved by the caller (see `resolve_token_ref`) and handed in as a `SecretStr`;
it goes to the API in the `Authorization` header and to git as an `http.<host>.extraHeader`
entry carried by the environment, never in a URL, argv, log line or error text.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from pydantic import SecretStr

from shared.git.errors import ProviderError, RepoNotFoundError, RepoOutsideRootError
from shared.git.ops import check_sha
from shared.git.provider import (
    CommitDiff,
    CommitSummary,
    PullRequest,
    RemoteRepo,
    split_full_name,
)
from shared.git.runner import GitAuth

__all__ = ["GitHubProvider", "resolve_token_ref"]

_API_VERSION = "2022-11-28"


def resolve_token_ref(ref: str) -> SecretStr:
    """Resolve a secret reference: `env:NAME` (an environment variable) or `file:PATH`."""
    scheme, sep, target = ref.partition(":")
    if not sep or not target:
        raise ProviderError("a token reference must be 'env:NAME' or 'file:PATH'")
    if scheme == "env":
        value = os.environ.get(target)
        if not value:
            raise ProviderError(f"token reference names an unset variable {target!r}")
        return SecretStr(value.strip())
    if scheme == "file":
        try:
            return SecretStr(Path(target).read_text(encoding="utf-8").strip())
        except OSError as error:
            raise ProviderError(f"cannot read the token file: {error.strerror}") from None
    raise ProviderError(f"unknown token reference scheme {scheme!r}")


class GitHubProvider:
    """Repositories on GitHub, created private, reached over HTTPS with a token; only under
    `owner` when one is given (the system's providers always give it)."""

    def __init__(
        self,
        token: SecretStr,
        *,
        api_url: str = "https://api.github.com",
        git_url: str = "https://github.com",
        private: bool = True,
        timeout_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        owner: str | None = None,
    ) -> None:
        self._token = token
        self._owner = owner
        self._git_url = git_url.rstrip("/") + "/"
        self._private = private
        self._client = httpx.AsyncClient(
            base_url=api_url.rstrip("/"),
            timeout=timeout_s,
            transport=transport,
            headers={
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": _API_VERSION,
                "User-Agent": "codegen-orchestrator",
            },
        )
        self._login: str | None = None

    @property
    def name(self) -> str:
        """Provider name for logs."""
        return "github"

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    def auth(self) -> GitAuth:
        """An `extraHeader` for the git host with the token as basic credentials."""
        basic = base64.b64encode(f"x-access-token:{self._token.get_secret_value()}".encode())
        host = urlsplit(self._git_url)
        key = f"http.{host.scheme}://{host.netloc}/.extraheader"
        return GitAuth(config={key: f"AUTHORIZATION: basic {basic.decode()}"})

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str | int] | None = None,
        accept: str | None = None,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self._token.get_secret_value()}"}
        if accept is not None:
            headers["Accept"] = accept
        try:
            return await self._client.request(
                method, path, json=json, params=params, headers=headers
            )
        except httpx.HTTPError as error:
            raise ProviderError(f"GitHub API {method} {path}: {type(error).__name__}") from None

    @staticmethod
    def _fail(response: httpx.Response, what: str) -> ProviderError:
        try:
            detail = str(response.json().get("message", ""))
        except ValueError:
            detail = ""
        return ProviderError(
            f"GitHub API {what}: HTTP {response.status_code} {detail}".strip(),
            status_code=response.status_code,
        )

    @staticmethod
    def _to_repo(data: dict[str, Any]) -> RemoteRepo:
        return RemoteRepo(
            full_name=str(data["full_name"]),
            clone_url=str(data["clone_url"]),
            web_url=str(data["html_url"]),
            default_branch=str(data.get("default_branch") or "main"),
        )

    def _repo_path(self, full_name: str) -> str:
        """`/repos/<owner>/<name>`; `RepoOutsideRootError` for another owner than the
        configured one (GitHub owners compare without case)."""
        owner, name = split_full_name(full_name)
        if self._owner is not None and owner.lower() != self._owner.lower():
            raise RepoOutsideRootError(
                f"repository {full_name!r} is not under the owner {self._owner!r}"
            )
        return f"/repos/{quote(owner)}/{quote(name)}"

    async def get_repo(self, full_name: str) -> RemoteRepo | None:
        """The repository, or None on 404."""
        response = await self._request("GET", self._repo_path(full_name))
        if response.status_code == httpx.codes.NOT_FOUND:
            return None
        if response.status_code != httpx.codes.OK:
            raise self._fail(response, f"get {full_name}")
        return self._to_repo(response.json())

    async def _authenticated_login(self) -> str:
        if self._login is None:
            response = await self._request("GET", "/user")
            if response.status_code != httpx.codes.OK:
                raise self._fail(response, "get the authenticated user")
            self._login = str(response.json()["login"])
        return self._login

    async def create_repo(self, full_name: str, *, description: str | None = None) -> RemoteRepo:
        """Create an empty private repository under a user or an organisation; idempotent."""
        existing = await self.get_repo(full_name)
        if existing is not None:
            return existing
        owner, name = split_full_name(full_name)
        body: dict[str, Any] = {"name": name, "private": self._private, "auto_init": False}
        if description:
            body["description"] = description
        if owner.lower() == (await self._authenticated_login()).lower():
            path = "/user/repos"
        else:
            path = f"/orgs/{quote(owner)}/repos"
        response = await self._request("POST", path, json=body)
        if response.status_code == httpx.codes.CREATED:
            return self._to_repo(response.json())
        if response.status_code == httpx.codes.UNPROCESSABLE_ENTITY:
            raced = await self.get_repo(full_name)  # created meanwhile by another delivery
            if raced is not None:
                return raced
        raise self._fail(response, f"create {full_name}")

    async def head_of(self, full_name: str, branch: str) -> str | None:
        """The sha of the branch's head, or None on 404 (or 409: an empty repository)."""
        path = f"{self._repo_path(full_name)}/branches/{quote(branch, safe='')}"
        response = await self._request("GET", path)
        if response.status_code in (httpx.codes.NOT_FOUND, httpx.codes.CONFLICT):
            return None
        if response.status_code != httpx.codes.OK:
            raise self._fail(response, f"get branch {branch} of {full_name}")
        return str(response.json()["commit"]["sha"])

    async def heads_of(self, full_name: str, branches: Sequence[str]) -> list[str | None]:
        """`head_of` of each branch, the requests at once."""
        return list(await asyncio.gather(*(self.head_of(full_name, b) for b in branches)))

    async def _commit(self, full_name: str, sha: str) -> dict[str, Any] | None:
        path = f"{self._repo_path(full_name)}/commits/{check_sha(sha)}"
        response = await self._request("GET", path)
        if response.status_code in (
            httpx.codes.NOT_FOUND,
            httpx.codes.UNPROCESSABLE_ENTITY,
            httpx.codes.CONFLICT,
        ):
            return None
        if response.status_code != httpx.codes.OK:
            raise self._fail(response, f"get commit {sha} of {full_name}")
        data: dict[str, Any] = response.json()
        return data

    async def commit_exists(self, full_name: str, sha: str) -> bool:
        """True when GitHub knows the commit in that repository."""
        return await self._commit(full_name, sha) is not None

    async def files_changed(self, full_name: str, sha: str) -> list[str]:
        """Paths the commit changed (GitHub lists up to 300 files per commit)."""
        data = await self._commit(full_name, sha)
        if data is None:
            raise RepoNotFoundError(f"no commit {sha} in {full_name!r}")
        return sorted(str(entry["filename"]) for entry in data.get("files", []))

    async def commits(
        self, full_name: str, branch: str, *, limit: int, offset: int
    ) -> list[CommitSummary]:
        """The branch's commits (`GET /commits?sha=`); GitHub pages by `per_page`, so the
        pages around `offset` are read and cut (at most 100 commits a page)."""
        if limit <= 0:
            return []
        per_page = min(max(limit, 1), 100)
        page = offset // per_page + 1
        skip = offset % per_page
        found: list[CommitSummary] = []
        while len(found) < limit:
            response = await self._request(
                "GET",
                f"{self._repo_path(full_name)}/commits",
                params={"sha": branch, "per_page": per_page, "page": page},
            )
            if response.status_code in (httpx.codes.NOT_FOUND, httpx.codes.CONFLICT):
                return found
            if response.status_code != httpx.codes.OK:
                raise self._fail(response, f"list commits of {branch} in {full_name}")
            rows = response.json()
            found.extend(_commit_summary(row) for row in rows[skip:])
            if len(rows) < per_page:
                break
            page, skip = page + 1, 0
        return found[:limit]

    async def commit_diff(self, full_name: str, sha: str, *, max_bytes: int) -> CommitDiff:
        """The commit (`GET /commits/{sha}`) and its diff (the same with the diff media
        type), cut after `max_bytes`."""
        data = await self._commit(full_name, sha)
        if data is None:
            raise RepoNotFoundError(f"no commit {sha} in {full_name!r}")
        summary = _commit_summary(data)
        path = f"{self._repo_path(full_name)}/commits/{check_sha(sha)}"
        response = await self._request("GET", path, accept="application/vnd.github.diff")
        if response.status_code != httpx.codes.OK:
            raise self._fail(response, f"get the diff of {sha} in {full_name}")
        body = response.content
        truncated = len(body) > max_bytes
        text = (
            body[:max_bytes].decode(errors="ignore") if truncated else body.decode(errors="replace")
        )
        return CommitDiff(summary.sha, summary.subject, summary.author, text, truncated)

    async def _compare(self, full_name: str, base: str, head: str) -> dict[str, Any]:
        path = f"{self._repo_path(full_name)}/compare/{check_sha(base)}...{check_sha(head)}"
        response = await self._request("GET", path)
        if response.status_code == httpx.codes.NOT_FOUND:
            raise RepoNotFoundError(f"no commits {base} / {head} in {full_name!r}")
        if response.status_code != httpx.codes.OK:
            raise self._fail(response, f"compare {base}...{head} of {full_name}")
        data: dict[str, Any] = response.json()
        return data

    async def is_ancestor(self, full_name: str, ancestor: str, descendant: str) -> bool:
        """True when the comparison says `descendant` is ahead of `ancestor` or identical."""
        data = await self._compare(full_name, ancestor, descendant)
        return str(data.get("status")) in ("ahead", "identical")

    async def diff_files(self, full_name: str, base: str, head: str) -> list[str]:
        """Paths of the comparison (GitHub lists up to 300 files)."""
        data = await self._compare(full_name, base, head)
        return sorted(str(entry["filename"]) for entry in data.get("files", []))

    async def fast_forward(self, full_name: str, branch: str, *, expected: str, new: str) -> bool:
        """Read the branch, then update its ref without force (GitHub refuses anything but
        a fast-forward), so a branch that moved meanwhile is never overwritten."""
        current = await self.head_of(full_name, branch)
        if current == new:
            return True
        if current != expected:
            return False
        if not await self.is_ancestor(full_name, expected, new):
            raise ProviderError(f"{new[:12]} does not descend from {branch} ({expected[:12]})")
        path = f"{self._repo_path(full_name)}/git/refs/heads/{quote(branch, safe='/')}"
        response = await self._request("PATCH", path, json={"sha": new, "force": False})
        if response.status_code == httpx.codes.OK:
            return True
        if response.status_code == httpx.codes.UNPROCESSABLE_ENTITY:  # moved meanwhile
            return await self.head_of(full_name, branch) == new
        raise self._fail(response, f"update {branch} of {full_name}")

    @staticmethod
    def _to_pull(data: dict[str, Any]) -> PullRequest:
        return PullRequest(
            number=int(data["number"]),
            url=str(data["html_url"]),
            state=str(data["state"]),
            merged=bool(data.get("merged") or data.get("merged_at")),
            merge_commit_sha=(
                str(data["merge_commit_sha"]) if data.get("merge_commit_sha") else None
            ),
        )

    async def pull_request(
        self, full_name: str, *, head: str, base: str, title: str, body: str
    ) -> PullRequest:
        """The open (or merged) pull request of `head` into `base`, else a new one."""
        owner, _ = split_full_name(full_name)
        pulls = f"{self._repo_path(full_name)}/pulls"
        query = f"{pulls}?state=all&head={quote(owner)}:{quote(head, safe='')}&base={quote(base)}"
        response = await self._request("GET", query)
        if response.status_code != httpx.codes.OK:
            raise self._fail(response, f"list pull requests of {full_name}")
        for data in response.json():
            found = self._to_pull(data)
            if found.state == "open" or found.merged:
                return found
        payload = {"title": title, "head": head, "base": base, "body": body}
        response = await self._request("POST", pulls, json=payload)
        if response.status_code != httpx.codes.CREATED:
            raise self._fail(response, f"open a pull request of {head} into {base}")
        return self._to_pull(response.json())

    async def merge_pull_request(self, full_name: str, number: int, *, sha: str) -> PullRequest:
        """`PUT .../pulls/N/merge` with the expected head sha (a merge commit)."""
        pull = f"{self._repo_path(full_name)}/pulls/{number}"
        response = await self._request("GET", pull)
        if response.status_code != httpx.codes.OK:
            raise self._fail(response, f"get pull request {number} of {full_name}")
        current = self._to_pull(response.json())
        if current.merged:
            return current
        body = {"sha": check_sha(sha), "merge_method": "merge"}
        response = await self._request("PUT", f"{pull}/merge", json=body)
        if response.status_code != httpx.codes.OK:
            raise self._fail(response, f"merge pull request {number} of {full_name}")
        response = await self._request("GET", pull)
        if response.status_code != httpx.codes.OK:
            raise self._fail(response, f"get pull request {number} of {full_name}")
        return self._to_pull(response.json())


def _commit_summary(data: dict[str, Any]) -> CommitSummary:
    """A commit of GitHub's REST API as a `CommitSummary`."""
    commit = data.get("commit") or {}
    author = commit.get("author") or {}
    raw_when = str(author.get("date") or "1970-01-01T00:00:00Z")
    when = datetime.fromisoformat(raw_when.replace("Z", "+00:00"))
    message = str(commit.get("message") or "")
    return CommitSummary(
        sha=str(data["sha"]),
        subject=message.splitlines()[0] if message else "",
        author=str(author.get("name") or ""),
        authored_at=when,
    )
