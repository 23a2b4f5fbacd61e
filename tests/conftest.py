"""Database fixtures: every storage test runs against a real SQLite file and a real PostgreSQL.

PostgreSQL is the server at 127.0.0.1:5432 (override with GATEWAY_TEST_POSTGRES_URL, which must
name a database the test user may connect to and CREATE DATABASE from). Each test gets its own
freshly created database, dropped afterwards, so tests never see each other's rows. When the
server cannot be reached the PostgreSQL tests fail: CI starts it, and a silent skip would hide
that half of the storage layer went untested.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import asyncpg
import pytest
from sqlalchemy.engine import make_url

from gateway.storage import Database

#: The console's browser fixtures (`browser`, `page`, `new_page`), for any test module that asks for them.
pytest_plugins = ("browser",)

POSTGRES_ADMIN_URL = os.environ.get("GATEWAY_TEST_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")
#: Fixtures that reach the PostgreSQL server; every test using one is marked `postgres`.
POSTGRES_FIXTURES = frozenset({"postgres_url", "module_postgres_url"})


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark a test `postgres` when its fixtures need the server, whether or not it says so itself.

    `-m "not postgres"` (running without the server) must leave out exactly the tests that need
    it; a test that reaches PostgreSQL through a fixture but forgot the marker would fail there.
    Runs before `-m` selects, so the marker counts.
    """
    for item in items:
        if POSTGRES_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture
def anyio_backend() -> str:
    """The async database fixtures and tests run on asyncio, like the gateway (asyncpg needs it)."""
    return "asyncio"


async def _administer(statement: str) -> None:
    try:
        connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError) as error:
        unreachable = f"{type(error).__name__}: {error}"
    else:
        unreachable = None
    if unreachable is not None:
        pytest.fail(
            f"PostgreSQL at {POSTGRES_ADMIN_URL} is not reachable ({unreachable}). Start it with "
            "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`, "
            "point GATEWAY_TEST_POSTGRES_URL at a server, or leave these tests out with -m 'not postgres'.",
            pytrace=False,
        )
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def _sqlite_url(directory: Path) -> str:
    return f"sqlite+aiosqlite:///{directory / 'gateway.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database that is dropped after the test."""
    yield from _fresh_postgres_database()


@pytest.fixture(scope="module")
def module_postgres_url() -> Iterator[str]:
    """Like `postgres_url`, shared by one module's tests (for gateways started once per module)."""
    yield from _fresh_postgres_database()


def _fresh_postgres_database() -> Iterator[str]:
    name = f"gateway_test_{uuid.uuid4().hex[:16]}"
    anyio.run(_administer, f'CREATE DATABASE "{name}"')
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        anyio.run(_administer, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database, once as a SQLite file and once as a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return _sqlite_url(tmp_path)
    return request.getfixturevalue("postgres_url")


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """A migrated `Database` on `database_url`, closed after the test."""
    database = Database(database_url)
    await database.migrate()
    try:
        yield database
    finally:
        await database.close()
