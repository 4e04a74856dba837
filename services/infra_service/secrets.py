"""Secret references and the providers that resolve them.

A message carries references, never values: `env:NAME` (an environment variable of this
process), `file:PATH` (a file; relative paths under the secrets directory), or `none` / ``
(no secret). A vault is one more `SecretsProvider` registered under its own scheme.

A deploy's `secrets_ref` resolves to the project's environment: a JSON object, or
`KEY=VALUE` lines. Values are only ever handed to the playbook through its environment;
errors name the reference, never what it resolved to.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from services.infra_service.errors import SecretError, SecretNotFoundError

__all__ = [
    "EnvSecretsProvider",
    "FileSecretsProvider",
    "SchemeSecretsProvider",
    "SecretsProvider",
    "parse_env_text",
    "render_env_text",
]

_EMPTY_REFS = frozenset({"", "none", "none:"})
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SecretsProvider(Protocol):
    """Resolves a secret reference to its value."""

    async def resolve(self, ref: str) -> str:
        """The value behind `ref`; `SecretError` when there is none."""
        ...


class EnvSecretsProvider:
    """`env:NAME` → the environment variable NAME of this process (or of `environ`)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = environ if environ is not None else os.environ

    async def resolve(self, ref: str) -> str:
        """The variable's value; `SecretError` when it is unset."""
        name = ref.removeprefix("env:")
        value = self._environ.get(name)
        if value is None:
            raise SecretNotFoundError(f"secret reference {ref!r}: environment variable is not set")
        return value


class FileSecretsProvider:
    """`file:PATH` → the content of a file; relative paths are under `root`, and stay there."""

    def __init__(self, root: Path) -> None:
        self._root = root.resolve()

    async def resolve(self, ref: str) -> str:
        """The file's content (one trailing newline stripped); `SecretError` when unreadable."""
        raw = ref.removeprefix("file:")
        path = Path(raw) if Path(raw).is_absolute() else (self._root / raw).resolve()
        if not Path(raw).is_absolute() and self._root not in path.parents:
            raise SecretError(f"secret reference {ref!r}: path leaves the secrets directory")
        try:
            text = await asyncio.to_thread(path.read_text)
        except FileNotFoundError:
            raise SecretNotFoundError(f"secret reference {ref!r}: no such file") from None
        except OSError:
            raise SecretError(f"secret reference {ref!r}: file cannot be read") from None
        return text.removesuffix("\n")


class SchemeSecretsProvider:
    """Dispatches `scheme:rest` to the provider of that scheme; empty references resolve to ''."""

    def __init__(self, providers: Mapping[str, SecretsProvider]) -> None:
        self._providers = dict(providers)

    @classmethod
    def default(cls, secrets_dir: Path) -> SchemeSecretsProvider:
        """`env:` and `file:` references."""
        return cls({"env": EnvSecretsProvider(), "file": FileSecretsProvider(secrets_dir)})

    async def resolve(self, ref: str) -> str:
        """The value; '' for `none`; `SecretError` for an unknown scheme."""
        if ref.strip() in _EMPTY_REFS:
            return ""
        scheme, sep, _ = ref.partition(":")
        provider = self._providers.get(scheme) if sep else None
        if provider is None:
            known = ", ".join(f"{name}:" for name in sorted(self._providers))
            raise SecretError(f"secret reference {ref!r}: unknown scheme (known: {known})")
        return await provider.resolve(ref)


def parse_env_text(text: str, *, ref: str) -> dict[str, str]:
    """A project's environment from a JSON object or `KEY=VALUE` lines (`#` comments)."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            loaded = json.loads(stripped)
        except json.JSONDecodeError:
            raise SecretError(f"secret reference {ref!r}: not a valid JSON object") from None
        if not isinstance(loaded, dict):
            raise SecretError(f"secret reference {ref!r}: not a JSON object")
        pairs = {str(key): str(value) for key, value in loaded.items()}
    else:
        pairs = {}
        for number, line in enumerate(stripped.splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.removeprefix("export ").partition("=")
            if not sep:
                raise SecretError(f"secret reference {ref!r}: line {number} is not KEY=VALUE")
            pairs[key.strip()] = value.strip()
    for key, value in pairs.items():
        if not _ENV_KEY.match(key):
            raise SecretError(f"secret reference {ref!r}: {key!r} is not a variable name")
        if "\n" in value or "\0" in value:
            raise SecretError(f"secret reference {ref!r}: value of {key} spans lines")
    return pairs


def render_env_text(env: Mapping[str, str]) -> str:
    """The env file the project reads (`KEY=VALUE` lines, a header comment first)."""
    lines = ["# written by infra-service; do not edit", *(f"{k}={v}" for k, v in env.items())]
    return "\n".join(lines) + "\n"
