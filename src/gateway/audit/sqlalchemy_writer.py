"""The generic audit store: SQLAlchemy Core on one kept connection.

It serves every database the direct stores do not (an in-memory or URI-style SQLite database),
and reads chain heads for the recorder's start-up recovery, which runs before any store exists.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from sqlalchemy import func, insert, select
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.audit.entry import CHECKPOINT
from gateway.audit.event_store import COLUMNS, ChainHead, Row
from gateway.errors import StorageUnavailable
from gateway.storage.database import Database
from gateway.storage.tables import AuditEventRow

_EVENTS = AuditEventRow.__table__


async def read_head(connection: AsyncConnection, replica_id: str) -> ChainHead:
    """The chain head through SQLAlchemy: for recovery at start, and the generic store."""
    head = (
        await connection.execute(
            select(_EVENTS.c.seq, _EVENTS.c.hash)
            .where(_EVENTS.c.replica_id == replica_id)
            .order_by(_EVENTS.c.seq.desc())
            .limit(1)
        )
    ).first()
    last_checkpoint = (
        await connection.execute(
            select(func.max(_EVENTS.c.seq)).where(_EVENTS.c.replica_id == replica_id, _EVENTS.c.kind == CHECKPOINT)
        )
    ).scalar()
    return ChainHead.of((head.seq, head.hash) if head else None, last_checkpoint)


class SqlAlchemyEventStore:
    """Appends audit rows through SQLAlchemy Core, one transaction per batch on a kept connection."""

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
            await connection.execute(insert(AuditEventRow), [dict(zip(COLUMNS, row)) for row in rows])

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
