"""A fake `droid` CLI speaking `droid exec -o stream-json` (see fake_common)."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

# a sibling script, found through sys.path[0] when run; mypy sees the files one by one
from fake_common import (  # type: ignore[import-not-found]
    answer_text,
    emit,
    log_invocation,
    pre_answer,
)


def main() -> None:
    """Read the prompt from --file; emit init, message, tool_call and completion events."""
    argv = sys.argv[1:]
    assert argv[0] == "exec", argv
    assert "stream-json" in argv, argv
    assert "--auto" in argv, argv
    resumed = "--session-id" in argv
    session_id = argv[argv.index("--session-id") + 1] if resumed else str(uuid.uuid4())
    prompt = Path(argv[argv.index("--file") + 1]).read_text(encoding="utf-8")
    log_invocation(prompt)
    emit({"type": "system", "subtype": "init", "session_id": session_id, "model": "fake"})
    if "[malformed]" in prompt:
        sys.stdout.write("garbage line\n")
    emit({"type": "message", "role": "assistant", "text": "partial work", "session_id": session_id})
    emit(
        {
            "type": "tool_call",
            "toolName": "Create",
            "parameters": {"file_path": "README.md"},
            "session_id": session_id,
        }
    )
    pre_answer(prompt)
    if "[noresult]" in prompt:
        return
    if "[error]" in prompt:
        emit({"type": "error", "message": "insufficient permission", "session_id": session_id})
        sys.exit(1)
    emit(
        {
            "type": "completion",
            "finalText": answer_text(prompt, session_id, resumed),
            "numTurns": 1,
            "durationMs": 5,
            "session_id": session_id,
            "usage": {"input_tokens": 3, "output_tokens": 4},
        }
    )


if __name__ == "__main__":
    main()
