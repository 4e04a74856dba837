"""Reading what `ansible-playbook` printed: failed tasks, unreachable hosts, job reports.

The default stdout callback prints a task result as `<status>: [<host>]... => <JSON>`; the
JSON may span lines. Playbooks hand data back with a `debug` task whose message starts with
`INFRA_REPORT ` followed by a JSON object.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PlaybookOutput", "Redactor", "parse_output", "tail"]

_RESULT = re.compile(
    r"^(?P<status>ok|changed|fatal|failed): \[(?P<host>[^\]]+)\]"
    r"(?:[^\n]*?(?P<kind>FAILED!|UNREACHABLE!))?[^\n]*? => ",
    re.MULTILINE,
)
_REPORT_PREFIX = "INFRA_REPORT "
_DECODER = json.JSONDecoder()


@dataclass
class PlaybookOutput:
    """What a run's stdout says."""

    failures: list[str] = field(default_factory=list)
    unreachable: bool = False
    report: dict[str, Any] | None = None


def _message(result: dict[str, Any]) -> str:
    if "censored" in result:
        return "a task that handles secrets failed (its output is hidden)"
    message = str(result.get("msg") or "").strip()
    details = [str(result.get(key) or "").strip() for key in ("stderr", "stdout")]
    detail = next((text for text in details if text), "")
    if message and detail and message.startswith("non-zero return code"):
        return f"{message}: {detail.splitlines()[-1]}"
    return message or detail or "task failed"


def parse_output(stdout: str) -> PlaybookOutput:
    """The failures, unreachability and report found in a run's stdout."""
    output = PlaybookOutput()
    for match in _RESULT.finditer(stdout):
        try:
            result, _ = _DECODER.raw_decode(stdout, match.end())
        except json.JSONDecodeError:
            continue
        if not isinstance(result, dict):
            continue
        kind = match.group("kind")
        if kind == "UNREACHABLE!" or result.get("unreachable") is True:
            output.unreachable = True
            output.failures.append(f"host {match.group('host')} unreachable: {_message(result)}")
        elif kind == "FAILED!" or match.group("status") in ("fatal", "failed"):
            output.failures.append(_message(result))
        else:
            message = str(result.get("msg", ""))
            if message.startswith(_REPORT_PREFIX):
                try:
                    report = json.loads(message.removeprefix(_REPORT_PREFIX))
                except json.JSONDecodeError:
                    continue
                if isinstance(report, dict):
                    output.report = report
    return output


def tail(text: str, limit_chars: int) -> str:
    """The last `limit_chars` characters of `text`, cut at a line start when possible."""
    if len(text) <= limit_chars:
        return text
    cut = text[-limit_chars:]
    newline = cut.find("\n")
    return cut[newline + 1 :] if 0 <= newline < len(cut) - 1 else cut


class Redactor:
    """Replaces known secret values in any text with `***` (values shorter than 4 are kept)."""

    MIN_LENGTH = 4

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = {value for value in secrets if len(value) >= self.MIN_LENGTH}
        # longest first, so a secret that contains another is replaced whole
        self._values = sorted(values, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        """`text` without any of the secrets."""
        for value in self._values:
            text = text.replace(value, "***")
        return text

    def extend(self, secrets: Iterable[str]) -> Redactor:
        """A redactor for these secrets as well."""
        return Redactor([*self._values, *secrets])
