"""The gateway's one database: a SQLAlchemy async engine for SQLite or PostgreSQL.

One machine runs on a SQLite file; several replicas share PostgreSQL. Both go through the async
drivers (aiosqlite, asyncpg) so no request ever blocks the event loop on storage. Failures to reach
the database become `StorageUnavailable` here, once, so no caller has to know driver exceptions.
"""

from __future__ import annotations

import functools
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from sqlalchemy import Connection, event, exc, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

try:
    from sqlalchemy.util import await_ as _await  # SQLAlchemy 2.1 and later
except ImportError:  # pragma: no cover - SQLAlchemy 2.0
    from sqlalchemy.util import await_only as _await

from gateway.errors import ConfigError, StorageUnavailable

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///gateway.db"

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

#: Key of the PostgreSQL advisory lock held while migrating, so replicas starting together
#: upgrade the schema one after another instead of racing on the same DDL ("gwschema" in ASCII).
_MIGRATION_LOCK_KEY = 0x67_77_73_63_68_65_6D_61

_SQLITE_DRIVERS = {"sqlite": "sqlite+aiosqlite", "sqlite+aiosqlite": "sqlite+aiosqlite"}
_POSTGRES_DRIVERS = {
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}
_URL_HELP = "use sqlite:///path/to/gateway.db or postgresql://user@host/database"


def async_database_url(url: str) -> URL:
    """Parse a database URL and point it at the async driver the gateway uses.

    Operators write the URLs they know (`sqlite:///…`, `postgresql://…`, as in libpq and most
    tools); the gateway needs aiosqlite and asyncpg, so the driver is chosen here rather than
    asked of every config file. asyncpg calls libpq's `sslmode` `ssl`, so that is renamed too.
    """
    try:
        parsed = make_url(url)
    except exc.ArgumentError:
        # The URL may hold a password; say what is expected without echoing it.
        raise ConfigError(f"the database URL is not a valid URL; {_URL_HELP}") from None
    drivername = parsed.drivername.lower()
    if drivername in _SQLITE_DRIVERS:
        return parsed.set(drivername=_SQLITE_DRIVERS[drivername])
    if drivername in _POSTGRES_DRIVERS:
        query = dict(parsed.query)
        if "sslmode" in query and "ssl" not in query:
            query["ssl"] = query.pop("sslmode")
        return parsed.set(drivername=_POSTGRES_DRIVERS[drivername], query=query)
    raise ConfigError(
        f"unsupported database URL scheme {parsed.drivername!r}: the gateway stores its data in SQLite (aiosqlite) "
        f"or PostgreSQL (asyncpg); {_URL_HELP}"
    )


class Database:
    """The engine, its sessions and its schema, for one database URL.

    SQLite connections get WAL journaling (readers never wait for the writer) and a busy timeout
    (a writer waits for another instead of failing at once); PostgreSQL connections are checked
    before use so a database restart costs one reconnect rather than one failed request.
    """

    def __init__(self, url: str, *, connect_timeout: float = 5.0, busy_timeout: float = 5.0) -> None:
        self._url = async_database_url(url)
        self._connect_timeout = connect_timeout
        self._display_url = self._url.render_as_string(hide_password=True)
        self._is_sqlite = self._url.get_backend_name() == "sqlite"
        if self._is_sqlite:
            self._engine = create_async_engine(self._url)
            _configure_sqlite(self._engine, busy_timeout=busy_timeout)
        else:
            self._engine = create_async_engine(self._url, pool_pre_ping=True, connect_args={"timeout": connect_timeout})
        self._sessions = async_sessionmaker(self._engine, expire_on_commit=False)

    @property
    def engine(self) -> AsyncEngine:
        """The SQLAlchemy engine, for code that needs connections rather than ORM sessions."""
        return self._engine

    @property
    def url(self) -> str:
        """The database URL with its password masked, safe for logs and error messages."""
        return self._display_url

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`: the few places that must differ (locks, NOTIFY) ask this."""
        return self._engine.dialect.name

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """An ORM session, closed on exit; connection failures inside it become `StorageUnavailable`.

        The caller decides the transaction (`async with db.session() as s, s.begin(): ...`).
        """
        with self._unavailability_translated():
            async with self._sessions() as session:
                yield session

    async def ping(self) -> None:
        """Run one trivial query, so readiness reflects whether the database answers right now."""
        with self._unavailability_translated(), anyio.fail_after(self._connect_timeout):
            async with self._engine.connect() as connection:
                await connection.execute(text("SELECT 1"))

    async def migrate(self) -> SchemaChange:
        """Upgrade the schema to the newest revision; a no-op when it is already there.

        Safe at every start and from several processes at once: on PostgreSQL the upgrade runs in
        one transaction under an advisory lock, on SQLite under `BEGIN IMMEDIATE` (the write lock),
        so a second migrator waits, then finds the schema current. Both databases have
        transactional DDL, so a failed upgrade leaves the previous schema intact. The revisions
        before and after are read under that lock, so the answer says what this call did.
        """
        with self._unavailability_translated():
            async with self._engine.connect() as connection:
                current = await connection.run_sync(_current_revisions)
            head = head_revision()
            if head is not None and current == [head]:
                return SchemaChange(head, head)  # the usual start: no need to load Alembic at all
            async with self._engine.connect() as connection:
                if self._is_sqlite:
                    return await self._migrate_sqlite(connection)
                async with connection.begin():
                    await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
                    return await connection.run_sync(_upgrade_to_head)

    async def close(self) -> None:
        """Close every pooled connection; the object must not be used afterwards."""
        await self._engine.dispose()

    @staticmethod
    async def _migrate_sqlite(connection: AsyncConnection) -> SchemaChange:
        # The driver's own transaction handling starts transactions lazily and never for DDL;
        # taking over (autocommit at the driver, explicit BEGIN IMMEDIATE) makes the whole
        # upgrade one locked transaction.
        connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
        await connection.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            change = await connection.run_sync(_upgrade_to_head)
        except BaseException:
            await connection.exec_driver_sql("ROLLBACK")
            raise
        await connection.exec_driver_sql("COMMIT")
        return change

    @contextmanager
    def _unavailability_translated(self) -> Iterator[None]:
        try:
            yield
        except TimeoutError:
            raise StorageUnavailable(
                f"database {self._display_url} did not answer within {self._connect_timeout:g} s"
            ) from None
        except OSError as error:
            raise StorageUnavailable(self._unavailable_message(error)) from error
        except exc.DBAPIError as error:
            if not _means_unavailable(error):
                raise
            raise StorageUnavailable(self._unavailable_message(error.orig)) from error
        except exc.TimeoutError as error:
            raise StorageUnavailable(
                f"database {self._display_url} has no free connection (pool exhausted): {error}"
            ) from error

    def _unavailable_message(self, cause: BaseException | None) -> str:
        detail = str(cause) if cause is not None else "unknown error"
        password = self._url.password
        if password:
            detail = detail.replace(str(password), "***")
        return f"database {self._display_url} is unavailable: {detail}"


@dataclass(frozen=True, slots=True)
class SchemaChange:
    """What a migration found and left: the schema revision before (None: there was no schema) and after."""

    before: str | None
    after: str | None

    def describe(self, where: str) -> str:
        """One line for the operator who asked for the migration, naming the database `where`."""
        if self.before is None:
            return f"created the schema at revision {self.after} in {where}"
        if self.before == self.after:
            return f"the schema in {where} is up to date at revision {self.after}"
        return f"upgraded the schema in {where} from revision {self.before} to {self.after}"


async def migrate_database(url: str) -> SchemaChange:
    """Bring the schema at `url` to the newest revision and let go of every connection.

    For one-shot callers (the `migrate` command, a supervisor before it starts its workers).
    """
    database = Database(url)
    try:
        return await database.migrate()
    finally:
        await database.close()


def _means_unavailable(error: exc.DBAPIError) -> bool:
    """Whether a driver error says "cannot reach or use the database" rather than "bad statement".

    Connection failures come with no statement (they happen while connecting) or invalidate the
    connection; operational errors are the database refusing work (locked, disk full, shutting
    down). Integrity and programming errors are the caller's bugs and pass through unchanged.
    """
    return (
        error.statement is None
        or error.connection_invalidated
        or isinstance(error, exc.OperationalError | exc.InterfaceError)
    )


def _configure_sqlite(engine: AsyncEngine, *, busy_timeout: float) -> None:
    database = engine.url.database or ""
    is_file = database not in ("", ":memory:") and not database.startswith("file:")

    @event.listens_for(engine.sync_engine, "do_connect")
    def _create_parent_directory(*_: object) -> None:
        if is_file:
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)

    @event.listens_for(engine.sync_engine, "connect")
    def _set_pragmas(dbapi_connection: Any, _: object) -> None:
        cursor = dbapi_connection.cursor()
        # The busy timeout goes first: switching to WAL needs a lock another process may hold.
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        if is_file:
            _switch_to_wal(cursor, busy_timeout)
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()


def _switch_to_wal(cursor: Any, busy_timeout: float) -> None:
    """`PRAGMA journal_mode = WAL`, retried while another connection holds the lock it needs.

    On a new file, SQLite answers the switch with `database is locked` at once, without waiting
    for the busy timeout, when another connection (a second process starting on the same file)
    holds a lock: a deadlock it refuses to wait out. Retrying until the busy timeout is what the
    timeout promises. Runs inside SQLAlchemy's connect, where waiting must go through the loop.
    """
    deadline = time.monotonic() + busy_timeout
    delay = 0.002
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() + delay > deadline:
                raise
        _await(anyio.sleep(delay))
        delay = min(delay * 2, 0.1)


_REVISION_LINE = re.compile(r"""^(down_revision|revision)\b[^=\n]*=\s*(?:["']([^"']+)["']|None)""", re.MULTILINE)


@functools.cache
def head_revision() -> str | None:
    """The newest schema revision, read from the migration scripts without importing Alembic.

    Alembic (with Mako and Pygments behind it) adds about 11 MiB to a process; a gateway whose
    schema is already current never needs it. None when the scripts do not show exactly one
    head, so that Alembic itself decides.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in (MIGRATIONS_DIR / "versions").glob("*.py"):
        for name, value in _REVISION_LINE.findall(script.read_text(encoding="utf-8")):
            if value:
                (revisions if name == "revision" else parents).add(value)
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _current_revisions(connection: Connection) -> list[str]:
    if not inspect(connection).has_table("alembic_version"):
        return []
    return list(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())


def _upgrade_to_head(connection: Connection) -> SchemaChange:
    """Run Alembic's `upgrade head` on an open connection; configured in code, no alembic.ini."""
    from alembic import command
    from alembic.config import Config

    before = _current_revisions(connection)
    config = Config()
    # Config values go through configparser interpolation, where "%" is special.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
    after = _current_revisions(connection)
    return SchemaChange(",".join(before) or None, ",".join(after) or None)
