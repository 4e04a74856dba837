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
    """Answers /user, /repos/{o}/{n}, POST /user/repos, POST /orgs/{o}/repos, branches, commits,
    compare, PATCH git/refs (fast-forward only), and pull requests (list, open, get, merge:
    a real merge commit written into the bare repository)."""

    def __init__(self, root: Path, token: str, *, login: str = "octo", git_url: str = "") -> None:
        self.root = root
        self.token = token
        self.login = login
        self.git_url = git_url
        self.requests: list[tuple[str, str]] = []
        self.fail_with: int | None = None
        self.pulls: dict[str, list[dict[str, Any]]] = {}
        """Pull requests per repository ("owner/name")."""

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
        extended = re.fullmatch(
            r"/repos/([^/]+)/([^/]+)/(compare|git/refs/heads|pulls)(/.*)?", path
        )
        if extended:
            return self._extended(request, *extended.groups())
        listed = re.fullmatch(r"/repos/([^/]+)/([^/]+)/commits", path)
        if listed and method == "GET":
            return self._commits(request, self._bare(*listed.groups()))
        found = re.fullmatch(r"/repos/([^/]+)/([^/]+)(/branches/(.+)|/commits/(\w+))?", path)
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
            if request.headers.get("accept") == "application/vnd.github.diff":
                patch = _git("diff-tree", "--patch", "--root", "--no-commit-id", sha, cwd=bare)
                return httpx.Response(200, text=patch.stdout)
            diff = _git("diff-tree", "--no-commit-id", "--name-only", "-r", "--root", sha, cwd=bare)
            files = [{"filename": line} for line in diff.stdout.splitlines() if line]
            return httpx.Response(200, json={**_commit_json(bare, sha), "files": files})
        return httpx.Response(200, json=self._repo_json(owner, name))

    def _extended(
        self, request: httpx.Request, owner: str, name: str, kind: str, rest: str | None
    ) -> httpx.Response:
        bare = self._bare(owner, name)
        if not bare.exists():
            return httpx.Response(404, json={"message": "Not Found"})
        method, rest = request.method, (rest or "").lstrip("/")
        if kind == "compare" and method == "GET":
            return self._compare(bare, rest)
        if kind == "git/refs/heads" and method == "PATCH":
            return self._update_ref(bare, rest, json.loads(request.content))
        if kind == "pulls":
            return self._pulls(request, bare, f"{owner}/{name}", rest)
        return httpx.Response(404, json={"message": "Not Found"})

    @staticmethod
    def _commits(request: httpx.Request, bare: Path) -> httpx.Response:
        """`GET /repos/o/r/commits?sha=BRANCH&per_page=N&page=P`: the branch's log."""
        if not bare.exists():
            return httpx.Response(404, json={"message": "Not Found"})
        query = request.url.params
        per_page, page = int(query.get("per_page", "30")), int(query.get("page", "1"))
        log = _git(
            "log", f"--max-count={per_page}", f"--skip={(page - 1) * per_page}", "--format=%H",
            f"refs/heads/{query.get('sha', 'main')}", "--", cwd=bare,
        )  # fmt: skip
        if log.returncode != 0:
            return httpx.Response(404, json={"message": "Not Found"})
        return httpx.Response(200, json=[_commit_json(bare, sha) for sha in log.stdout.split()])

    @staticmethod
    def _compare(bare: Path, spec: str) -> httpx.Response:
        base, _, head = spec.partition("...")
        for sha in (base, head):
            if _git("cat-file", "-e", f"{sha}^{{commit}}", cwd=bare).returncode != 0:
                return httpx.Response(404, json={"message": "Not Found"})
        ahead = _git("merge-base", "--is-ancestor", base, head, cwd=bare).returncode == 0
        behind = _git("merge-base", "--is-ancestor", head, base, cwd=bare).returncode == 0
        status = (
            "identical"
            if ahead and behind
            else "ahead"
            if ahead
            else "behind"
            if behind
            else "diverged"
        )
        diff = _git("diff", "--name-only", f"{base}...{head}", cwd=bare)
        files = [{"filename": line} for line in diff.stdout.splitlines() if line]
        return httpx.Response(200, json={"status": status, "files": files})

    @staticmethod
    def _update_ref(bare: Path, branch: str, body: dict[str, Any]) -> httpx.Response:
        ref = f"refs/heads/{branch}"
        current = _git("rev-parse", "--verify", "--quiet", ref, cwd=bare).stdout.strip()
        new = str(body["sha"])
        forward = _git("merge-base", "--is-ancestor", current, new, cwd=bare).returncode == 0
        if not body.get("force") and current and not forward:
            return httpx.Response(422, json={"message": "Update is not a fast forward"})
        _git("update-ref", ref, new, cwd=bare)
        return httpx.Response(200, json={"ref": ref, "object": {"sha": new}})

    def _pull_json(self, full_name: str, pull: dict[str, Any]) -> dict[str, Any]:
        return {
            **pull,
            "html_url": f"https://github.example/{full_name}/pull/{pull['number']}",
        }

    def _pulls(
        self, request: httpx.Request, bare: Path, full_name: str, rest: str
    ) -> httpx.Response:
        pulls = self.pulls.setdefault(full_name, [])
        method = request.method
        if not rest and method == "GET":
            head = request.url.params.get("head", "").partition(":")[2]
            base = request.url.params.get("base")
            found = [p for p in pulls if (not head or p["head"] == head) and p["base"] == base]
            return httpx.Response(200, json=[self._pull_json(full_name, p) for p in found])
        if not rest and method == "POST":
            body = json.loads(request.content)
            for branch in (body["head"], body["base"]):
                ref = f"refs/heads/{branch}"
                if _git("rev-parse", "--verify", "--quiet", ref, cwd=bare).returncode != 0:
                    return httpx.Response(422, json={"message": f"no branch {branch}"})
            pull = {
                "number": len(pulls) + 1, "state": "open", "merged": False,
                "merge_commit_sha": None, "head": body["head"], "base": body["base"],
                "title": body["title"],
            }  # fmt: skip
            pulls.append(pull)
            return httpx.Response(201, json=self._pull_json(full_name, pull))
        number, _, action = rest.partition("/")
        matching = [p for p in pulls if str(p["number"]) == number]
        if not matching:
            return httpx.Response(404, json={"message": "Not Found"})
        pull = matching[0]
        if not action and method == "GET":
            return httpx.Response(200, json=self._pull_json(full_name, pull))
        if action == "merge" and method == "PUT":
            return self._merge(bare, pull, json.loads(request.content))
        return httpx.Response(404, json={"message": "Not Found"})

    @staticmethod
    def _merge(bare: Path, pull: dict[str, Any], body: dict[str, Any]) -> httpx.Response:
        if pull["merged"]:
            return httpx.Response(405, json={"message": "Pull Request is not mergeable"})
        head_ref, base_ref = f"refs/heads/{pull['head']}", f"refs/heads/{pull['base']}"
        head = _git("rev-parse", head_ref, cwd=bare).stdout.strip()
        base = _git("rev-parse", base_ref, cwd=bare).stdout.strip()
        if body.get("sha") and body["sha"] != head:
            return httpx.Response(409, json={"message": "Head branch was modified"})
        tree = _git("merge-tree", "--write-tree", base, head, cwd=bare)
        if tree.returncode != 0:
            return httpx.Response(405, json={"message": "Pull Request is not mergeable"})
        who = {"NAME": "gh", "EMAIL": "gh@example"}
        identity = {
            f"GIT_{role}_{key}": v for role in ("AUTHOR", "COMMITTER") for key, v in who.items()
        }
        env_commit = subprocess.run(
            ["git", "commit-tree", tree.stdout.split()[0], "-p", base, "-p", head,
             "-m", f"Merge pull request #{pull['number']}"],
            cwd=bare, capture_output=True, text=True, check=True,
            env={**identity, "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        sha = env_commit.stdout.strip()
        _git("update-ref", base_ref, sha, base, cwd=bare)
        pull.update(state="closed", merged=True, merge_commit_sha=sha)
        return httpx.Response(200, json={"sha": sha, "merged": True})


def _commit_json(bare: Path, sha: str) -> dict[str, object]:
    """A commit as GitHub's REST API shows it (the fields the provider reads)."""
    shown = _git("show", "--no-patch", "--format=%H%x1f%an%x1f%aI%x1f%B", sha, cwd=bare)
    full, author, date, message = shown.stdout.split("\x1f", 3)
    return {
        "sha": full,
        "commit": {"message": message.strip(), "author": {"name": author, "date": date}},
    }
