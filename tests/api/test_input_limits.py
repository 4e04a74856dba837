"""Input the API refuses, against a real uvicorn process: every string field of every body
refuses lone surrogates, NUL, control characters and over-long values with 422 naming the
field; nothing is stored; a body over the size limit gets 413; the keep-alive connection
stays usable after each refusal."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from services.api.body_limit import DEFAULT_MAX_BODY_BYTES
from services.api.openapi import openapi_document
from shared.api_client.schemas import TaskUpdate
from shared.api_client.text import (
    FREE_TEXT_MAX,
    IDENTIFIER_MAX,
    JSON_DEPTH_MAX,
    LABEL_MAX,
    REFERENCE_MAX,
    SPEC_MAX,
    URL_MAX,
)
from shared.git.naming import repo_name
from tests.api.process import ApiProcess, mint_key


@dataclass
class Target:
    """A running API with an admin client, a user, one project, one task and one server."""

    http: httpx.Client
    user_id: int
    project_id: str
    task_id: str


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """A real API process on a fresh SQLite file and one keep-alive admin client."""
    directory: Path = tmp_path_factory.mktemp("limits")
    url = f"sqlite+aiosqlite:///{directory / 'api.db'}"
    key = asyncio.run(mint_key(url, "admin", "admin"))
    process = ApiProcess(
        database_url=url, redis_url=None, relay_enabled=False, log_path=directory / "api.log"
    ).start()
    headers = {"Authorization": f"Bearer {key}"}
    try:
        with httpx.Client(base_url=process.url, headers=headers, timeout=30) as http:
            user = http.post("/api/users", json={"telegram_id": 42}).json()
            project = http.post(
                "/api/projects", params={"owner_id": user["id"]}, json={"name": "shop"}
            ).json()
            task = http.post(
                "/api/tasks", json={"project_id": project["id"], "type": "scaffolding"}
            ).json()
            server = {"handle": "web-1", "address": "203.0.113.7"}
            assert http.post("/api/servers", json=server).status_code == 201
            yield Target(http, user["id"], project["id"], task["id"])
    finally:
        process.terminate()


def _client_port(response: httpx.Response) -> int:
    """The local port of the connection that carried `response`."""
    port: int = response.extensions["network_stream"].get_extra_info("client_addr")[1]
    return port


@dataclass(frozen=True)
class Field:
    """One string field of one operation: where to send it and its rule."""

    name: str
    method: str
    path: Callable[[Target], str]
    body: Callable[[Target, Any], dict[str, Any]]
    max_length: int | None
    free_text: bool = False
    read_back: Callable[[Target], list[str]] | None = None
    """The values stored for this field now (to show a refused one was never stored)."""

    @property
    def location(self) -> str:
        """The field as the error body names it."""
        return f"body.{self.name.rpartition('.')[2]}"


def _projects(t: Target) -> list[str]:
    items = t.http.get("/api/projects", params={"limit": 500}).json()["items"]
    return [json.dumps(item) for item in items]


def _tasks(t: Target) -> list[str]:
    items = t.http.get("/api/tasks", params={"limit": 500}).json()["items"]
    return [json.dumps(item) for item in items]


def _keys(t: Target) -> list[str]:
    return [item["name"] for item in t.http.get("/api/keys").json()["items"]]


def _servers(t: Target) -> list[str]:
    return [json.dumps(item) for item in t.http.get("/api/servers").json()["items"]]


FIELDS = [
    Field(
        "keys.name",
        "POST",
        lambda t: "/api/keys",
        lambda t, v: {"name": v, "scope": "user", "user_id": t.user_id},
        LABEL_MAX,
        read_back=_keys,
    ),
    Field(
        "project.name",
        "POST",
        lambda t: f"/api/projects?owner_id={t.user_id}",
        lambda t, v: {"name": v},
        LABEL_MAX,
        read_back=_projects,
    ),
    Field(
        "project.description",
        "POST",
        lambda t: f"/api/projects?owner_id={t.user_id}",
        lambda t, v: {"name": "n", "description": v},
        FREE_TEXT_MAX,
        free_text=True,
        read_back=_projects,
    ),
    Field(
        "project_update.description",
        "PATCH",
        lambda t: f"/api/projects/{t.project_id}",
        lambda t, v: {"description": v},
        FREE_TEXT_MAX,
        free_text=True,
        read_back=_projects,
    ),
    Field(
        "project_update.repository_url",
        "PATCH",
        lambda t: f"/api/projects/{t.project_id}",
        lambda t, v: {"repository_url": v},
        URL_MAX,
        read_back=_projects,
    ),
    Field(
        "task.project_id",
        "POST",
        lambda t: "/api/tasks",
        lambda t, v: {"project_id": v, "type": "engineering"},
        IDENTIFIER_MAX,
        read_back=_tasks,
    ),
    Field(
        "task.spec",
        "POST",
        lambda t: "/api/tasks",
        lambda t, v: {"project_id": t.project_id, "type": "scaffolding", "spec": v},
        SPEC_MAX,
        free_text=True,
        read_back=_tasks,
    ),
    Field(
        "server.handle",
        "POST",
        lambda t: "/api/servers",
        lambda t, v: {"handle": v, "address": "a"},
        100,
        read_back=_servers,
    ),
    Field(
        "server.address",
        "POST",
        lambda t: "/api/servers",
        lambda t, v: {"handle": "web-2", "address": v},
        REFERENCE_MAX,
        read_back=_servers,
    ),
    Field(
        "server.ssh_user",
        "POST",
        lambda t: "/api/servers",
        lambda t, v: {"handle": "web-2", "address": "a", "ssh_user": v},
        LABEL_MAX,
        read_back=_servers,
    ),
    Field(
        "server.credentials_ref",
        "POST",
        lambda t: "/api/servers",
        lambda t, v: {"handle": "web-2", "address": "a", "credentials_ref": v},
        REFERENCE_MAX,
        read_back=_servers,
    ),
    Field(
        "server_update.address",
        "PATCH",
        lambda t: "/api/servers/web-1",
        lambda t, v: {"address": v},
        REFERENCE_MAX,
        read_back=_servers,
    ),
    Field(
        "server_update.credentials_ref",
        "PATCH",
        lambda t: "/api/servers/web-1",
        lambda t, v: {"credentials_ref": v},
        REFERENCE_MAX,
        read_back=_servers,
    ),
    Field(
        "allocation.project_id",
        "POST",
        lambda t: "/api/servers/web-1/allocations",
        lambda t, v: {"project_id": v},
        IDENTIFIER_MAX,
    ),
    Field(
        "task_update.result",
        "PATCH",
        lambda t: f"/api/tasks/{t.task_id}",
        lambda t, v: {"result": {"log": [{"line": v}]}},
        None,
        free_text=True,
        read_back=_tasks,
    ),
]


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


def _hostile(field: Field) -> dict[str, Any]:
    """The values the field must refuse, by kind."""
    values: dict[str, Any] = {"surrogate": "a\ud800b", "nul": "a\x00b"}
    if field.name == "task_update.result":  # JSON data: what no database or response holds
        return values | {"not finite": float("nan"), "too deep": _nested(JSON_DEPTH_MAX)}
    values["control"] = "a\x1bb" if field.free_text else "a\nb"
    if not field.free_text:
        values["bidi"] = "a\u202eb"
    if field.max_length is not None:
        values["too long"] = "x" * (field.max_length + 1)
    return values


def _send(t: Target, field: Field, value: Any) -> httpx.Response:
    """The request as raw JSON: json.dumps writes a lone surrogate as its escape."""
    content = json.dumps(field.body(t, value)).encode()
    return t.http.request(
        field.method,
        field.path(t),
        content=content,
        headers={"Content-Type": "application/json"},
    )


@pytest.mark.parametrize("field", FIELDS, ids=[field.name for field in FIELDS])
def test_a_field_refuses_hostile_values(target: Target, field: Field) -> None:
    """Surrogate, NUL, control characters and over-long values get 422 naming the field,
    nothing of them is stored, and the same keep-alive connection serves the next request."""
    before = field.read_back(target) if field.read_back else []
    port = _client_port(target.http.get("/api/projects"))
    for kind, value in _hostile(field).items():
        response = _send(target, field, value)
        assert response.status_code == 422, (kind, response.text)
        body = response.json()
        assert body["code"] == "validation_error", kind
        assert [problem["field"] for problem in body["fields"]] == [field.location], kind
        assert _client_port(response) == port, f"{kind}: the connection was dropped"
    after = target.http.get("/api/projects")
    assert (after.status_code, _client_port(after)) == (200, port)
    if field.read_back:
        assert field.read_back(target) == before


BOUNDED = [f for f in FIELDS if f.max_length is not None and not f.name.endswith("project_id")]


@pytest.mark.parametrize("field", BOUNDED, ids=[field.name for field in BOUNDED])
def test_a_field_accepts_its_longest_value(target: Target, field: Field) -> None:
    """The limit is exact: the longest allowed value is accepted, counted in characters
    (free text keeps its tabs and line breaks)."""
    assert field.max_length is not None
    if field.free_text:
        value = ("a\tb\n" * field.max_length)[: field.max_length]
    elif field.name == "server.handle":
        value = "h" * field.max_length
    elif field.name == "project_update.repository_url":  # only the project's own repository
        own = f"/acme/{repo_name(target.project_id, 'shop')}"
        value = "https://git.example/" + "r" * (field.max_length - 20 - len(own)) + own
    else:
        value = "é" * field.max_length
    assert len(value) == field.max_length
    body = field.body(target, value)
    if field.name.startswith("server.") and field.name != "server.handle":
        body["handle"] = field.name.replace("server.", "s-")
    response = target.http.request(field.method, field.path(target), json=body)
    assert response.status_code in (200, 201), response.text
    stored = field.read_back(target) if field.read_back else []
    assert any(json.dumps(value)[1:-1] in item or value in item for item in stored)


def test_a_body_over_the_limit_gets_413_and_the_next_request_works(target: Target) -> None:
    """A declared body over the limit is refused before it is read, with the one error body,
    and the connection serves the next request."""
    port = _client_port(target.http.get("/api/projects"))
    spec = "x" * DEFAULT_MAX_BODY_BYTES
    body = {"project_id": target.project_id, "type": "engineering", "spec": spec}
    response = target.http.post("/api/tasks", json=body)
    assert response.status_code == 413
    assert response.json() == {
        "code": "body_too_large",
        "message": f"the request body exceeds {DEFAULT_MAX_BODY_BYTES} bytes",
        "fields": [],
    }
    after = target.http.get(f"/api/tasks/{target.task_id}")
    assert after.status_code == 200
    assert _client_port(after) == port
    assert spec not in target.http.get("/api/tasks", params={"limit": 500}).text


def test_a_chunked_body_over_the_limit_gets_413(target: Target) -> None:
    """A body sent without a length is cut off once it passes the limit (413), and a normal
    request right after is served."""

    def chunks() -> Iterator[bytes]:
        yield b'{"name": "'
        for _ in range(DEFAULT_MAX_BODY_BYTES // 65_536 + 1):
            yield b"x" * 65_536
        yield b'"}'

    response = target.http.post(
        f"/api/projects?owner_id={target.user_id}",
        content=chunks(),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["code"] == "body_too_large"
    created = target.http.post(f"/api/projects?owner_id={target.user_id}", json={"name": "ok"})
    assert created.status_code == 201


def test_a_body_at_the_limit_is_read(target: Target) -> None:
    """A body of exactly the limit is read and validated like any other (here: 422 for its
    over-long specification, not 413)."""
    frame = json.dumps({"project_id": target.project_id, "type": "engineering", "spec": ""})
    spec = "x" * (DEFAULT_MAX_BODY_BYTES - len(frame))
    content = frame.replace('"spec": ""', f'"spec": "{spec}"').encode()
    assert len(content) == DEFAULT_MAX_BODY_BYTES
    response = target.http.post(
        "/api/tasks", content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert [problem["field"] for problem in response.json()["fields"]] == ["body.spec"]


SECURITY_DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"
MAX_OF = {
    "Label": LABEL_MAX,
    "Identifier": IDENTIFIER_MAX,
    "Reference": REFERENCE_MAX,
    "Url": URL_MAX,
    "FreeText": FREE_TEXT_MAX,
    "Spec": SPEC_MAX,
}


def _string_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The string branch of a field's schema (`anyOf` with null for optional fields)."""
    for branch in schema.get("anyOf", [schema]):
        if branch.get("type") == "string":
            return dict(branch)
    raise AssertionError(f"no string in {schema}")


def test_the_documented_limits_are_the_served_ones() -> None:
    """docs/security.md states each type's length and each body field's type as the code and
    the OpenAPI document have them."""
    text = SECURITY_DOC.read_text(encoding="utf-8")
    for name, limit in MAX_OF.items():
        assert re.search(rf"^\| `{name}` \| [01]–{limit:,} \|", text, flags=re.M), name
    document = openapi_document()
    schemas = document["components"]["schemas"]
    rows = re.findall(r"^\| `(\w+) (/[^`]*)` \| (`[^|]*`) \| `(\w+)`", text, flags=re.M)
    assert len(rows) >= 12
    for method, path, fields, kind in rows:
        if kind not in MAX_OF:
            continue  # JsonObject: no length of its own
        body = document["paths"][path][method.lower()]["requestBody"]
        ref = body["content"]["application/json"]["schema"]["$ref"].rpartition("/")[2]
        for field in re.findall(r"`(\w+)`", fields):
            schema = _string_schema(schemas[ref]["properties"][field])
            assert schema["maxLength"] == MAX_OF[kind], (path, field)
            assert "pattern" in schema, (path, field)


def test_a_result_may_nest_up_to_the_depth_limit() -> None:
    """A result whose containers nest 32 levels deep is accepted, 33 is refused naming where
    (a deeper one was stored and then failed every response that carried it)."""
    assert TaskUpdate.model_validate({"result": {"a": _nested(JSON_DEPTH_MAX - 1)}}).result
    with pytest.raises(ValidationError, match="nests deeper than 32 levels"):
        TaskUpdate.model_validate({"result": {"a": _nested(JSON_DEPTH_MAX)}})
