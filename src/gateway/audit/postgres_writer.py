"""The PostgreSQL audit store: the pooled asyncpg connection, driven directly.

SQLAlchemy's asyncpg adapter spends a round trip on `BEGIN`, one on the insert and one on
`COMMIT`, with statement compilation and a greenlet switch around each. asyncpg's `executemany`
is atomic by itself (since asyncpg 0.22): the rows go as one pipelined extended-protocol
exchange that PostgreSQL runs as one implicit transaction and commits at its Sync, so a batch is
one round trip and one WAL flush. The connection still comes from, and goes back to, the
engine's pool, so connect settings (TLS, timeouts) stay in one place.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import asyncpg
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.audit.entry import CHECKPOINT
from gateway.audit.event_store import COLUMNS, ChainHead, Row
from gateway.errors import StorageUnavailable
from gateway.storage.database import Database

_INSERT = f"INSERT INTO audit_events ({', '.join(COLUMNS)}) VALUES ({', '.join(f'${n}' for n in range(1, 16))})"
_HEAD = (
    "SELECT seq, hash, (SELECT max(seq) FROM audit_events WHERE replica_id = $1 AND kind = $2) "
    "FROM audit_events WHERE replica_id = $1 ORDER BY seq DESC LIMIT 1"
)

#: What a connection that died under the store raises (server restart, idle timeout, proxy).
#: Client-side errors count too: a connection terminated while a statement is being prepared
#: can surface as an `InternalClientError` about the protocol state before it reads as closed.
_CONNECTION_LOST = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    ConnectionError,
)


class PostgresEventStore:
    """Appends audit rows with one atomic `executemany` on a connection kept from the pool."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._connection: AsyncConnection | None = None
        self._driver: asyncpg.Connection | None = None

    @property
    def connected(self) -> bool:
        return self._driver is not None

    async def load_head(self, replica_id: str) -> ChainHead:
        driver = await self._kept()
        row = await driver.fetchrow(_HEAD, replica_id, CHECKPOINT)
        return ChainHead.of((row[0], row[1]) if row else None, row[2] if row else None)

    async def append(self, rows: Sequence[Row]) -> None:
        driver = await self._kept()
        await driver.executemany(_INSERT, rows)

    def connection_lost(self, error: BaseException) -> bool:
        return isinstance(error, _CONNECTION_LOST) or (self._driver is not None and self._driver.is_closed())

    async def reset(self) -> None:
        self._driver = None
        if self._connection is not None:
            connection, self._connection = self._connection, None
            with contextlib.suppress(SQLAlchemyError, StorageUnavailable, OSError, TimeoutError):
                await connection.invalidate()  # it is being dropped because it failed

    async def close(self) -> None:
        self._driver = None
        if self._connection is not None:
            connection, self._connection = self._connection, None
            with contextlib.suppress(SQLAlchemyError, StorageUnavailable, OSError, TimeoutError):
                await connection.close()  # a broken connection has nothing left to close

    async def _kept(self) -> asyncpg.Connection:
        if self._driver is None:
            connection = await self._db.engine.connect()
            try:
                raw = await connection.get_raw_connection()
            except BaseException:
                await connection.close()
                raise
            self._connection, self._driver = connection, raw.driver_connection
        assert self._driver is not None
        return self._driver
