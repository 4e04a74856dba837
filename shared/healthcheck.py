"""The orchestrator image's HEALTHCHECK: `python -m shared.healthcheck [actor]`.

Healthy (exit 0) when the system's Redis answers PING within the timeout and, for the `api`
actor, its `/ready` answers 200 on the local port (the database answers too). The actor is
the argument, else read from the container's main process (`orchestrator run <actor>` as
PID 1, after the entrypoint's exec). The output names what failed, never a credential.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from pathlib import Path

import redis
from pydantic import ValidationError

from shared.settings import Settings

__all__ = ["check", "container_actor", "main"]

TIMEOUT_S = 3.0


def container_actor(cmdline: Path = Path("/proc/1/cmdline")) -> str | None:
    """The actor of `orchestrator run <actor>` in `cmdline`, or None."""
    try:
        argv = cmdline.read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    if "run" in argv[:-1]:
        return argv[argv.index("run") + 1] or None
    return None


def check(settings: Settings, actor: str | None) -> list[str]:
    """What is unhealthy ([] when nothing)."""
    problems: list[str] = []
    if not settings.redis_url:
        problems.append("no REDIS_URL: a container has no private Redis")
    else:
        client = redis.Redis.from_url(
            settings.redis_url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S
        )
        try:
            client.ping()
        except redis.RedisError as error:
            problems.append(f"redis does not answer: {type(error).__name__}")
        finally:
            client.close()
    if actor == "api":
        url = f"http://127.0.0.1:{settings.api.port}/ready"
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
    try:
        settings = Settings()
    except ValidationError as error:
        print(f"unhealthy: bad configuration ({error.error_count()} error(s))")  # noqa: T201
        return 1
    problems = check(settings, actor)
    for problem in problems:
        print(f"unhealthy: {problem}")  # noqa: T201
    if not problems:
        print(f"healthy: {actor or 'orchestrator'}")  # noqa: T201
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
