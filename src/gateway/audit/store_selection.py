"""Which store writes a recorder's rows: the fastest one for the database behind it.

Going through SQLAlchemy costs more per commit than the fsync itself, so the write path talks to
the driver directly where it can: a writer thread with a plain `sqlite3` connection for a SQLite
file (`sqlite_writer`), and the pooled asyncpg connection for PostgreSQL (`postgres_writer`).
Anything else (an in-memory or URI-style SQLite database) keeps the generic SQLAlchemy path
(`sqlalchemy_writer`).
"""

from __future__ import annotations

from gateway.audit.event_store import EventStore
from gateway.audit.postgres_writer import PostgresEventStore
from gateway.audit.sqlalchemy_writer import SqlAlchemyEventStore
from gateway.audit.sqlite_writer import SqliteEventStore, sqlite_file
from gateway.storage.database import Database


async def open_event_store(db: Database, *, write_timeout: float) -> EventStore:
    """The fastest store for `db`'s database; `write_timeout` bounds how long a lock is waited for."""
    if db.dialect == "sqlite":
        path = sqlite_file(db.engine.url)
        if path is not None:
            return SqliteEventStore(path, busy_timeout=min(await _busy_timeout(db), write_timeout))
        return SqlAlchemyEventStore(db)
    if db.dialect == "postgresql":
        return PostgresEventStore(db)
    return SqlAlchemyEventStore(db)


async def _busy_timeout(db: Database) -> float:
    """The busy timeout the engine gives its SQLite connections, so the writer waits as long."""
    async with db.engine.connect() as connection:
        milliseconds = (await connection.exec_driver_sql("PRAGMA busy_timeout")).scalar()
    return (milliseconds or 0) / 1000
