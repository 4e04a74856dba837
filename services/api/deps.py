"""Request-scoped dependencies: the session (the request owns the commit), the caller, paging.

Every dependency is a coroutine function: FastAPI runs a plain `def` dependency in a worker
thread, a hop that cost a request more CPU than the dependency's own work."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from services.api.auth.cache import CredentialCache
from services.api.auth.principal import Principal
from services.api.auth.service import REVOKED, authenticate_direct
from services.api.db import Database
from services.api.outbox.repository import OUTBOX_WRITTEN

__all__ = [
    "BearerDep",
    "CallerDep",
    "PageDep",
    "PageParams",
    "SessionDep",
    "authenticate",
    "credential_cache",
    "database",
    "request_session",
    "session",
]

_READ_ONLY = frozenset({"GET", "HEAD", "OPTIONS"})
_WROTE = "deps.wrote"

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="An API key (scope admin, service or user) or a per-user token.",
)


def database(request: Request) -> Database:
    """The application's database."""
    db: Database = request.app.state.db
    return db


@event.listens_for(Session, "after_flush")
def _note_write(db_session: Session, _context: object) -> None:
    db_session.info[_WROTE] = True


def credential_cache(request: Request) -> CredentialCache:
    """The application's cache of recently authenticated credentials."""
    cache: CredentialCache = request.app.state.credentials
    return cache


async def session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request (`request_session`)."""
    async with request_session(request) as db_session:
        yield db_session


@contextlib.asynccontextmanager
async def request_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session of the request, committed when the block ended, rolled back otherwise
    (the `session` dependency; a handler that needs a session only sometimes opens it).

    A read-only request (GET/HEAD/OPTIONS) that wrote nothing is not committed: its
    transaction is only rolled back when the session closes. On SQLite, requests that may
    write (every other method) take the database's write lock for their whole transaction.
    A transaction that revoked credentials empties the credential cache before and after
    its commit."""
    db = database(request)
    read_only = request.method in _READ_ONLY
    lock = None if read_only else db.write_lock
    async with lock or contextlib.nullcontext(), db.sessionmaker() as db_session:
        try:
            yield db_session
            info = db_session.info
            if info.get(REVOKED):
                credential_cache(request).clear()
            if not read_only or info.get(_WROTE) or db_session.new or db_session.dirty:
                await db_session.commit()
            if info.get(REVOKED):
                credential_cache(request).clear()
        except BaseException:
            await db_session.rollback()
            raise
    if db_session.info.get(OUTBOX_WRITTEN):
        request.app.state.relay_wake.set()


SessionDep = Annotated[AsyncSession, Depends(session, scope="function")]


BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
"""The request's bearer credential (declares the security scheme in the OpenAPI document)."""


async def authenticate(
    request: Request, credentials: HTTPAuthorizationCredentials | None
) -> Principal:
    """The caller of `request`, from its bearer credential; 401 without a valid one. No
    session: the credential cache, else one direct read of the key (`direct.py`)."""
    secret = credentials.credentials if credentials is not None else None
    return await authenticate_direct(secret, credential_cache(request), database(request))


async def caller(request: Request, credentials: BearerDep) -> Principal:
    """The authenticated caller; 401 without a valid credential."""
    return await authenticate(request, credentials)


CallerDep = Annotated[Principal, Depends(caller)]


@dataclass(frozen=True)
class PageParams:
    """The window of a list request."""

    limit: int
    offset: int


async def page_params(
    limit: Annotated[int, Query(ge=1, le=500, description="Items per page.")] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1, description="Items to skip.")] = 0,
) -> PageParams:
    """`?limit=&offset=` of every list endpoint."""
    return PageParams(limit=limit, offset=offset)


PageDep = Annotated[PageParams, Depends(page_params)]
