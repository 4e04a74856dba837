"""Request-scoped dependencies: the session (the request owns the commit), the caller, paging."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.auth.principal import Principal
from services.api.auth.service import AuthService
from services.api.db import Database
from services.api.outbox.repository import OUTBOX_WRITTEN

__all__ = ["CallerDep", "PageDep", "PageParams", "SessionDep", "database", "session"]

_READ_ONLY = frozenset({"GET", "HEAD", "OPTIONS"})

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="An API key (scope admin, service or user) or a per-user token.",
)


def database(request: Request) -> Database:
    """The application's database."""
    db: Database = request.app.state.db
    return db


async def session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request, committed when the handler returned, rolled back otherwise.

    On SQLite, requests that may write (every method but GET/HEAD/OPTIONS) take the
    database's write lock for their whole transaction."""
    db = database(request)
    lock = db.write_lock if request.method not in _READ_ONLY else None
    async with lock or contextlib.nullcontext(), db.sessionmaker() as db_session:
        try:
            yield db_session
            await db_session.commit()
        except BaseException:
            await db_session.rollback()
            raise
    if db_session.info.get(OUTBOX_WRITTEN):
        request.app.state.relay_wake.set()


SessionDep = Annotated[AsyncSession, Depends(session, scope="function")]


async def caller(
    db_session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The authenticated caller; 401 without a valid credential."""
    secret = credentials.credentials if credentials is not None else None
    return await AuthService(db_session).authenticate(secret)


CallerDep = Annotated[Principal, Depends(caller)]


@dataclass(frozen=True)
class PageParams:
    """The window of a list request."""

    limit: int
    offset: int


def page_params(
    limit: Annotated[int, Query(ge=1, le=500, description="Items per page.")] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1, description="Items to skip.")] = 0,
) -> PageParams:
    """`?limit=&offset=` of every list endpoint."""
    return PageParams(limit=limit, offset=offset)


PageDep = Annotated[PageParams, Depends(page_params)]
