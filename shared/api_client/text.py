"""The string types of the API's requests: a bounded length and a character rule per kind.

Every free-form string of a request (body, path, query) is one of these (a server handle
keeps its stricter pattern), so the rules live here; docs/security.md ("Input limits")
lists them per field.

- `Label` (1-100), `Identifier` (1-64), `Reference` (1-255), `Url` (1-500): one line; no
  control character (C0, DEL, C1), line or paragraph separator, bidirectional embedding,
  override or isolate, or lone surrogate; not blank.
- `FreeText` (0-10,000), `Spec` (0-100,000): tabs and line breaks allowed; no NUL, no other
  control character, no lone surrogate.
- `JsonObject` (a task's result): no NUL or lone surrogate in any key or string, no number
  that is not finite (`NaN`, `Infinity`), nesting at most 32 levels deep.

A lone surrogate (a JSON `\\ud800` without its pair) is no character at all: no database,
file or queue can store it. Lengths count code points. The JSON Schema of each string type
carries its length and a `pattern` of the characters it allows, so the OpenAPI document
shows the rules.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, StringConstraints
from pydantic_core import PydanticCustomError

__all__ = [
    "FREE_TEXT_MAX",
    "IDENTIFIER_MAX",
    "JSON_DEPTH_MAX",
    "LABEL_MAX",
    "REFERENCE_MAX",
    "SPEC_MAX",
    "URL_MAX",
    "FreeText",
    "Identifier",
    "JsonObject",
    "Label",
    "Reference",
    "Spec",
    "Url",
    "refused_character",
]

LABEL_MAX = 100
IDENTIFIER_MAX = 64
REFERENCE_MAX = 255
URL_MAX = 500
FREE_TEXT_MAX = 10_000
SPEC_MAX = 100_000
JSON_DEPTH_MAX = 32

_LINE_REFUSED = "\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029\\u202a-\\u202e\\u2066-\\u2069"
"""One-line values: every control character, the line and paragraph separators, and the
bidirectional embeddings, overrides and isolates (text that displays other than it reads)."""
_TEXT_REFUSED = "\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f"
"""Free text: the control characters but tab, newline and carriage return."""
_SURROGATES = "\\ud800-\\udfff"

LINE_PATTERN = f"^[^{_LINE_REFUSED}]*$"
"""The JSON Schema `pattern` of one-line values (Python, Rust and ECMA regex alike)."""
TEXT_PATTERN = f"^[^{_TEXT_REFUSED}]*$"
"""The JSON Schema `pattern` of free text."""

_LINE_BAD = re.compile(f"[{_LINE_REFUSED}{_SURROGATES}]")
_TEXT_BAD = re.compile(f"[{_TEXT_REFUSED}{_SURROGATES}]")
_JSON_BAD = re.compile(f"[\\u0000{_SURROGATES}]")


def refused_character(value: str, *, free_text: bool = False) -> str | None:
    """Why `value` is refused by its character rule (one line, or free text), else None."""
    found = (_TEXT_BAD if free_text else _LINE_BAD).search(value)
    return None if found is None else _describe(found.group(), found.start())


def _describe(char: str, index: int) -> str:
    code = ord(char)
    if 0xD800 <= code <= 0xDFFF:
        kind = "a lone surrogate"
    elif code == 0:
        kind = "a NUL character"
    elif code < 0x20 or 0x7F <= code <= 0x9F:
        kind = "a control character"
    elif code in (0x2028, 0x2029):
        kind = "a line separator"
    else:
        kind = "a bidirectional control character"
    return f"contains {kind} (U+{code:04X}) at index {index}"


def _line(value: Any) -> Any:
    if isinstance(value, str):
        problem = refused_character(value)
        if problem is not None:
            raise PydanticCustomError("refused_character", problem)
        if value and not value.strip():
            raise PydanticCustomError("blank", "must not be blank")
    return value


def _text(value: Any) -> Any:
    if isinstance(value, str):
        problem = refused_character(value, free_text=True)
        if problem is not None:
            raise PydanticCustomError("refused_character", problem)
    return value


def _json_strings(value: Any) -> Any:
    """Refuse NUL and lone surrogates in every key and string of a JSON value, numbers that
    are not finite, and nesting deeper than `JSON_DEPTH_MAX` (no recursion: a deep document
    costs a loop, not the stack; a path is spelled out only for the error)."""
    pending: list[tuple[tuple[str | int, ...], Any]] = [((), value)]
    while pending:
        path, item = pending.pop()
        if isinstance(item, str):
            found = _JSON_BAD.search(item)
            if found is not None:
                problem = _describe(found.group(), found.start())
                raise PydanticCustomError("refused_character", f"{_spell(path)} {problem}")
        elif isinstance(item, float) and not math.isfinite(item):
            raise PydanticCustomError("not_finite", f"{_spell(path)} is not a finite number")
        elif isinstance(item, dict | list) and len(path) >= JSON_DEPTH_MAX:
            raise PydanticCustomError(
                "too_deep", f"{_spell(path)} nests deeper than {JSON_DEPTH_MAX} levels"
            )
        elif isinstance(item, dict):
            for key, nested in item.items():
                pending.append(((*path, "<key>"), key))
                pending.append(((*path, str(key)), nested))
        elif isinstance(item, list):
            pending.extend(((*path, index), nested) for index, nested in enumerate(item))
    return value


def _spell(path: tuple[str | int, ...]) -> str:
    """`path` as a reader finds it: `the value`, `['log'][0]`, `a key of ['log'][0]`."""
    if path and path[-1] == "<key>":
        return f"a key of {_spell(path[:-1])}"
    if not path:
        return "the value"
    return "".join(f"[{part!r:.40}]" for part in path)


_LINE = BeforeValidator(_line)
_TEXT = BeforeValidator(_text)

Label = Annotated[
    str, StringConstraints(min_length=1, max_length=LABEL_MAX, pattern=LINE_PATTERN), _LINE
]
"""A name people read (a project, an API key): one line, 1-100 characters, not blank."""
Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=IDENTIFIER_MAX, pattern=LINE_PATTERN), _LINE
]
"""The id of a resource (a project, a task): one line, 1-64 characters."""
Reference = Annotated[
    str, StringConstraints(min_length=1, max_length=REFERENCE_MAX, pattern=LINE_PATTERN), _LINE
]
"""A host address, a user name, a secret reference, a handle: one line, 1-255 characters."""
Url = Annotated[
    str, StringConstraints(min_length=1, max_length=URL_MAX, pattern=LINE_PATTERN), _LINE
]
"""A URL: one line, 1-500 characters."""
FreeText = Annotated[str, StringConstraints(max_length=FREE_TEXT_MAX, pattern=TEXT_PATTERN), _TEXT]
"""A description: up to 10,000 characters; tabs and line breaks allowed."""
Spec = Annotated[str, StringConstraints(max_length=SPEC_MAX, pattern=TEXT_PATTERN), _TEXT]
"""A task's specification: up to 100,000 characters; tabs and line breaks allowed."""
JsonObject = Annotated[dict[str, Any], BeforeValidator(_json_strings)]
"""A JSON object whose keys and strings hold no NUL and no lone surrogate, whose numbers are
finite and which nests at most 32 levels deep."""
