"""Encryption at rest of project secrets: Fernet tokens under a ring of keys (MultiFernet).

The keys are given by reference, newest first (`Settings.secrets.keys`):

    ORCHESTRATOR_SECRETS__KEYS='["env:SECRETS_KEY_2", "file:/etc/orchestrator/secrets-1.key"]'

The first key encrypts; every key decrypts, so a new key put in front leaves the stored
secrets readable, and `rotate` re-encrypts a token under the first key (`orchestrator secrets
rotate` does it for every stored secret; then the old key can be removed). With no key
configured, the embedded mode generates one at `<data_dir>/secrets/project-secrets.key`
(mode 0600) and uses it from then on.

Errors name a key's reference or a secret's name, never a key or a value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from shared.settings import Settings

__all__ = [
    "EMBEDDED_KEY_FILE",
    "SecretBox",
    "SecretBoxError",
    "load_key",
    "secret_box_from_settings",
]

EMBEDDED_KEY_FILE = "project-secrets.key"
"""File name (under `<data_dir>/secrets/`) of the key the embedded mode generates."""


class SecretBoxError(Exception):
    """A key cannot be loaded, or a token cannot be decrypted with any key of the ring."""


class SecretBox:
    """Seals and opens secret values with a ring of Fernet keys (the first one encrypts)."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise SecretBoxError("a secret box needs at least one key")
        self._ring = MultiFernet([Fernet(key) for key in keys])

    def seal(self, value: str) -> str:
        """The value encrypted under the first key (a URL-safe text token)."""
        return self._ring.encrypt(value.encode()).decode("ascii")

    def open(self, token: str, *, name: str = "secret") -> str:
        """The value of a token sealed under any key of the ring."""
        try:
            return self._ring.decrypt(token.encode("ascii")).decode()
        except (InvalidToken, UnicodeError):
            raise SecretBoxError(
                f"{name}: cannot be decrypted with any configured key "
                "(was its key removed before a rotation?)"
            ) from None

    def rotate(self, token: str, *, name: str = "secret") -> str:
        """The token re-encrypted under the first key (readable with any key of the ring)."""
        try:
            return self._ring.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeError):
            raise SecretBoxError(
                f"{name}: cannot be decrypted with any configured key, so not rotated"
            ) from None


def load_key(ref: str, *, environ: Mapping[str, str] | None = None) -> bytes:
    """The Fernet key behind `env:NAME` or `file:PATH`; `SecretBoxError` naming the reference."""
    scheme, sep, rest = ref.partition(":")
    if not sep or not rest:
        raise SecretBoxError(f"key reference {ref!r}: expected env:NAME or file:PATH")
    if scheme == "env":
        value = (environ if environ is not None else os.environ).get(rest)
        if value is None:
            raise SecretBoxError(f"key reference {ref!r}: environment variable is not set")
    elif scheme == "file":
        try:
            value = Path(rest).read_text()
        except OSError:
            raise SecretBoxError(f"key reference {ref!r}: file cannot be read") from None
    else:
        raise SecretBoxError(f"key reference {ref!r}: unknown scheme (known: env:, file:)")
    key = value.strip().encode()
    try:
        Fernet(key)
    except ValueError:
        raise SecretBoxError(
            f"key reference {ref!r}: not a Fernet key (32 url-safe base64-encoded bytes)"
        ) from None
    return key


def _embedded_key(path: Path) -> bytes:
    """The embedded mode's key at `path`, created (mode 0600) on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another actor of this system created it meanwhile
        else:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(Fernet.generate_key() + b"\n")
    return load_key(f"file:{path}")


def secret_box_from_settings(
    settings: Settings, *, environ: Mapping[str, str] | None = None
) -> SecretBox:
    """The system's box: its configured key references, else the embedded generated key."""
    refs = settings.secrets.keys
    if not refs:
        return SecretBox(
            [_embedded_key(settings.data_dir.resolve() / "secrets" / EMBEDDED_KEY_FILE)]
        )
    return SecretBox([load_key(ref, environ=environ) for ref in refs])
