"""Secret references and the providers that resolve them.

A message carries references, never values: `env:NAME` (an environment variable of this
process), `file:PATH` (a file; relative paths under the secrets directory), or `none` / ``
(no secret). A vault is one more `SecretsProvider` registered under its own scheme.

`project:ID` is a project's stored secrets (set through the API, `PUT
/api/projects/{id}/secrets/{NAME}`): the API hands infra-service the sealed values (service
credentials only) and they are opened here with the system's key ring (`shared.secret_box`),
over the values of the older hand-written file `<secrets dir>/ID.env` when there is one.

A deploy's `secrets_ref` resolves to the project's environment: a JSON object, or
`KEY=VALUE` lines. Values are only ever handed to the playbook through its environment;
errors name the reference, never what it resolved to.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from services.infra_service.errors import SecretError, SecretNotFoundError
from shared.api_client.errors import ApiClientError
from shared.api_client.schemas import SealedSecrets
from shared.secret_box import SecretBox, SecretBoxError

__all__ = [
    "EnvSecretsProvider",
    "FileSecretsProvider",
    "ProjectSecretsProvider",
    "SchemeSecretsProvider",
    "SealedSecretsSource",
    "SecretsProvider",
    "parse_env_text",
    "render_env_text",
]

_EMPTY_REFS = frozenset({"", "none", "none:"})
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PROJECT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


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


class SealedSecretsSource(Protocol):
    """Where a project's sealed secrets come from (the API client)."""

    async def sealed_secrets(self, project_id: str) -> SealedSecrets:
        """The project's secrets, encrypted as stored."""
        ...


class ProjectSecretsProvider:
    """`project:ID` → the project's environment as a JSON object: the legacy file
    `<root>/ID.env` (if any), overlaid with the secrets stored in the API, opened with `box`."""

    def __init__(
        self, files: FileSecretsProvider, api: SealedSecretsSource | None, box: SecretBox | None
    ) -> None:
        self._files = files
        self._api = api
        self._box = box

    async def resolve(self, ref: str) -> str:
        """The JSON object text; '' when the project has no secrets at all."""
        project_id = ref.removeprefix("project:")
        if not _PROJECT_ID.match(project_id):
            raise SecretError(f"secret reference {ref!r}: not a project id")
        env: dict[str, str] = {}
        with contextlib.suppress(SecretNotFoundError):
            env.update(parse_env_text(await self._files.resolve(f"file:{project_id}.env"), ref=ref))
        if self._api is not None:
            try:
                sealed = (await self._api.sealed_secrets(project_id)).sealed
            except ApiClientError as error:
                raise SecretError(f"secret reference {ref!r}: the API refused: {error}") from None
            if sealed and self._box is None:
                raise SecretError(f"secret reference {ref!r}: no key to open the stored secrets")
            for name, token in sealed.items():
                assert self._box is not None
                try:
                    env[name] = self._box.open(token, name=f"secret {name}")
                except SecretBoxError as error:
                    raise SecretError(f"secret reference {ref!r}: {error}") from None
        return json.dumps(env) if env else ""


class SchemeSecretsProvider:
    """Dispatches `scheme:rest` to the provider of that scheme; empty references resolve to ''."""

    def __init__(self, providers: Mapping[str, SecretsProvider]) -> None:
        self._providers = dict(providers)

    @classmethod
    def default(
        cls,
        secrets_dir: Path,
        *,
        api: SealedSecretsSource | None = None,
        box: SecretBox | None = None,
    ) -> SchemeSecretsProvider:
        """`env:`, `file:` and `project:` references (the last with stored secrets when the
        API and the key ring are given, else the legacy files only)."""
        files = FileSecretsProvider(secrets_dir)
        project = ProjectSecretsProvider(files, api, box)
        return cls({"env": EnvSecretsProvider(), "file": files, "project": project})

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
