"""The exports: JSON Schemas and the AsyncAPI document under docs/, current and valid."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from shared.contracts import (
    CreateWorkerCommand,
    DeleteWorkerResponse,
    EngineeringMessage,
    ProjectDTO,
    ProjectStatus,
    WorkerConfig,
)
from shared.exports import (
    ASYNCAPI_FILE,
    SCHEMAS_DIR,
    InvalidNameError,
    build_asyncapi,
    channel_id,
    contract_models,
    export_all,
    operation_id,
    render_json,
)
from shared.registry import QUEUES, dead_letter_stream, message_type_name

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
TOOL = ROOT / "tools" / "asyncapi"
NPM_CI = ["npm", "ci", "--silent", "--no-audit", "--no-fund"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh export of every document into a temporary directory."""
    directory = tmp_path_factory.mktemp("export")
    export_all(directory)
    return directory


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    """The AsyncAPI document as built in memory."""
    return build_asyncapi()


def _relative_files(directory: Path) -> set[Path]:
    """Every exported file under `directory`, relative to it."""
    folders = (directory / SCHEMAS_DIR, directory / ASYNCAPI_FILE.parent)
    return {path.relative_to(directory) for f in folders for path in f.rglob("*") if path.is_file()}


def test_checked_in_docs_are_current(exported: Path) -> None:
    """docs/schemas and docs/asyncapi are byte for byte what the export writes now."""
    hint = "the checked-in contract documents are stale: run `make export` and commit docs/"
    assert _relative_files(DOCS) == _relative_files(exported), hint
    stale = sorted(
        str(relative)
        for relative in _relative_files(exported)
        if (DOCS / relative).read_bytes() != (exported / relative).read_bytes()
    )
    assert stale == [], f"{hint} (differs: {', '.join(stale)})"


def test_export_is_byte_identical_across_processes(tmp_path: Path, exported: Path) -> None:
    """The CLI in a process with another hash seed writes exactly the same bytes."""
    cli = Path(sys.executable).parent / "orchestrator"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [str(cli), "contracts", "export", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert str(tmp_path / ASYNCAPI_FILE) in result.stdout.splitlines()
    for relative in _relative_files(exported):
        assert (tmp_path / relative).read_bytes() == (exported / relative).read_bytes(), relative


def test_export_removes_schemas_of_removed_models(tmp_path: Path) -> None:
    """A schema file whose model no longer exists is deleted; other files are left alone."""
    (tmp_path / SCHEMAS_DIR).mkdir(parents=True)
    (tmp_path / SCHEMAS_DIR / "RemovedMessage.json").write_text("{}\n", encoding="utf-8")
    (tmp_path / SCHEMAS_DIR / "notes.txt").write_text("keep\n", encoding="utf-8")
    written = export_all(tmp_path)
    assert not (tmp_path / SCHEMAS_DIR / "RemovedMessage.json").exists()
    assert (tmp_path / SCHEMAS_DIR / "notes.txt").exists()
    assert tmp_path / SCHEMAS_DIR / "EngineeringMessage.json" in written


def test_render_json_is_canonical() -> None:
    """Rendering sorts keys, indents by two, keeps non-ASCII text and ends with a newline."""
    assert render_json({"b": 1, "a": ["é"]}) == '{\n  "a": [\n    "é"\n  ],\n  "b": 1\n}\n'


def test_every_model_and_union_has_a_schema_file(exported: Path) -> None:
    """Each DTO, message, result, event and both worker unions get one schema file."""
    names = {path.stem for path in (exported / SCHEMAS_DIR).glob("*.json")}
    expected = {*contract_models(), "WorkerCommand", "WorkerResponse"}
    assert expected == names
    assert {"ProjectDTO", "TaskDTO", "UserDTO", "ProgressEvent", "EngineeringResult"} <= names


def test_every_registry_message_type_has_a_schema(exported: Path, document: dict[str, Any]) -> None:
    """Every message type of every queue has a schema file, a component schema and a message."""
    components = document["components"]
    for spec in QUEUES:
        for message_type in spec.message_types:
            name = message_type_name(message_type)
            assert (exported / SCHEMAS_DIR / f"{name}.json").is_file(), name
            assert name in components["schemas"], name
            payload = components["messages"][name]["payload"]
            assert {"$ref": f"#/components/schemas/{name}"} == payload


def test_schema_files_accept_real_payloads_and_reject_broken_ones(exported: Path) -> None:
    """A model's JSON payload validates against its schema file; one missing a field does not."""
    schema = json.loads((exported / SCHEMAS_DIR / "EngineeringMessage.json").read_text("utf-8"))
    validator = jsonschema_rs.validator_for(schema)
    payload = EngineeringMessage(task_id="t", project_id="p", user_id=7).model_dump(mode="json")
    assert validator.is_valid(payload)
    del payload["user_id"]
    assert not validator.is_valid(payload)
    project = json.loads((exported / SCHEMAS_DIR / "ProjectDTO.json").read_text("utf-8"))
    dto = ProjectDTO(id="p", name="n", status=ProjectStatus.ACTIVE).model_dump(mode="json")
    assert jsonschema_rs.validator_for(project).is_valid(dto)
    assert not jsonschema_rs.validator_for(project).is_valid({**dto, "status": "bogus"})


def test_union_schemas_accept_what_the_parsers_accept(exported: Path) -> None:
    """The union schemas accept tagged payloads and untagged ones (the parsers' fallback)."""
    commands = json.loads((exported / SCHEMAS_DIR / "WorkerCommand.json").read_text("utf-8"))
    responses = json.loads((exported / SCHEMAS_DIR / "WorkerResponse.json").read_text("utf-8"))
    config = WorkerConfig(name="w", agent="claude-code", capabilities=[], env_vars={})
    create = CreateWorkerCommand(request_id="r", config=config).model_dump(mode="json")
    assert jsonschema_rs.validator_for(commands).is_valid(create)
    untagged = DeleteWorkerResponse(request_id="r", success=True).model_dump(mode="json")
    del untagged["command"]
    assert jsonschema_rs.validator_for(responses).is_valid(untagged)
    assert not jsonschema_rs.validator_for(responses).is_valid({**untagged, "command": "nope"})


def test_every_registry_queue_is_a_channel(document: dict[str, Any]) -> None:
    """Each queue of the registry is a channel whose address is the queue's name or pattern."""
    addresses = {channel["address"]: key for key, channel in document["channels"].items()}
    assert [spec.name for spec in QUEUES] == list(addresses)
    for spec in QUEUES:
        assert addresses[spec.name] == channel_id(spec.name)
        channel = document["channels"][channel_id(spec.name)]
        assert sorted(channel["messages"]) == sorted(map(message_type_name, spec.message_types))
        assert channel["x-kind"] == spec.kind
        assert channel["x-dead-letter-stream"] == dead_letter_stream(spec.name)


def test_pattern_channels_declare_their_parameters(document: dict[str, Any]) -> None:
    """A pattern's placeholders are declared as parameters; a fixed name declares none."""
    assert any(spec.is_pattern for spec in QUEUES)
    for spec in QUEUES:
        channel = document["channels"][channel_id(spec.name)]
        if spec.is_pattern:
            assert list(spec.parameters) == list(channel["parameters"]), spec.name
        else:
            assert "parameters" not in channel, spec.name
    assert list(document["channels"]["worker.id.input"]["parameters"]) == ["id"]
    assert list(document["channels"]["task_progress.task_id"]["parameters"]) == ["task_id"]


def test_operations_follow_writers_and_consumers(document: dict[str, Any]) -> None:
    """Writers send, the consumer (and each observer) receives, with the queue's messages."""
    expected: set[str] = set()
    for spec in QUEUES:
        ident = channel_id(spec.name)
        messages = [
            {"$ref": f"#/channels/{ident}/messages/{message_type_name(t)}"}
            for t in spec.message_types
        ]
        roles = [(w, "send") for w in spec.writers] + [(spec.consumer, "receive")]
        roles += [(observer, "receive") for observer in spec.observers]
        for actor, action in roles:
            key = operation_id(actor, action, spec.name)
            expected.add(key)
            operation = document["operations"][key]
            assert operation["action"] == action
            assert operation["channel"] == {"$ref": f"#/channels/{ident}"}
            assert operation["messages"] == messages
            assert operation["x-actor"] == actor.value
    assert expected == set(document["operations"])
    receive = document["operations"]["langgraph.receive.engineering.queue"]
    assert receive["x-consumer-group"] == "langgraph"
    assert document["operations"]["PO-Worker.send.engineering.queue"]["action"] == "send"


def _resolve(document: dict[str, Any], ref: str) -> object:
    """The node a local `$ref` points at (JSON Pointer after `#`)."""
    node: object = document
    for part in ref.removeprefix("#/").split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict), ref
        assert part in node, ref
        node = node[part]
    return node


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    """Every `$ref` in the document is local and points at an existing node."""
    refs: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    assert any(ref.startswith("#/components/schemas/") for ref in refs)
    for ref in refs:
        assert ref.startswith("#/"), ref
        _resolve(document, ref)


def test_channel_id_rejects_names_that_give_no_valid_key() -> None:
    """A queue name with characters AsyncAPI keys cannot hold is an error, not a bad document."""
    assert channel_id("ansible:deploy:queue") == "ansible.deploy.queue"
    with pytest.raises(InvalidNameError, match="no valid channel id"):
        channel_id("bad queue/name")


@pytest.fixture(scope="module")
def asyncapi_validator() -> Path:
    """tools/asyncapi/validate.mjs with its node_modules; skipped locally without node or npm ci."""
    in_ci = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
    if shutil.which("node") is None:
        if in_ci:
            pytest.fail("node is not on PATH, and CI needs the AsyncAPI parser to run")
        pytest.skip("node is not on PATH")
    if not (TOOL / "node_modules" / "@asyncapi" / "parser").is_dir():
        if not in_ci:
            pytest.skip("tools/asyncapi/node_modules is missing (run npm ci there)")
        result = subprocess.run(NPM_CI, cwd=TOOL, capture_output=True, text=True, timeout=110)
        assert result.returncode == 0, result.stderr
    return TOOL / "validate.mjs"


def _validate(validator: Path, path: Path) -> subprocess.CompletedProcess[str]:
    """Run the official parser on one document."""
    return subprocess.run(
        ["node", str(validator), str(path)],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


@pytest.mark.slow
def test_official_parser_accepts_the_document(asyncapi_validator: Path, exported: Path) -> None:
    """@asyncapi/parser parses the generated document with no error-severity diagnostic."""
    result = _validate(asyncapi_validator, exported / ASYNCAPI_FILE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"valid AsyncAPI 3.0.0 ({len(QUEUES)} channels" in result.stdout


@pytest.mark.slow
def test_official_parser_rejects_a_broken_document(
    asyncapi_validator: Path, tmp_path: Path, document: dict[str, Any]
) -> None:
    """The validator fails, naming the problem, when a channel lacks a declared parameter."""
    broken = json.loads(render_json(document))
    del broken["channels"]["worker.id.input"]["parameters"]["id"]
    broken["channels"]["worker.id.input"]["parameters"]["wrong"] = {"description": "x"}
    path = tmp_path / "broken.json"
    path.write_text(render_json(broken), encoding="utf-8")
    result = _validate(asyncapi_validator, path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "asyncapi3-channel-parameters" in result.stderr
    assert "INVALID" in result.stderr
