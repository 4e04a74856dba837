"""The orchestrator image's HEALTHCHECK: `python -m shared.healthcheck [actor]`.

Healthy (exit 0) when the system's Redis answers PING within the timeout and, for the `api`
actor, its `/ready` answers 200 on the local port (the database answers too). The actor is
the argument, else read from the container's main process (`orchestrator run <actor>` as
PID 1, after the entrypoint's exec). The output names what failed, never a credential.

It runs every few seconds beside the actor, so it imports the standard library only (no
pydantic, no redis-py: seconds of imports on a busy host) and reads the three variables it
needs the way `shared.settings.Settings` names them: `ORCHESTRATOR_REDIS_URL` or
`REDIS_URL`, and `ORCHESTRATOR_API__PORT` (8800). The image runs it through the entrypoint,
so the secret files are in its environment as they are in the actor's.
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit

__all__ = ["check", "container_actor", "main", "redis_ping"]

TIMEOUT_S = 3.0
DEFAULT_API_PORT = 8800
DEFAULT_REDIS_PORT = 6379


def container_actor(cmdline: Path = Path("/proc/1/cmdline")) -> str | None:
    """The actor of `orchestrator run <actor>` in `cmdline`, or None."""
    try:
        argv = cmdline.read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    if "run" in argv[:-1]:
        return argv[argv.index("run") + 1] or None
    return None


def _command(*words: str) -> bytes:
    parts = [f"*{len(words)}\r\n".encode()]
    for word in words:
        data = word.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def redis_ping(url: str, timeout_s: float = TIMEOUT_S) -> str | None:
    """PING the Redis of `url` (AUTH first when it has a password); None when it answers
    PONG, else what went wrong (never the credential)."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        return f"unsupported Redis URL scheme {parts.scheme!r}"
    if parts.scheme == "rediss":
        return None  # TLS: not probed here (the actor's own connection reports failures)
    commands = []
    if parts.password:
        user = unquote(parts.username or "") or "default"
        commands.append(_command("AUTH", user, unquote(parts.password)))
    commands.append(_command("PING"))
    try:
        if parts.scheme == "unix":
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.settimeout(timeout_s)
            conn.connect(parts.path)
        else:
            address = (parts.hostname or "localhost", parts.port or DEFAULT_REDIS_PORT)
            conn = socket.create_connection(address, timeout=timeout_s)
        with conn:
            conn.sendall(b"".join(commands))
            answer = b""
            while answer.count(b"\r\n") < len(commands):
                chunk = conn.recv(4096)
                if not chunk:
                    break
                answer += chunk
    except OSError as error:
        return f"redis does not answer: {type(error).__name__}"
    replies = answer.split(b"\r\n")[: len(commands)]
    refused = next((reply for reply in replies if reply.startswith(b"-")), None)
    if refused is not None:  # a refused AUTH too, even when PING then answers
        return f"redis refused: {refused.decode(errors='replace')[:80]}"
    if replies[-1:] != [b"+PONG"]:
        return "redis refused: no PONG"
    return None


def check(env: Mapping[str, str], actor: str | None) -> list[str]:
    """What is unhealthy ([] when nothing), from the environment `env`."""
    problems: list[str] = []
    redis_url = env.get("ORCHESTRATOR_REDIS_URL") or env.get("REDIS_URL")
    if not redis_url:
        problems.append("no REDIS_URL: a container has no private Redis")
    elif (problem := redis_ping(redis_url)) is not None:
        problems.append(problem)
    if actor == "api":
        port = env.get("ORCHESTRATOR_API__PORT") or str(DEFAULT_API_PORT)
        url = f"http://127.0.0.1:{port}/ready"
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as answer:
                if answer.status != 200:
                    problems.append(f"api {url} answered {answer.status}")
        except urllib.error.HTTPError as error:
            problems.append(f"api {url} answered {error.code}")
        except OSError as error:
            problems.append(f"api {url} does not answer: {error}")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Print the verdict; 0 healthy, 1 not."""
    args = sys.argv[1:] if argv is None else argv
    actor = args[0] if args else container_actor()
    problems = check(os.environ, actor)
    for problem in problems:
        print(f"unhealthy: {problem}")  # noqa: T201
    if not problems:
        print(f"healthy: {actor or 'orchestrator'}")  # noqa: T201
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
