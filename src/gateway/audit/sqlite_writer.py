"""The SQLite audit store: one writer thread with one plain `sqlite3` connection.

Through SQLAlchemy and aiosqlite a commit costs several hops between the event loop and
aiosqlite's thread (begin, insert, commit) plus statement compilation, together several times
the fsync. Here a batch is one hop: the event loop puts it on a queue, the thread writes
everything queued in one transaction (`BEGIN IMMEDIATE`, one prepared `executemany`, `COMMIT`)
and wakes the waiting coroutines with `call_soon_threadsafe`. The connection keeps the engine's
settings (WAL, `synchronous = FULL`: each commit is fsynced before anyone is told it happened).

The thread opens the file without creating it and checks before every transaction that the path
still names the file it opened: a database deleted or replaced under a running gateway would
otherwise take writes into an unlinked file that nobody can read back. Either case, and every
SQLite error, fails the batch (the recorder refuses its calls) and closes the connection; the
next batch opens the file afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import anyio.to_thread
from sqlalchemy.engine import URL

from gateway.audit.entry import CHECKPOINT
from gateway.audit.event_store import COLUMNS, ChainHead, Row
from gateway.errors import DatabaseFileChanged

logger = logging.getLogger("gateway.audit")

_INSERT = f"INSERT INTO audit_events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"
_TIME = COLUMNS.index("time")
_HEAD = "SELECT seq, hash FROM audit_events WHERE replica_id = ? ORDER BY seq DESC LIMIT 1"
_LAST_CHECKPOINT = "SELECT max(seq) FROM audit_events WHERE replica_id = ? AND kind = ?"


def sqlite_file(url: URL) -> Path | None:
    """The file behind a SQLite URL, or None when the writer thread cannot serve it.

    In-memory databases are private to one connection, and URI filenames or query options mean
    settings the plain path would lose; those keep the generic store.
    """
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:") or url.query:
        return None
    return Path(database).expanduser().absolute()


# asyncio: the thread wakes a waiter by `call_soon_threadsafe`, not blocking on the loop as anyio.from_thread does.
@dataclass(eq=False, slots=True)
class _Request:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    abandoned: bool = field(default=False)  # set by the event loop: the waiter gave up, skip it


@dataclass(eq=False, slots=True)
class _Append(_Request):
    rows: list[Row] = field(default_factory=list)


@dataclass(eq=False, slots=True)
class _Read(_Request):
    read: Callable[[sqlite3.Connection], Any] | None = None


@dataclass(eq=False, slots=True)
class _Stop(_Request):
    pass


class SqliteEventStore:
    """Appends audit rows to one SQLite file from a dedicated thread, a transaction per queue drain."""

    def __init__(self, path: Path, *, busy_timeout: float) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        self._requests: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        # Owned by the writer thread once it runs.
        self._connection: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None

    @property
    def connected(self) -> bool:
        return False  # SQLite has no connection to lose between batches; a retry would not help

    async def load_head(self, replica_id: str) -> ChainHead:
        def read(connection: sqlite3.Connection) -> ChainHead:
            head = connection.execute(_HEAD, (replica_id,)).fetchone()
            (last_checkpoint,) = connection.execute(_LAST_CHECKPOINT, (replica_id, CHECKPOINT)).fetchone()
            return ChainHead.of((head[0], head[1]) if head else None, last_checkpoint)

        head: ChainHead = await self._submit(lambda loop, future: _Read(loop, future, read=read))
        return head

    async def append(self, rows: Sequence[Row]) -> None:
        await self._submit(lambda loop, future: _Append(loop, future, rows=list(rows)))

    def connection_lost(self, error: BaseException) -> bool:
        return False

    async def reset(self) -> None:
        """Nothing to do: the thread closed its connection when the failure happened."""

    async def close(self) -> None:
        if self._thread is None:
            return
        thread, self._thread = self._thread, None
        loop = asyncio.get_running_loop()
        stopped: asyncio.Future[None] = loop.create_future()
        self._requests.put(_Stop(loop, stopped))
        await stopped
        await anyio.to_thread.run_sync(thread.join)

    # -- event loop side --------------------------------------------------------------------

    async def _submit(self, make: Callable[[asyncio.AbstractEventLoop, asyncio.Future[Any]], _Request]) -> Any:
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="audit-sqlite-writer", daemon=True)
            self._thread.start()
        loop = asyncio.get_running_loop()
        request = make(loop, loop.create_future())
        self._requests.put(request)
        try:
            return await request.future
        except anyio.get_cancelled_exc_class():
            # Timed out or cancelled: if the thread has not reached it yet it is skipped, and if
            # it has not committed yet it is rolled back. Only a COMMIT already under way can
            # still land; the next `load_head` (queued behind it) sees that, and the recorder
            # records those calls as refused.
            request.abandoned = True
            raise

    # -- writer thread ----------------------------------------------------------------------

    def _wait_for_work(self) -> _Request:
        """Block until something is queued (a frame of its own, so profiles can tell idle from busy)."""
        return self._requests.get()

    def _serve(self) -> None:
        while True:
            drained = [self._wait_for_work()]
            with contextlib.suppress(queue.Empty):
                while not isinstance(drained[-1], _Stop):
                    drained.append(self._requests.get_nowait())
            appends: list[_Append] = []
            for request in drained:
                if request.abandoned:
                    continue
                if isinstance(request, _Append):
                    appends.append(request)
                    continue
                self._write(appends)
                appends = []
                if isinstance(request, _Read):
                    self._read(request)
                elif isinstance(request, _Stop):
                    self._disconnect()
                    _settle(request, None, None)
                    return
            self._write(appends)

    def _write(self, appends: list[_Append]) -> None:
        """Everything queued in one transaction: one commit (and fsync) for all its waiters."""
        if not appends:
            return
        try:
            connection = self._connected()
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.executemany(_INSERT, (_sqlite_row(row) for append in appends for row in append.rows))
                if any(append.abandoned for append in appends):
                    # The waiter gave up (write timeout) while this waited for the lock: the
                    # recorder refused those calls, so their events must not appear after all.
                    raise TimeoutError("the audit write was abandoned before it could commit")
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        connection.execute("ROLLBACK")
                raise
        except BaseException as error:
            self._disconnect()
            for append in appends:
                _settle(append, None, error)
            if not isinstance(error, Exception):
                raise
            return
        for append in appends:
            _settle(append, None, None)

    def _read(self, request: _Read) -> None:
        assert request.read is not None
        try:
            connection = self._connected()
            connection.execute("BEGIN")
            try:
                result = request.read(connection)
            finally:
                connection.execute("COMMIT")
        except Exception as error:
            self._disconnect()
            _settle(request, None, error)
            return
        _settle(request, result, None)

    def _connected(self) -> sqlite3.Connection:
        if self._connection is not None:
            self._check_identity()
            return self._connection
        # mode=rw: a missing file is an error, not a new empty database without the audit table.
        connection = sqlite3.connect(
            f"file:{quote(str(self._path))}?mode=rw",
            uri=True,
            timeout=self._busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            connection.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = FULL")
            stat = os.stat(self._path)  # the file just opened: identity to compare before each write
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        self._identity = (stat.st_dev, stat.st_ino)
        return connection

    def _check_identity(self) -> None:
        try:
            stat = os.stat(self._path)
        except FileNotFoundError:
            raise DatabaseFileChanged(f"the audit database {self._path} was deleted or moved") from None
        if (stat.st_dev, stat.st_ino) != self._identity:
            raise DatabaseFileChanged(f"the audit database {self._path} was replaced by another file")

    def _disconnect(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            with contextlib.suppress(sqlite3.Error):
                connection.close()


def _sqlite_row(row: Row) -> Row:
    values = list(row)
    values[_TIME] = _utc_text(values[_TIME])
    return tuple(values)


def _utc_text(moment: datetime) -> str:
    """A timestamp as SQLAlchemy's SQLite dialect stores `UtcDateTime`: UTC, naive, microseconds.

    Search compares these as text, so the writer must produce exactly the same form.
    """
    t = moment.astimezone(UTC)
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d} {t.hour:02d}:{t.minute:02d}:{t.second:02d}.{t.microsecond:06d}"


def _settle(request: _Request, result: Any, error: BaseException | None) -> None:
    """Hand the outcome to the waiting coroutine, on its own event loop."""
    try:
        request.loop.call_soon_threadsafe(_resolve, request.future, result, error)
    except RuntimeError:
        pass  # the loop is closed: nobody is waiting any more


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
