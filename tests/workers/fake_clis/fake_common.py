"""Behaviour shared by the fake agent CLIs, chosen by markers in the prompt.

Markers: ``[hang]`` prints partial output, starts a child in its process group and sleeps;
``[escape]`` also starts a child in a session of its own; ``[crash]`` writes stderr and
exits 3; ``[noresult]`` exits 0 without a final event; ``[malformed]`` interleaves lines
that are not JSON; ``[error]`` reports an error as its final event; ``[slow:S]`` sleeps S
seconds first; ``[commit]`` commits a file to the workspace's branch and pushes it;
``[env:NAME]`` answers the value of an environment variable. Every run
appends its argv and working directory to the file named by ``FAKE_CLI_LOG``, if set.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from typing import Any

CHILD_MARKER = "fake-cli-child"


def log_invocation(prompt: str) -> None:
    """Append this run's argv, cwd and prompt to $FAKE_CLI_LOG."""
    path = os.environ.get("FAKE_CLI_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as log:
            record = {"argv": sys.argv[1:], "cwd": os.getcwd(), "prompt": prompt}
            log.write(json.dumps(record) + "\n")


def emit(event: dict[str, Any]) -> None:
    """Write one stream-json line."""
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def start_children(*, escape: bool) -> None:
    """Start a sleeping child in our group (and one in its own session with `escape`)."""
    code = f"import time  # {CHILD_MARKER}\ntime.sleep(600)"
    subprocess.Popen([sys.executable, "-c", code])
    if escape:
        subprocess.Popen([sys.executable, "-c", code], start_new_session=True)


def pre_answer(prompt: str) -> None:
    """Apply the markers that act before the answer (crash, hang, slow)."""
    slow = re.search(r"\[slow:([\d.]+)\]", prompt)
    if slow:
        time.sleep(float(slow.group(1)))
    if "[commit]" in prompt:
        with open("AGENT.md", "a", encoding="utf-8") as notes:
            notes.write(prompt + "\n")
        identity = ["-c", "user.name=fake agent", "-c", "user.email=agent@example.com"]
        for argv in (["add", "AGENT.md"], [*identity, "commit", "-qm", "fake agent work"]):
            subprocess.run(["git", *argv], check=True, capture_output=True)
        subprocess.run(["git", "push", "-q", "origin", "HEAD"], check=True, capture_output=True)
    if "[crash]" in prompt:
        sys.stderr.write("fatal: the fake agent crashed on purpose\n")
        sys.stderr.flush()
        sys.exit(3)
    if "[hang]" in prompt or "[escape]" in prompt:
        start_children(escape="[escape]" in prompt)
        time.sleep(600)


def answer_text(prompt: str, session_id: str, resumed: bool) -> str:
    """The deterministic answer of a fake agent."""
    env = re.search(r"\[env:(\w+)\]", prompt)
    if env:
        return f"{env.group(1)}={os.environ.get(env.group(1), '<unset>')}"
    return f"answer to: {prompt} (session {session_id}, resumed={resumed})"
