"""A fake `claude` CLI speaking Claude Code's stream-json format (see fake_common)."""

from __future__ import annotations

import sys
import uuid

# a sibling script, found through sys.path[0] when run; mypy sees the files one by one
from fake_common import (  # type: ignore[import-not-found]
    answer_text,
    emit,
    log_invocation,
    pre_answer,
)


def main() -> None:
    """Read the prompt from stdin; emit init, assistant, tool_use and result events."""
    argv = sys.argv[1:]
    assert "-p" in argv, argv
    assert "stream-json" in argv, argv
    resumed = "--resume" in argv
    session_id = argv[argv.index("--resume") + 1] if resumed else str(uuid.uuid4())
    prompt = sys.stdin.read()
    log_invocation(prompt)
    emit({"type": "system", "subtype": "init", "session_id": session_id, "tools": ["Edit"]})
    if "[malformed]" in prompt:
        sys.stdout.write('this is not json\n{"truncated": \n[1, 2, 3]\n')
    message = {"content": [{"type": "text", "text": "partial work"}]}
    emit({"type": "assistant", "message": message, "session_id": session_id})
    tool = {"type": "tool_use", "name": "Edit", "input": {"file_path": "src/app.py"}}
    emit({"type": "assistant", "message": {"content": [tool]}, "session_id": session_id})
    pre_answer(prompt)
    if "[noresult]" in prompt:
        return
    failed = "[error]" in prompt
    emit(
        {
            "type": "result",
            "subtype": "error_during_execution" if failed else "success",
            "is_error": failed,
            "result": "the model refused" if failed else answer_text(prompt, session_id, resumed),
            "session_id": session_id,
            "total_cost_usd": 0.0123,
            "usage": {"input_tokens": 11, "output_tokens": 7},
        }
    )


if __name__ == "__main__":
    main()
