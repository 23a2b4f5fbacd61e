"""Alembic environment for the gateway schema, on SQLite and PostgreSQL alike.

At runtime `Database.migrate` hands over an open connection (already locked and in a
transaction) through `config.attributes["connection"]`. Run by the `alembic` command instead, for
example to write a new revision, it opens its own engine from `-x url=...`, the config's
`sqlalchemy.url`, or the default SQLite file.
"""

from __future__ import annotations

import anyio
from alembic import context
from sqlalchemy import Connection

from gateway.storage.database import DEFAULT_DATABASE_URL, Database, async_database_url
from gateway.storage.tables import Base

target_metadata = Base.metadata


def _database_url() -> str:
    return (
        context.get_x_argument(as_dictionary=True).get("url")
        or context.config.get_main_option("sqlalchemy.url")
        or DEFAULT_DATABASE_URL
    )


def _run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine() -> None:
    database = Database(_database_url())
    try:
        async with database.engine.begin() as connection:
            await connection.run_sync(_run_on)
    finally:
        await database.close()


def _run_offline() -> None:
    url = async_database_url(_database_url())
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url.get_backend_name() == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    _run_offline()
elif (given := context.config.attributes.get("connection")) is not None:
    _run_on(given)
else:
    anyio.run(_run_with_own_engine)
