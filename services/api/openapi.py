"""The OpenAPI document of the API, as checked in under `docs/openapi.json`.

`python -m services.api.openapi [PATH]` writes it (default `docs/openapi.json`); a test
fails when the checked-in file differs from what the code serves.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from services.api.app import create_app
from services.api.db import Database

__all__ = ["DEFAULT_PATH", "openapi_document", "render", "write"]

DEFAULT_PATH = Path("docs/openapi.json")


def openapi_document() -> dict[str, Any]:
    """The document the app serves at `/openapi.json` (no database is touched)."""
    database = Database("sqlite+aiosqlite:///:memory:")
    return create_app(database).openapi()


def render() -> str:
    """The document as stable, diff-friendly JSON text."""
    return json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"


def write(path: Path = DEFAULT_PATH) -> Path:
    """Write the document to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render())
    return path


if __name__ == "__main__":
    print(write(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_PATH))  # noqa: T201
