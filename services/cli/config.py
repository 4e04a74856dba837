"""`orchestrator config`: the effective settings tree, secrets masked, and where each came from.

Each setting is shown by its path in the tree (`infra.health_timeout_s`) with its source:
`default`, `env` or `.env` (naming the variable, e.g. `REDIS_URL`), `deprecated`
(an old name, with the new one), or `derived` (taken from the rest of the system, e.g. a
section's data directory). Secrets never print: `SecretStr` values and every setting (or
entry of a mapping) whose name ends in key(s), token, password or secret(s) show as
`********` when set, and a URL's password is masked too. References (`ssh_key_ref`,
`github_token_ref`) name where a secret is, and show.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import typer
from dotenv import dotenv_values
from pydantic import AliasChoices, BaseModel, SecretStr
from pydantic_core import to_jsonable_python
from rich.console import Console
from rich.markup import escape

from services.settings import ALIASES, SECTIONS, SystemSettings, renamed_variables

__all__ = ["MASK", "config", "describe"]

MASK = "********"
_SECRET_NAME = re.compile(r"(^|_)(keys?|token|password|passwd|secrets?)$", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@/\s]+@", re.IGNORECASE)
_PREFIX = "ORCHESTRATOR_"

console = Console()


def _leaves(model: BaseModel, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every setting below `model`: (its path, its value)."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            yield from _leaves(value, (*path, name))
        else:
            yield (*path, name), value


def _masked(name: str, value: Any) -> Any:
    """The value of the setting (or mapping entry) `name` as it may be shown."""
    if isinstance(value, SecretStr) or _SECRET_NAME.search(name):
        return None if value is None or value in ("", [], {}) else MASK
    if isinstance(value, str):
        return _URL_PASSWORD.sub(rf"\g<scheme>{MASK}@", value)
    if isinstance(value, Mapping):
        return {key: _masked(str(key), item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_masked("", item) for item in value]
    return value


def _names(settings: SystemSettings, path: tuple[str, ...]) -> list[str]:
    """The variables that may set the setting at `path`, the most specific first (a nested
    setting may also come from its section's JSON value)."""
    field = type(settings).model_fields.get(path[0])
    if len(path) == 1 and field is not None and isinstance(field.validation_alias, AliasChoices):
        return [str(choice) for choice in field.validation_alias.choices]
    return [_PREFIX + "__".join(path[:end]).upper() for end in range(len(path), 0, -1)]


def _source(
    settings: SystemSettings,
    path: tuple[str, ...],
    derived: bool,
    environ: Mapping[str, str],
    dotenv: Mapping[str, str | None],
) -> dict[str, str]:
    """Where the setting at `path` came from."""
    env = {name.upper(): name for name in environ}
    dot = {name.upper() for name, value in dotenv.items() if value is not None}
    deprecated = {new: old for old, new in renamed_variables(environ).items()}
    aliases = {full: short for short, full in ALIASES.items() if short in environ}
    for name in _names(settings, path):
        if name in env:
            return {"source": "env", "variable": env[name]}
        if name in dot:
            return {"source": ".env", "variable": name}
        if name in aliases:
            return {"source": "env", "variable": aliases[name]}
        if name in deprecated:
            return {"source": "deprecated", "variable": deprecated[name], "use": name}
    return {"source": "derived" if derived else "default"}


def describe(
    settings: SystemSettings,
    environ: Mapping[str, str] | None = None,
    dotenv: Mapping[str, str | None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Every effective setting of the tree by its dotted path: its value (masked) and source."""
    environ = os.environ if environ is None else environ
    if dotenv is None:
        dotenv = dotenv_values(".env") if Path(".env").is_file() else {}
    sections = {section.section: section for section in SECTIONS}
    described: dict[str, dict[str, Any]] = {}
    for name in type(settings).model_fields:
        raw = getattr(settings, name)
        own = sections[name].of(settings) if name in sections else raw
        raw_values: dict[tuple[str, ...], Any] = (
            dict(_leaves(raw)) if isinstance(raw, BaseModel) else {(): raw}
        )
        leaves = _leaves(own, (name,)) if isinstance(own, BaseModel) else [((name,), own)]
        for path, value in leaves:
            derived = raw_values.get(path[1:], value) != value
            described[".".join(path)] = {
                "value": to_jsonable_python(_masked(path[-1], value)),
                **_source(settings, path, derived, environ, dotenv),
            }
    return described


def config(
    as_json: bool = typer.Option(False, "--json", help="One JSON object: path → value, source."),
) -> None:
    """Show the effective settings (secrets masked) and where each value came from."""
    from services.cli.up import _settings

    described = describe(_settings())
    if as_json:
        typer.echo(json.dumps(described, indent=2))
        return
    for path, entry in described.items():
        where = entry["source"]
        if "variable" in entry:
            where += f" {entry['variable']}"
        if "use" in entry:
            where += f", use {entry['use']}"
        value = json.dumps(entry["value"])
        line = f"{escape(path)} = {escape(value)}  [dim]({escape(where)})[/]"
        console.print(line, soft_wrap=True)
