"""Who is calling: the scope of the credential and the user it acts as."""

from __future__ import annotations

from dataclasses import dataclass

from services.api.errors import ForbiddenError
from shared.api_client.schemas import Scope

__all__ = ["Principal"]


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of one request."""

    key_id: int
    scope: Scope
    user_id: int | None = None

    @property
    def is_admin(self) -> bool:
        """Admins see and change everything."""
        return self.scope == "admin"

    @property
    def sees_everything(self) -> bool:
        """Admins and services are not limited to one user's resources."""
        return self.scope in ("admin", "service")

    def require(self, *scopes: Scope) -> None:
        """Raise `ForbiddenError` unless the credential has one of `scopes`."""
        if self.scope not in scopes:
            allowed = " or ".join(scopes)
            raise ForbiddenError(f"this operation needs a credential of scope {allowed}")

    def can_see_owner(self, owner_id: int | None) -> bool:
        """True when the caller may see a resource owned by `owner_id`."""
        return self.sees_everything or (owner_id is not None and owner_id == self.user_id)
