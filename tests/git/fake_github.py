"""A fake of GitHub's REST API (the endpoints GitHubProvider uses) over real bare repositories.

Used through `httpx.MockTransport`; repositories are bare git repositories under `root`, so
the git side can be served by `git_http_server` and the API answers from real git data.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx


def _git(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)


class FakeGitHub:
    """Answers /user, /repos/{o}/{n}, POST /user/repos, POST /orgs/{o}/repos, branches, commits."""

    def __init__(self, root: Path, token: str, *, login: str = "octo", git_url: str = "") -> None:
        self.root = root
        self.token = token
        self.login = login
        self.git_url = git_url
        self.requests: list[tuple[str, str]] = []
        self.fail_with: int | None = None

    def transport(self) -> httpx.MockTransport:
        """A transport for GitHubProvider(transport=...)."""
        return httpx.MockTransport(self.handle)

    def _repo_json(self, owner: str, name: str) -> dict[str, Any]:
        return {
            "full_name": f"{owner}/{name}",
            "clone_url": f"{self.git_url}/{owner}/{name}.git",
            "html_url": f"https://github.example/{owner}/{name}",
            "default_branch": "main",
        }

    def _bare(self, owner: str, name: str) -> Path:
        return self.root / owner / f"{name}.git"

    async def handle(self, request: httpx.Request) -> httpx.Response:
        """Route one API request."""
        self.requests.append((request.method, request.url.path))
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return httpx.Response(401, json={"message": "Bad credentials"})
        if self.fail_with is not None:
            return httpx.Response(self.fail_with, json={"message": "Server Error"})
        return await asyncio.to_thread(self._route, request)

    def _route(self, request: httpx.Request) -> httpx.Response:
        path, method = request.url.path, request.method
        if path == "/user" and method == "GET":
            return httpx.Response(200, json={"login": self.login})
        created = re.fullmatch(r"/(?:user|orgs/([^/]+))/repos", path)
        if created and method == "POST":
            owner = created.group(1) or self.login
            name = json.loads(request.content)["name"]
            bare = self._bare(owner, name)
            if bare.exists():
                return httpx.Response(422, json={"message": "name already exists"})
            bare.parent.mkdir(parents=True, exist_ok=True)
            _git("init", "--bare", "--quiet", "--initial-branch=main", str(bare), cwd=self.root)
            return httpx.Response(201, json=self._repo_json(owner, name))
        found = re.fullmatch(r"/repos/([^/]+)/([^/]+)(/branches/([^/]+)|/commits/(\w+))?", path)
        if not found or method != "GET":
            return httpx.Response(404, json={"message": "Not Found"})
        owner, name, _, branch, sha = found.groups()
        bare = self._bare(owner, name)
        if not bare.exists():
            return httpx.Response(404, json={"message": "Not Found"})
        if branch is not None:
            head = _git("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", cwd=bare)
            if head.returncode != 0:
                return httpx.Response(404, json={"message": "Branch not found"})
            return httpx.Response(
                200, json={"name": branch, "commit": {"sha": head.stdout.strip()}}
            )
        if sha is not None:
            if _git("cat-file", "-e", f"{sha}^{{commit}}", cwd=bare).returncode != 0:
                return httpx.Response(422, json={"message": "No commit found for SHA"})
            diff = _git("diff-tree", "--no-commit-id", "--name-only", "-r", "--root", sha, cwd=bare)
            files = [{"filename": line} for line in diff.stdout.splitlines() if line]
            return httpx.Response(200, json={"sha": sha, "files": files})
        return httpx.Response(200, json=self._repo_json(owner, name))
