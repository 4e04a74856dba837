"""What a test does when it needs Docker and the machine has none."""

from __future__ import annotations

import os

import pytest

__all__ = ["docker_unavailable"]


def docker_unavailable(message: str) -> None:
    """Skip with the reason, or fail when the run requires Docker (CI: REQUIRE_DOCKER=1)."""
    if os.environ.get("REQUIRE_DOCKER") == "1":
        pytest.fail(f"{message} (REQUIRE_DOCKER=1)")
    pytest.skip(message)
