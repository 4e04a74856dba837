"""Reserved directives of developer workers: requests of the orchestrator, not of a person.

A `SendMessageCommand.message` whose first line is `@orchestrator <verb> [argument]` is
answered by the worker-wrapper itself, in the worker's workspace, with the same environment,
isolation and limits as the agent (the wrapper's process limits reach every child); the agent
never sees it. The answer's `response` is one JSON object.

- `@orchestrator checks`: run the project's checks (see `declared_checks`); the report is
  `{"passed", "source", "note", "head", "clean", "checks": [{"name", "command", "cwd",
  "exit_code", "duration_s", "timed_out", "passed", "output_tail"}]}` (`head`: the commit
  checked out; `clean`: no uncommitted change in the work tree before the checks ran).
  Failing checks are a successful answer whose report says `"passed": false`.
- `@orchestrator merge BASE`: fetch `origin/BASE`, merge it into the current branch and push
  the branch; `{"status": "merged" | "up_to_date" | "conflict" | "error", "sha", "files",
  "error"}`. On a conflict the merge is left in progress (conflict markers in `files`), so the
  agent can resolve it; the next `merge` directive finishes a merge the agent resolved.

Checks come from `.orchestrator/checks.toml` when the repository has one:

```toml
[[checks]]
name = "backend tests"   # optional (default: the command)
command = "make test"    # required; run with `sh -c`, stderr joined to stdout
cwd = "backend"          # optional, relative to the repository root (default ".")
timeout_s = 600          # optional (default: what is left of the directive's timeout)
```

Else every `Makefile` with a `test` target, at the root or one directory down (the
templates' modules), is a `make test` check; none: the report passes with the note
`no checks declared`. Checks run with the wrapper's Python first on `PATH` and in `PYTHON`
(the environment the workers' agents and the templates' test dependencies live in).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from services.worker_wrapper.agents.base import AgentResult
from services.worker_wrapper.agents.process import run_cli

__all__ = [
    "CHECKS_FILE",
    "DIRECTIVE_PREFIX",
    "Check",
    "Directive",
    "declared_checks",
    "merge_base",
    "parse_directive",
    "run_checks",
    "run_directive",
]

DIRECTIVE_PREFIX = "@orchestrator"
CHECKS_FILE = ".orchestrator/checks.toml"
_TEST_TARGET = re.compile(r"^test\s*:", re.MULTILINE)
_TAIL_LINES = 60
_TAIL_CHARS = 4000
_GIT_TIMEOUT_S = 120.0
_IDENTITY = {
    "GIT_AUTHOR_NAME": "codegen-orchestrator",
    "GIT_AUTHOR_EMAIL": "orchestrator@localhost",
    "GIT_COMMITTER_NAME": "codegen-orchestrator",
    "GIT_COMMITTER_EMAIL": "orchestrator@localhost",
    "GIT_TERMINAL_PROMPT": "0",
}
_BRANCH = re.compile(r"^(?!-)(?!.*\.\.)[A-Za-z0-9._/-]+$")


@dataclass(frozen=True)
class Directive:
    """A reserved request: its verb and argument."""

    verb: str
    argument: str


def parse_directive(prompt: str) -> Directive | None:
    """The directive a prompt's first line holds, or None for an ordinary prompt."""
    first = prompt.lstrip().split("\n", 1)[0].strip()
    words = first.split()
    if not words or words[0] != DIRECTIVE_PREFIX:
        return None
    verb = words[1] if len(words) > 1 else ""
    return Directive(verb=verb, argument=" ".join(words[2:]))


@dataclass(frozen=True)
class Check:
    """One command of the project's checks."""

    name: str
    command: str
    cwd: str = "."
    timeout_s: float | None = None


class ChecksFileError(ValueError):
    """The repository's checks file is not valid; the message names what is wrong."""


def _from_file(path: Path) -> list[Check]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ChecksFileError(f"{CHECKS_FILE}: {error}") from None
    entries = data.get("checks")
    if not isinstance(entries, list) or not entries:
        raise ChecksFileError(f"{CHECKS_FILE}: needs at least one [[checks]] table")
    checks: list[Check] = []
    for number, entry in enumerate(entries, start=1):
        where = f"{CHECKS_FILE}: check {number}"
        if not isinstance(entry, dict):
            raise ChecksFileError(f"{where} is not a table")
        unknown = set(entry) - {"name", "command", "cwd", "timeout_s"}
        if unknown:
            raise ChecksFileError(f"{where} has unknown keys: {', '.join(sorted(unknown))}")
        command = entry.get("command")
        if not isinstance(command, str) or not command.strip():
            raise ChecksFileError(f"{where} needs a non-empty string 'command'")
        name, cwd = entry.get("name", command), entry.get("cwd", ".")
        timeout = entry.get("timeout_s")
        if not isinstance(name, str) or not isinstance(cwd, str):
            raise ChecksFileError(f"{where}: 'name' and 'cwd' must be strings")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
        ):
            raise ChecksFileError(f"{where}: 'timeout_s' must be a positive number")
        if Path(cwd).is_absolute() or ".." in Path(cwd).parts:
            raise ChecksFileError(f"{where}: 'cwd' must stay inside the repository")
        checks.append(Check(name=name, command=command, cwd=cwd, timeout_s=timeout))
    return checks


def _has_test_target(makefile: Path) -> bool:
    try:
        return bool(_TEST_TARGET.search(makefile.read_text(encoding="utf-8", errors="replace")))
    except OSError:
        return False


def declared_checks(workspace: Path) -> tuple[list[Check], str]:
    """The project's checks and where they come from (`ChecksFileError` for a bad file)."""
    declared = workspace / CHECKS_FILE
    if declared.is_file():
        return _from_file(declared), CHECKS_FILE
    found: list[Check] = []
    if _has_test_target(workspace / "Makefile"):
        found.append(Check(name="make test", command="make test"))
    for child in sorted(workspace.iterdir()):
        module = child.name
        if child.is_dir() and not module.startswith(".") and _has_test_target(child / "Makefile"):
            found.append(Check(name=f"{module}: make test", command="make test", cwd=module))
    return found, "default" if found else "none"


def check_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The agent's environment with the workers' Python first on PATH and in PYTHON."""
    bin_dir = str(Path(sys.executable).parent)
    path = env.get("PATH", "")
    return {
        **env,
        "PATH": f"{bin_dir}{os.pathsep}{path}" if path else bin_dir,
        "PYTHON": sys.executable,
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def _tail(lines: list[str]) -> str:
    return "\n".join(lines[-_TAIL_LINES:])[-_TAIL_CHARS:]


def _inside(path: Path, root: Path) -> bool:
    """True when `path` is a directory inside `root` (after resolving links)."""
    return path.is_dir() and path.resolve().is_relative_to(root.resolve())


async def _run_check(
    check: Check, workspace: Path, env: Mapping[str, str], timeout_s: float
) -> dict[str, Any]:
    cwd = workspace / check.cwd
    lines: list[str] = []
    started = time.monotonic()
    outcome = None
    if not _inside(cwd, workspace):
        lines.append(f"no directory {check.cwd!r} in the repository")
    else:
        try:
            outcome = await run_cli(
                ["sh", "-c", f"exec 2>&1\n{check.command}"],
                cwd=cwd,
                env=env,
                stdin_text=None,
                timeout_s=max(timeout_s, 1.0),
                on_line=lines.append,
            )
        except OSError as error:
            lines.append(f"cannot run the check: {error}")
    timed_out = outcome is not None and outcome.timed_out
    if timed_out:
        lines.append(f"timed out after {timeout_s:.0f} s")
    exit_code = outcome.exit_code if outcome is not None else None
    return {
        "name": check.name,
        "command": check.command,
        "cwd": check.cwd,
        "exit_code": exit_code,
        "duration_s": round(time.monotonic() - started, 2),
        "timed_out": timed_out,
        "passed": exit_code == 0,
        "output_tail": _tail(lines),
    }


async def _workspace_state(workspace: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """The commit the checks run on and whether the work tree holds uncommitted changes
    (None for both outside a git repository)."""
    if not (workspace / ".git").exists():
        return {"head": None, "clean": None}
    code, head = await _git(workspace, env, "rev-parse", "HEAD")
    _, status = await _git(workspace, env, "status", "--porcelain")
    return {"head": head if code == 0 else None, "clean": not status.strip()}


async def run_checks(workspace: Path, env: Mapping[str, str], timeout_s: float) -> dict[str, Any]:
    """Run the project's checks one after the other; the report (see the module docstring),
    with the commit they ran on (`head`) and whether the work tree was `clean`."""
    state = await _workspace_state(workspace, env)
    return {**await _run_all(workspace, env, timeout_s), **state}


async def _run_all(workspace: Path, env: Mapping[str, str], timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    try:
        checks, source = declared_checks(workspace)
    except ChecksFileError as error:
        bad = {
            "name": CHECKS_FILE, "command": "", "cwd": ".", "exit_code": None,
            "duration_s": 0.0, "timed_out": False, "passed": False, "output_tail": str(error),
        }  # fmt: skip
        return {"passed": False, "source": CHECKS_FILE, "note": str(error), "checks": [bad]}
    if not checks:
        return {"passed": True, "source": "none", "note": "no checks declared", "checks": []}
    results: list[dict[str, Any]] = []
    run_env = check_environment(env)
    for check in checks:
        left_s = deadline - time.monotonic()
        limit = min(check.timeout_s, left_s) if check.timeout_s else left_s
        results.append(await _run_check(check, workspace, run_env, limit))
    passed = all(result["passed"] for result in results)
    failed = sum(not result["passed"] for result in results)
    note = f"{len(results)} checks passed" if passed else f"{failed} of {len(results)} failed"
    return {"passed": passed, "source": source, "note": note, "checks": results}


async def _git(workspace: Path, env: Mapping[str, str], *args: str) -> tuple[int | None, str]:
    lines: list[str] = []
    outcome = await run_cli(
        ["git", *args],
        cwd=workspace,
        env={**env, **_IDENTITY},
        stdin_text=None,
        timeout_s=_GIT_TIMEOUT_S,
        on_line=lines.append,
    )
    text = "\n".join(lines).strip()
    if outcome.exit_code != 0:
        text = f"{text}\n{outcome.stderr_tail}".strip()
    return outcome.exit_code, text


@dataclass(frozen=True)
class MergeOutcome:
    """What `merge_base` did."""

    status: str
    sha: str | None = None
    files: tuple[str, ...] = ()
    error: str | None = None

    def as_json(self) -> str:
        """The directive's response."""
        data = asdict(self)
        data["files"] = list(self.files)
        return json.dumps(data)


async def _unmerged(workspace: Path, env: Mapping[str, str]) -> list[str]:
    _, out = await _git(workspace, env, "diff", "--name-only", "--diff-filter=U")
    return sorted({line for line in out.splitlines() if line})


async def _push_head(workspace: Path, env: Mapping[str, str]) -> MergeOutcome:
    code, branch = await _git(workspace, env, "symbolic-ref", "--short", "HEAD")
    if code != 0:
        return MergeOutcome("error", error=f"no branch checked out: {branch}")
    code, out = await _git(workspace, env, "push", "-q", "origin", f"HEAD:refs/heads/{branch}")
    if code != 0:
        return MergeOutcome("error", error=f"push of {branch} failed: {out[-500:]}")
    _, sha = await _git(workspace, env, "rev-parse", "HEAD")
    return MergeOutcome("merged", sha=sha)


async def merge_base(workspace: Path, base: str, env: Mapping[str, str]) -> MergeOutcome:
    """Merge `origin/<base>` into the checked-out branch and push it (see the docstring)."""
    if not _BRANCH.match(base):
        return MergeOutcome("error", error=f"not a branch name: {base!r}")
    finished = (workspace / ".git" / "MERGE_HEAD").exists()
    if finished:  # the agent was resolving a conflict
        files = await _unmerged(workspace, env)
        if files:
            return MergeOutcome("conflict", files=tuple(files))
        await _git(workspace, env, "add", "--all")
        code, out = await _git(workspace, env, "commit", "-q", "--no-edit")
        if code != 0:
            return MergeOutcome("error", error=f"cannot commit the merge: {out[-500:]}")
    code, out = await _git(workspace, env, "fetch", "-q", "origin", base)
    if code != 0:
        return MergeOutcome("error", error=f"cannot fetch {base}: {out[-500:]}")
    code, _ = await _git(workspace, env, "merge-base", "--is-ancestor", "FETCH_HEAD", "HEAD")
    if code == 0:
        pushed = await _push_head(workspace, env)
        if pushed.status == "error" or finished:
            return pushed
        return MergeOutcome("up_to_date", sha=pushed.sha)
    code, out = await _git(
        workspace, env, "merge", "-q", "--no-edit", "-m", f"Merge {base} into the task branch",
        "FETCH_HEAD",
    )  # fmt: skip
    if code != 0:
        files = await _unmerged(workspace, env)
        if files:
            return MergeOutcome("conflict", files=tuple(files))
        await _git(workspace, env, "merge", "--abort")
        return MergeOutcome("error", error=f"cannot merge {base}: {out[-500:]}")
    return await _push_head(workspace, env)


async def run_directive(
    directive: Directive, workspace: Path, env: Mapping[str, str], timeout_s: float
) -> AgentResult:
    """Answer a directive like an agent would: status and a JSON response."""
    if directive.verb == "checks":
        report = await run_checks(workspace, env, timeout_s)
        return AgentResult(status="success", response=json.dumps(report), exit_code=0)
    if directive.verb == "merge" and directive.argument:
        outcome = await merge_base(workspace, directive.argument, env)
        return AgentResult(status="success", response=outcome.as_json(), exit_code=0)
    return AgentResult(
        status="error",
        error=(
            f"unknown directive {DIRECTIVE_PREFIX} {directive.verb} {directive.argument}".strip()
            + "; known: 'checks', 'merge BASE'"
        ),
    )
