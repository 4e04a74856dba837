"""The BYOK model the system may configure for Factory Droid: a setting of the worker-manager
(`ORCHESTRATOR_WORKERS__DROID_BYOK`) handed to the worker-wrapper, whose droid adapter writes
it into the CLI's `settings.json` (docs/agents.md, "Droid with a model of your own")."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["DroidByok"]

_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DEFAULT_KEY_VARIABLE = {"anthropic": "ANTHROPIC_API_KEY"}


class DroidByok(BaseModel):
    """A model of the system's choosing for droid (BYOK): where its API is, which model,
    and the variable of the agent's environment that holds its key (a name, not the key)."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)
    """Errors never show the input: a key pasted in by mistake stays out of them."""

    base_url: str
    """The model API's base URL (for `anthropic`, the CLI appends `/v1/messages`)."""
    model: str
    """The model's name at that API (also what the price table prices)."""
    provider: Literal["anthropic", "openai", "generic-chat-completion-api"] = "anthropic"
    api_key_env: str | None = None
    """The variable holding the key; None: ANTHROPIC_API_KEY for `anthropic`, else
    OPENAI_API_KEY."""
    display_name: str = Field(default="orchestrator", min_length=1, max_length=64)
    max_output_tokens: int = Field(default=16384, gt=0)

    @field_validator("base_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"the BYOK model's base_url must be an http(s) URL, not {value!r}")
        return value

    @field_validator("api_key_env")
    @classmethod
    def _variable(cls, value: str | None) -> str | None:
        if value is not None and not _VARIABLE.match(value):  # not echoed: it may be a key
            raise ValueError("api_key_env must name an environment variable (e.g. MY_KEY)")
        return value

    @property
    def key_variable(self) -> str:
        """The variable the CLI reads the key from."""
        return self.api_key_env or _DEFAULT_KEY_VARIABLE.get(self.provider, "OPENAI_API_KEY")
