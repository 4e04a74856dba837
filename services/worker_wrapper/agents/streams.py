"""Shared pieces of the stream-json parsers: JSON line decoding, activity wording, masking."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "decode_line",
    "describe_tool",
    "error_text",
    "mask_text",
    "secret_values",
    "tool_target",
]

_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH", re.IGNORECASE)
_MIN_SECRET_CHARS = 6

_FILE_KEYS = ("file_path", "path", "notebook_path", "filePath")
_SUMMARY_KEYS = ("command", "pattern", "url", "query", "description")
_SUMMARY_CHARS = 120


def decode_line(line: str) -> dict[str, Any] | None:
    """The JSON object on a line, or None for blank, malformed or non-object lines."""
    text = line.strip()
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def tool_target(arguments: Any) -> tuple[str, str | None]:
    """What a tool call works on (its file, else its command, pattern, URL, ...), shortened
    to one line, and the file it touches (if any)."""
    touched: str | None = None
    detail = ""
    if isinstance(arguments, dict):
        for key in _FILE_KEYS:
            value = arguments.get(key)
            if isinstance(value, str) and value:
                touched = value
                detail = value
                break
        else:
            for key in _SUMMARY_KEYS:
                value = arguments.get(key)
                if isinstance(value, str) and value:
                    detail = value
                    break
    return detail.replace("\n", " ")[:_SUMMARY_CHARS], touched


def describe_tool(name: str, arguments: Any) -> tuple[str, str | None]:
    """A one-line description of a tool call, and the file it touches (if any)."""
    detail, touched = tool_target(arguments)
    return (f"{name}: {detail}" if detail else name), touched


def error_text(message: str, *, exit_code: int | None, stderr_tail: str) -> str:
    """An error message with the exit code and the last lines of stderr."""
    parts = [message]
    if exit_code is not None:
        parts.append(f"(exit code {exit_code})")
    tail = stderr_tail.strip()
    if tail:
        parts.append(f"stderr: {tail[-1500:]}")
    return " ".join(parts)


def secret_values(env: Mapping[str, str]) -> list[str]:
    """The values of secret-looking variables of `env` (API keys, tokens), longest first."""
    found = {v for k, v in env.items() if _SECRET_NAME.search(k) and len(v) >= _MIN_SECRET_CHARS}
    return sorted(found, key=len, reverse=True)


def mask_text(text: str, secrets: list[str]) -> str:
    """`text` with every value of `secrets` replaced by `***`."""
    for value in secrets:
        text = text.replace(value, "***")
    return text
