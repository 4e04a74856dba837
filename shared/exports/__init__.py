"""Exports of the contracts: JSON Schemas and the AsyncAPI document, checked in under `docs/`.

`export_all(directory)` writes, deterministically (sorted keys, two-space indent, a final
newline), so that a test can compare the checked-in files byte for byte:

- `<directory>/schemas/<Name>.json`: one standalone JSON Schema per model of
  `shared.contracts` (DTOs, messages, results, events) and per union (`WorkerCommand`,
  `WorkerResponse`);
- `<directory>/asyncapi/asyncapi.json`: the AsyncAPI 3.0 document of every queue of
  `shared.registry`.

The `schemas/` folder belongs to the export: a `.json` file there that the export no longer
produces (a removed model) is deleted.
"""

from shared.exports.asyncapi import ASYNCAPI_VERSION, build_asyncapi, channel_id, operation_id
from shared.exports.errors import (
    DanglingReferenceError,
    ExportError,
    InvalidNameError,
    NameCollisionError,
)
from shared.exports.schemas import component_schemas, contract_models, schema_documents
from shared.exports.writer import ASYNCAPI_FILE, SCHEMAS_DIR, export_all, render_json

__all__ = [
    "ASYNCAPI_FILE",
    "ASYNCAPI_VERSION",
    "SCHEMAS_DIR",
    "DanglingReferenceError",
    "ExportError",
    "InvalidNameError",
    "NameCollisionError",
    "build_asyncapi",
    "channel_id",
    "component_schemas",
    "contract_models",
    "export_all",
    "operation_id",
    "render_json",
    "schema_documents",
]
