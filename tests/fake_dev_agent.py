"""A fake coding agent CLI that edits the backend template's code for real (no LLM).

Run in the workspace with the prompt on stdin (the `command` adapter's contract); it prints
its answer. What it does, by the prompt:

- a spec with `add /NAME` (optionally `that returns TEXT`): a route `GET /NAME` answering
  `{"NAME": TEXT}` inserted just before `return app` in `backend/app/main.py`, and a test of
  it; two tasks adding routes from the same base edit the same lines (a merge conflict).
  `BREAK-ONCE` / `BREAK-ALWAYS` also add a failing test; `NO-RESOLVE` refuses to resolve
  conflicts later; `BARRIER:DIR:N` waits until N agents reached the barrier in DIR before
  committing (so concurrent tasks start from the same base); `SLOW` then waits 4 s more.
- a fix prompt ("checks failed"): removes the failing test unless the spec said
  `BREAK-ALWAYS` (then it commits nothing and says so).
- a conflict prompt ("stopped on conflicts in:"): keeps both sides of every conflict in the
  named files, `git add`s them (the orchestrator's merge directive commits the merge), unless
  the spec said `NO-RESOLVE`.

Every change is committed and the branch pushed to `origin`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

MAIN = Path("backend/app/main.py")
BROKEN = Path("backend/tests/test_broken.py")
SPEC_NOTE = Path(".git/fake-agent-spec")
ANCHOR = "    return app\n"


def git(*args: str) -> str:
    """Run git in the workspace with the agent's identity; its stdout."""
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "fake agent",
        "GIT_AUTHOR_EMAIL": "agent@example.invalid",
        "GIT_COMMITTER_NAME": "fake agent",
        "GIT_COMMITTER_EMAIL": "agent@example.invalid",
    }
    done = subprocess.run(["git", *args], capture_output=True, text=True, env=env, check=True)
    return done.stdout.strip()


def commit_and_push(message: str) -> str:
    """Commit everything, push the branch; the new head."""
    git("add", "--all")
    git("commit", "-q", "-m", message)
    branch = git("symbolic-ref", "--short", "HEAD")
    git("push", "-q", "origin", f"HEAD:refs/heads/{branch}")
    return git("rev-parse", "HEAD")


def add_endpoint(name: str, text: str) -> None:
    """A route and its test, in the backend template's style."""
    source = MAIN.read_text()
    route = (
        f'    @app.get("/{name}")\n'
        f"    def {name}() -> dict[str, str]:\n"
        f'        """The /{name} endpoint."""\n'
        f'        return {{"{name}": "{text}"}}\n\n'
    )
    MAIN.write_text(source.replace(ANCHOR, route + ANCHOR, 1))
    Path(f"backend/tests/test_{name}.py").write_text(
        "from fastapi.testclient import TestClient\n\n"
        "from app.main import app\n\n\n"
        f"def test_{name}() -> None:\n"
        f'    """GET /{name} answers its text."""\n'
        "    with TestClient(app) as client:\n"
        f'        assert client.get("/{name}").json() == {{"{name}": "{text}"}}\n'
    )


def barrier(spec: str) -> None:
    """Wait until N agents reached the barrier directory named in the spec."""
    found = re.search(r"BARRIER:(\S+):(\d+)", spec)
    if not found:
        return
    where, count = Path(found.group(1)), int(found.group(2))
    where.mkdir(parents=True, exist_ok=True)
    (where / uuid.uuid4().hex).touch()
    deadline = time.monotonic() + 60
    while len(list(where.iterdir())) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def on_spec(prompt: str) -> str:
    SPEC_NOTE.write_text(prompt)
    found = re.search(r"add (?:an? )?/(\w+)(?: endpoint)?(?: that returns (\w+))?", prompt)
    if not found:
        Path("NOTES.md").write_text(prompt)
    else:
        add_endpoint(found.group(1), found.group(2) or found.group(1))
    if "BREAK-" in prompt:
        BROKEN.write_text("def test_broken() -> None:\n    assert False, 'broken on purpose'\n")
    barrier(prompt)
    if "SLOW" in prompt:
        time.sleep(4)  # the other task of a race integrates first
    return f"Implemented it. commit {commit_and_push('fake agent: the spec')}"


def on_fix() -> str:
    spec = SPEC_NOTE.read_text() if SPEC_NOTE.exists() else ""
    if "BREAK-ALWAYS" in spec or not BROKEN.exists():
        return "I could not find what to fix."
    BROKEN.unlink()
    return f"Fixed the failing test. commit {commit_and_push('fake agent: fix the checks')}"


def resolve(path: Path) -> None:
    """Keep both sides of each conflict: ours, then theirs."""
    out: list[str] = []
    side = ""
    for line in path.read_text().splitlines(keepends=True):
        if line.startswith("<<<<<<< "):
            side = "ours"
        elif line.startswith("=======") and side == "ours":
            side = "theirs"
        elif line.startswith(">>>>>>> ") and side == "theirs":
            side = ""
        else:
            out.append(line)
    path.write_text("".join(out))


def on_conflict(prompt: str) -> str:
    spec = SPEC_NOTE.read_text() if SPEC_NOTE.exists() else ""
    if "NO-RESOLVE" in spec:
        return "I will not resolve these conflicts."
    listed = re.search(r"stopped on conflicts in: (.+?)\.\n", prompt)
    files = [name.strip() for name in listed.group(1).split(",")] if listed else []
    for name in files:
        resolve(Path(name))
        git("add", name)
    return f"Resolved the conflicts in {', '.join(files)}."


def main() -> int:
    prompt = sys.stdin.read()
    if "stopped on conflicts in:" in prompt:
        print(on_conflict(prompt))
    elif "checks failed" in prompt:
        print(on_fix())
    else:
        print(on_spec(prompt))
    return 0


if __name__ == "__main__":
    sys.exit(main())
