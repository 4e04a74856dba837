"""`orchestrator admin`: bootstrap the API's database directly (first admin, keys, migrate).

These commands open the database of the settings (`DATABASE_URL`, else the embedded SQLite
file), so they work before any credential exists. A created secret is printed once, on
stdout, and never stored: only its hash is.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

import typer
from rich.console import Console

from shared.settings import Settings

app = typer.Typer(help="Administration: first admin, API keys, migrations.", no_args_is_help=True)
err = Console(stderr=True)

ScopeName = Literal["admin", "service", "user"]


async def create_admin_key(settings: Settings, telegram_id: int, name: str) -> tuple[int, str]:
    from services.api.auth.service import AuthService
    from services.api.main import prepare_database
    from services.api.users.models import User
    from services.api.users.repository import UserRepository

    database = await prepare_database(settings)
    try:
        async with database.sessionmaker() as session:
            users = UserRepository(session)
            user = await users.by_telegram_id(telegram_id)
            if user is None:
                user = await users.add(User(telegram_id=telegram_id, is_admin=True))
            user.is_admin = True
            _, secret = await AuthService(session).create_key(name, "admin", user.id)
            await session.commit()
            return user.id, secret
    finally:
        await database.close()


async def _create_key(settings: Settings, name: str, scope: ScopeName, user_id: int | None) -> str:
    from services.api.auth.service import AuthService
    from services.api.main import prepare_database

    database = await prepare_database(settings)
    try:
        async with database.sessionmaker() as session:
            _, secret = await AuthService(session).create_key(name, scope, user_id)
            await session.commit()
            return secret
    finally:
        await database.close()


async def _migrate(settings: Settings) -> None:
    from services.api.main import prepare_database

    database = await prepare_database(settings)
    await database.close()


def _fail(error: Exception) -> typer.Exit:
    err.print(f"[red]error[/] {getattr(error, 'message', None) or error}")
    return typer.Exit(1)


@app.command("create-admin")
def create_admin(
    telegram_id: Annotated[
        int, typer.Option(min=1, help="The admin's Telegram id (an identity, not a credential).")
    ],
    name: Annotated[str, typer.Option(help="A label for the key.")] = "admin",
) -> None:
    """Create (or promote) an admin user and print a new admin key for it."""
    from services.api.errors import ApiError

    try:
        user_id, secret = asyncio.run(create_admin_key(Settings(), telegram_id, name))
    except ApiError as error:
        raise _fail(error) from None
    err.print(f"admin user {user_id} (telegram {telegram_id}); the key is shown only now:")
    typer.echo(secret)


@app.command("create-key")
def create_key(
    name: Annotated[str, typer.Option(help="A label, e.g. the service that uses it.")],
    scope: Annotated[str, typer.Option(help="admin, service or user.")] = "service",
    user_id: Annotated[
        int | None, typer.Option(min=1, help="The user a user token acts as.")
    ] = None,
) -> None:
    """Create an API key (or a user token) and print it."""
    from services.api.errors import ApiError

    if scope not in ("admin", "service", "user"):
        err.print("[red]error[/] --scope must be admin, service or user")
        raise typer.Exit(2)
    try:
        secret = asyncio.run(_create_key(Settings(), name, scope, user_id))  # type: ignore[arg-type]
    except ApiError as error:
        raise _fail(error) from None
    err.print(f"{scope} key {name!r}; the key is shown only now:")
    typer.echo(secret)


@app.command("migrate")
def migrate() -> None:
    """Bring the database to the newest schema."""
    asyncio.run(_migrate(Settings()))
    err.print("database migrated")
