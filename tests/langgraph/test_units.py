"""Pure pieces of the langgraph actor: request ids, repository names, checkpointer URLs."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest

from services.langgraph.checkpointer import open_checkpointer, postgres_conninfo
from services.langgraph.errors import CheckpointerConfigError, RepositoryMismatchError
from services.langgraph.graphs.state import request_id_for, task_of
from services.langgraph.naming import repo_full_name_of, results_stream
from services.langgraph.settings import LanggraphSettings
from shared.contracts import ProjectDTO, ProjectStatus
from shared.git.naming import full_name_from_url, slug
from shared.settings import ApiSettings, Settings


def _project(**fields: object) -> ProjectDTO:
    base: dict[str, object] = {
        "id": "ABCDEF12-3456",
        "name": "My Shop Bot!",
        "status": ProjectStatus.DRAFT,
    }
    return ProjectDTO.model_validate({**base, **fields})


def test_request_id_round_trips_to_its_task() -> None:
    """A step's request id is stable and names its task; foreign ids map to no task."""
    request_id = request_id_for("task-1", "create_worker")
    assert request_id == request_id_for("task-1", "create_worker")
    assert task_of(request_id) == "task-1"
    assert task_of("3f1c-uuid-of-someone-else") is None


def test_repository_names() -> None:
    """A project's repository is always owner/slug-id8, also once its URL is recorded."""
    assert slug("My Shop Bot!") == "my-shop-bot"
    assert repo_full_name_of(_project(), owner="projects") == "projects/my-shop-bot-abcdef12"
    own = _project(repository_url="file:///var/repos/projects/my-shop-bot-abcdef12.git")
    assert repo_full_name_of(own, owner="projects") == "projects/my-shop-bot-abcdef12"
    assert full_name_from_url("https://github.com/acme/shop") == "acme/shop"
    assert full_name_from_url("https://github.com/") is None
    assert results_stream() == "results:langgraph"


@pytest.mark.parametrize(
    "url",
    [
        "file:///var/repos/victims/shop-0badf00d.git",
        "file:///var/repos/projects/shop-0badf00d.git",
        "https://github.com/someone-else/my-shop-bot-abcdef12",
        "file:///",
        "not a url",
    ],
)
def test_a_recorded_repository_that_is_not_the_projects_own_is_refused(url: str) -> None:
    """The flow never follows a recorded URL to another repository: it refuses the project."""
    with pytest.raises(RepositoryMismatchError, match="not its own"):
        repo_full_name_of(_project(repository_url=url), owner="projects")


def test_postgres_conninfo_accepts_sqlalchemy_urls_only_for_postgres() -> None:
    """`postgresql+asyncpg://` becomes a libpq URL; anything else is refused."""
    url = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
    assert postgres_conninfo(url) == "postgresql://postgres@127.0.0.1:5432/test"
    with pytest.raises(CheckpointerConfigError):
        postgres_conninfo("sqlite:///x.db")


def test_settings_of_the_system_take_its_api_and_postgres_database(tmp_path: Path) -> None:
    """The system's data dir, API URL and a PostgreSQL database reach the actor's settings."""
    system = Settings(
        data_dir=tmp_path, database_url="postgresql+asyncpg://u@h/db", api=ApiSettings(port=9999)
    )
    own = LanggraphSettings.of(system)
    assert own.data_dir == tmp_path
    assert own.api_url == "http://127.0.0.1:9999"
    assert own.checkpoint_url == "postgresql+asyncpg://u@h/db"


async def test_sqlite_checkpointer_is_created_under_the_data_dir(tmp_path: Path) -> None:
    """The embedded checkpointer is a SQLite file in `<data_dir>/langgraph/`."""
    settings = LanggraphSettings(data_dir=tmp_path)
    async with open_checkpointer(settings) as saver:
        assert [c async for c in saver.alist(None)] == []
    assert (tmp_path / "langgraph" / "checkpoints.sqlite").is_file()


@pytest.mark.postgres
async def test_postgres_checkpointer_sets_up_its_tables(tmp_path: Path) -> None:
    """With a PostgreSQL URL the checkpointer is AsyncPostgresSaver, tables created."""
    url = "postgresql://postgres@127.0.0.1:5432/test"
    settings = LanggraphSettings(data_dir=tmp_path, checkpoint_url=url)
    try:
        async with open_checkpointer(settings) as saver:
            assert type(saver).__name__ == "AsyncPostgresSaver"
            config = {"configurable": {"thread_id": f"t-{datetime.now(UTC).timestamp()}"}}
            assert await saver.aget_tuple(config) is None  # type: ignore[arg-type]
    except OSError as error:  # pragma: no cover - no server here
        pytest.skip(f"PostgreSQL unreachable: {error}")


@pytest.mark.postgres
async def test_replicas_starting_together_set_up_the_checkpointer_once(tmp_path: Path) -> None:
    """Four replicas open the PostgreSQL checkpointer of a new database at once: each gets a
    ready saver (the setup runs under an advisory lock; without it the second one failed on
    a duplicate `checkpoint_migrations` row and its replica stopped)."""
    import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
    from sqlalchemy import make_url

    from tests.support.api import _pg_base_url, _plain_dsn

    name = f"checkpoints_{datetime.now(UTC).strftime('%H%M%S%f')}"
    try:
        admin = await asyncpg.connect(_plain_dsn(_pg_base_url()), timeout=3)
    except OSError as error:  # pragma: no cover - no server here
        pytest.skip(f"PostgreSQL unreachable: {error}")
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(_pg_base_url()).set(database=name).render_as_string(hide_password=False)
    settings = LanggraphSettings(data_dir=tmp_path, checkpoint_url=url)

    async def replica() -> int:
        async with open_checkpointer(settings) as saver:
            return len([c async for c in saver.alist(None)])

    try:
        assert await asyncio.gather(*(replica() for _ in range(4))) == [0, 0, 0, 0]
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def test_every_router_runs_on_the_event_loop() -> None:
    """LangGraph runs a sync router of an async graph in a thread of the default executor
    (a thread hop at every edge of every flow); every router of both graphs is a coroutine
    function, keeping its name and the flow's state as its input."""
    from langgraph.checkpoint.memory import InMemorySaver

    from services.langgraph.graphs.deploy import build_deploy_graph
    from services.langgraph.graphs.engineering import build_engineering_graph
    from services.langgraph.graphs.state import FlowState

    for build in (build_engineering_graph, build_deploy_graph):
        branches = build(InMemorySaver()).builder.branches
        specs = [(name, spec) for by_name in branches.values() for name, spec in by_name.items()]
        assert specs
        for name, spec in specs:
            path = cast(Any, spec.path)  # a RunnableCallable: its sync and async functions
            assert path.func is None, name  # no sync function: nothing for the executor
            assert path.afunc is not None, name
            assert spec.input_schema is FlowState, name
            assert name != "condition"  # its own name, not LangGraph's default


async def test_a_router_on_the_loop_routes_as_the_plain_function() -> None:
    """`branch`'s wrapper answers what the router answers."""
    from langgraph.checkpoint.memory import InMemorySaver

    from services.langgraph.graphs.engineering import build_engineering_graph

    branches = build_engineering_graph(InMemorySaver()).builder.branches
    router = cast(Any, branches["start"]["_after_start"].path).afunc
    assert await router({"outcome": "skipped"}) == "__end__"
    assert await router({"outcome": "failed"}) == "finish"
