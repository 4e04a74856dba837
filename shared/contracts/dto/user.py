"""User DTO of the REST API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["UserDTO"]


class UserDTO(BaseModel):
    """User response."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    telegram_id: int
    is_admin: bool = False
