"""The checked-in OpenAPI document is what the code serves."""

from __future__ import annotations

import json
from pathlib import Path

from services.api.openapi import openapi_document, render
from tests.support.api import ApiHarness

CHECKED_IN = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_checked_in_document_is_current() -> None:
    """docs/openapi.json equals the generated document (run `python -m services.api.openapi`)."""
    assert CHECKED_IN.read_text() == render(), "stale: run `python -m services.api.openapi`"


async def test_served_document_and_security(api: ApiHarness) -> None:
    """/openapi.json is served; API routes declare the bearer scheme and the error body."""
    async with api.http() as http:
        served = (await http.get("/openapi.json")).json()
    assert served == json.loads(json.dumps(openapi_document()))
    operation = served["paths"]["/api/tasks"]["post"]
    assert operation["security"] == [{"bearer": []}]
    assert operation["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }
    assert served["paths"]["/health"]["get"]["security"] == []
    assert served["paths"]["/ready"]["get"]["security"] == []
    assert served["servers"] == [{"url": "/", "description": "The API that serves this document"}]
    assert served["info"]["license"] == {"name": "MIT", "identifier": "MIT"}


async def test_the_unauthenticated_operations_do_what_the_document_says(api: ApiHarness) -> None:
    """No credential needed (security `[]`), and the documented 413 is what a body over the
    limit gets on them too."""
    document = openapi_document()
    async with api.http() as http:
        for path in ("/health", "/ready"):
            assert "413" in document["paths"][path]["get"]["responses"]
            assert (await http.get(path)).status_code == 200
            oversized = await http.request("GET", path, content=b"x" * (2 * 1024 * 1024))
            assert oversized.status_code == 413
            assert oversized.json()["code"] == "body_too_large"
