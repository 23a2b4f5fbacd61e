"""Where the recorder's rows go: one store per recorder, chosen for the database behind it.

The recorder plans rows (hash chain, checkpoints) and a store makes them durable, one
transaction per batch. Going through SQLAlchemy costs more per commit than the fsync itself, so
the write path talks to the driver directly where it can: a writer thread with a plain `sqlite3`
connection for a SQLite file (`sqlite_writer`), and the pooled asyncpg connection for PostgreSQL
(`postgres_writer`). Anything else (an in-memory or URI-style SQLite database) keeps the generic
SQLAlchemy path below. Every store writes the same table, rows and values, so readers, `verify`
and retention never know which one wrote an event.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import func, insert, select
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.audit.chain import GENESIS_HASH
from gateway.audit.entry import CHECKPOINT
from gateway.errors import StorageUnavailable
from gateway.storage.database import Database
from gateway.storage.tables import AuditEventRow

#: Column order of a row tuple, as the recorder builds it and every store inserts it.
COLUMNS: tuple[str, ...] = (
    "replica_id",
    "seq",
    "kind",
    "time",
    "call_id",
    "agent",
    "user_id",
    "tool",
    "workflow_id",
    "decision",
    "outcome",
    "reasoning",
    "prev_hash",
    "hash",
    "content",
)

#: One audit event as a row: values in `COLUMNS` order, `time` a timezone-aware datetime.
Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The last event of one replica's chain, and how many events followed its last checkpoint."""

    seq: int
    hash: str
    since_checkpoint: int

    @classmethod
    def of(cls, head: tuple[int, str] | None, last_checkpoint: int | None) -> ChainHead:
        seq, hash = head if head is not None else (0, GENESIS_HASH)
        return cls(seq, hash, seq - (last_checkpoint or 0))


class EventStore(Protocol):
    """Durable appends to the audit table for one recorder; used by one task at a time."""

    @property
    def connected(self) -> bool:
        """Whether a connection is kept from an earlier operation (and so may have died meanwhile)."""
        ...

    async def load_head(self, replica_id: str) -> ChainHead:
        """Read the chain head; it sees every append that returned or was abandoned before it."""
        ...

    async def append(self, rows: Sequence[Row]) -> None:
        """Insert `rows` in one transaction; returns once it is committed durably, raises if not."""
        ...

    def connection_lost(self, error: BaseException) -> bool:
        """Whether `error` means the kept connection died (worth one retry on a fresh one)."""
        ...

    async def reset(self) -> None:
        """Drop the kept connection after a failure; the next operation opens a new one."""
        ...

    async def close(self) -> None:
        """Release the connection (and thread); nothing is pending when the recorder calls it."""
        ...


async def read_head(connection: AsyncConnection, replica_id: str) -> ChainHead:
    """The chain head through SQLAlchemy: for recovery at start, and the generic store."""
    table = AuditEventRow.__table__
    head = (
        await connection.execute(
            select(table.c.seq, table.c.hash)
            .where(table.c.replica_id == replica_id)
            .order_by(table.c.seq.desc())
            .limit(1)
        )
    ).first()
    last_checkpoint = (
        await connection.execute(
            select(func.max(table.c.seq)).where(table.c.replica_id == replica_id, table.c.kind == CHECKPOINT)
        )
    ).scalar()
    return ChainHead.of((head.seq, head.hash) if head else None, last_checkpoint)


async def open_event_store(db: Database, *, write_timeout: float) -> EventStore:
    """The fastest store for `db`'s database; `write_timeout` bounds how long a lock is waited for."""
    url = db.engine.url
    if db.dialect == "sqlite":
        from gateway.audit.sqlite_writer import SqliteEventStore, sqlite_file

        path = sqlite_file(url)
        if path is not None:
            return SqliteEventStore(path, busy_timeout=min(await _busy_timeout(db), write_timeout))
        return SqlAlchemyEventStore(db)
    if db.dialect == "postgresql":
        from gateway.audit.postgres_writer import PostgresEventStore

        return PostgresEventStore(db)
    return SqlAlchemyEventStore(db)


async def _busy_timeout(db: Database) -> float:
    """The busy timeout the engine gives its SQLite connections, so the writer waits as long."""
    async with db.engine.connect() as connection:
        milliseconds = (await connection.exec_driver_sql("PRAGMA busy_timeout")).scalar()
    return (milliseconds or 0) / 1000


class SqlAlchemyEventStore:
    """The generic store: SQLAlchemy Core on one kept connection."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._connection: AsyncConnection | None = None

    @property
    def connected(self) -> bool:
        return self._connection is not None

    async def load_head(self, replica_id: str) -> ChainHead:
        connection = await self._kept()
        async with connection.begin():
            return await read_head(connection, replica_id)

    async def append(self, rows: Sequence[Row]) -> None:
        connection = await self._kept()
        async with connection.begin():
            await connection.execute(insert(AuditEventRow.__table__), [dict(zip(COLUMNS, row)) for row in rows])

    def connection_lost(self, error: BaseException) -> bool:
        return isinstance(error, DBAPIError) and error.connection_invalidated

    async def reset(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            with contextlib.suppress(SQLAlchemyError, StorageUnavailable, OSError, TimeoutError):
                await connection.invalidate()  # it is being dropped because it failed

    async def close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            with contextlib.suppress(SQLAlchemyError, StorageUnavailable, OSError, TimeoutError):
                await connection.close()  # a broken connection has nothing left to close

    async def _kept(self) -> AsyncConnection:
        if self._connection is None:
            self._connection = await self._db.engine.connect()
        return self._connection


def utc_text(moment: datetime) -> str:
    """A timestamp as SQLAlchemy's SQLite dialect stores `UtcDateTime`: UTC, naive, microseconds.

    Search compares these as text, so the writer must produce exactly the same form.
    """
    t = moment.astimezone(UTC)
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d} {t.hour:02d}:{t.minute:02d}:{t.second:02d}.{t.microsecond:06d}"
