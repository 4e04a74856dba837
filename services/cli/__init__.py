"""The `orchestrator` command: runs actors and the user-facing commands."""
