"""Hostile project names: what a user could type where the system expects a label.

Each name that tries to run a command would create `PWNED` (a path private to this test
run); a test passes a name through a piece of code and then checks that `PWNED` does not
exist, that nothing was written outside the intended directory and that what was derived
from the name has a bounded length.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

__all__ = ["HOSTILE_NAMES", "PWNED"]

PWNED = Path(tempfile.gettempdir()) / f"pwned-{uuid.uuid4().hex}"
"""Created by any of the names below that manages to run a command."""

HOSTILE_NAMES: list[str] = [
    "../../etc",
    "../../../../../../tmp/escaped",
    "/etc/passwd",
    "..",
    ".",
    ".git",
    "-rf --help",
    f"$(touch {PWNED})",
    f"`touch {PWNED}`",
    f"; touch {PWNED} #",
    f"' ; touch {PWNED} ; '",
    f'"""; import os; os.system("touch {PWNED}"); """',
    f'x", __import__("os").system("touch {PWNED}"), "',
    f"x\"\ndescription = 'injected'\n[tool.x]\ny = \"{PWNED}",
    "{{ 7 * 7 }}{% if true %}jinja{% endif %}",
    "ends with a backslash \\",
    "名前 プロジェクト 🚀 émoji",
    "\u202eevil\u202c",
    "nul \x00 and escape \x1b[31m",
    "lone \ud800 surrogate",
    "é" * 5000,
    "x" * 100_000,
]
"""Path traversal, shell and Python/TOML/Jinja injection, unicode, control characters,
very long values."""
