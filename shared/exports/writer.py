"""Deterministic JSON rendering and `export_all`, which writes every document."""

from __future__ import annotations

import json
from pathlib import Path

from shared.exports.asyncapi import build_asyncapi
from shared.exports.schemas import schema_documents

__all__ = ["ASYNCAPI_FILE", "SCHEMAS_DIR", "export_all", "render_json"]

SCHEMAS_DIR = Path("schemas")
"""Folder of the JSON Schemas, relative to the export directory."""

ASYNCAPI_FILE = Path("asyncapi") / "asyncapi.json"
"""The AsyncAPI document, relative to the export directory."""


def render_json(document: object) -> str:
    """JSON text that depends only on the content: sorted keys, two spaces, final newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _write(path: Path, text: str) -> Path:
    """Write `text` to `path` (creating folders), leaving the file alone when unchanged."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
    return path


def export_all(directory: Path) -> list[Path]:
    """Write every JSON Schema and the AsyncAPI document under `directory`; the paths written."""
    schemas_dir = directory / SCHEMAS_DIR
    written: list[Path] = []
    for name, schema in schema_documents().items():
        written.append(_write(schemas_dir / f"{name}.json", render_json(schema)))
    for stale in sorted(set(schemas_dir.glob("*.json")) - set(written)):
        stale.unlink()
    written.append(_write(directory / ASYNCAPI_FILE, render_json(build_asyncapi())))
    return written
