"""The storage layer against real databases: migrations, readiness, failures, SQLite settings."""

from __future__ import annotations

import sqlite3
import sys
import threading
import time
from datetime import UTC, datetime, timedelta, timezone

import anyio
import pytest
from sqlalchemy import event, inspect, select, text

from gateway.errors import ConfigError, StorageUnavailable
from gateway.storage import DEFAULT_DATABASE_URL, Database
from gateway.storage import database as database_module
from gateway.storage.database import MIGRATIONS_DIR, head_revision, migrate_database
from gateway.storage.tables import ApiKeyRow

pytestmark = pytest.mark.anyio


def _schema(connection) -> dict[str, object]:
    inspector = inspect(connection)
    return {
        "tables": sorted(inspector.get_table_names()),
        "api_key_indexes": sorted(
            (index["name"], tuple(index["column_names"]), bool(index["unique"]))
            for index in inspector.get_indexes("api_keys")
        ),
        "ended_session_columns": sorted(column["name"] for column in inspector.get_columns("ended_sessions")),
        "ended_session_indexes": sorted(
            (index["name"], tuple(index["column_names"])) for index in inspector.get_indexes("ended_sessions")
        ),
    }


async def _schema_and_version(database: Database) -> tuple[dict[str, object], list[str]]:
    async with database.engine.connect() as connection:
        schema = await connection.run_sync(_schema)
        versions = (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalars().all()
    return schema, list(versions)


HEAD_REVISION = "0019"
EXPECTED_SCHEMA = {
    "tables": [
        "agent_suspensions",
        "alembic_version",
        "api_keys",
        "approval_votes",
        "approvals",
        "audit_events",
        "audit_replica_leases",
        "catalog_listings",
        "console_sessions",
        "ended_sessions",
        "idempotency_records",
        "leases",
        "rate_counts",
        "record_locks",
        "tool_pins",
        "tool_reviews",
        "user_keys",
        "users",
        "workflow_notes",
        "workflow_results",
    ],
    "api_key_indexes": [
        ("ix_api_keys_agent", ("agent",), False),
        ("ix_api_keys_key_hash", ("key_hash",), True),
    ],
    "ended_session_columns": ["ended_at", "session_id", "until"],
    "ended_session_indexes": [
        ("ix_ended_sessions_ended_at", ("ended_at",)),
        ("ix_ended_sessions_until", ("until",)),
    ],
}


async def test_migrate_creates_the_schema_and_running_it_again_changes_nothing(database_url):
    database = Database(database_url)
    try:
        await database.migrate()
        assert await _schema_and_version(database) == (EXPECTED_SCHEMA, [HEAD_REVISION])

        async with database.session() as session, session.begin():
            session.add(
                ApiKeyRow(
                    id="key_00000001",
                    agent="billing-bot",
                    roles=["reader"],
                    key_hash="0" * 64,
                    prefix="agw_00000000",
                    description=None,
                    created_at=datetime.now(UTC),
                    revoked_at=None,
                )
            )
        await database.migrate()

        assert await _schema_and_version(database) == (EXPECTED_SCHEMA, [HEAD_REVISION])
        async with database.session() as session:
            assert (await session.scalars(select(ApiKeyRow.agent))).all() == ["billing-bot"]
    finally:
        await database.close()


def test_the_head_revision_read_from_the_scripts_is_alembics_own() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(config).get_heads() == [head_revision()] == [HEAD_REVISION]


async def test_a_process_starting_on_a_current_schema_never_loads_alembic(database_url):
    """Alembic costs about 11 MiB of memory; a gateway whose schema is current has no use for it."""
    await migrate_database(database_url)
    probe = (
        "import asyncio, sys\n"
        "from gateway.storage import Database\n"
        f"database = Database({database_url!r})\n"
        "asyncio.run(database.migrate())\n"
        "print('alembic' in sys.modules)\n"
    )
    with anyio.fail_after(60):
        result = await anyio.run_process([sys.executable, "-c", probe])
    assert result.stdout.decode().strip() == "False"


async def test_audit_search_indexes_hold_only_events_that_have_the_searched_column(database):
    """Outcomes have no agent, tool, user or workflow: their entries would only cost each commit pages."""
    async with database.engine.connect() as connection:
        if database.dialect == "sqlite":
            definitions = dict(
                (await connection.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'index'"))).all()
            )
            plan = (
                await connection.execute(
                    text("EXPLAIN QUERY PLAN SELECT seq FROM audit_events WHERE tool = 'crm' AND time >= '2026'")
                )
            ).all()
            assert "ix_audit_events_tool_time" in plan[0][3]  # a search by value still uses the index
        else:
            definitions = dict((await connection.execute(text("SELECT indexname, indexdef FROM pg_indexes"))).all())
    for column in ("agent", "user_id", "tool", "workflow_id"):
        assert f"{column} IS NOT NULL" in definitions[f"ix_audit_events_{column}_time"]
    assert "WHERE" not in definitions["ix_audit_events_call_id"].upper()


async def test_replicas_migrating_at_the_same_moment_all_succeed_with_one_schema(database_url):
    replicas = [Database(database_url) for _ in range(4)]
    try:
        async with anyio.create_task_group() as group:
            for replica in replicas:
                group.start_soon(replica.migrate)

        assert await _schema_and_version(replicas[0]) == (EXPECTED_SCHEMA, [HEAD_REVISION])
    finally:
        for replica in replicas:
            await replica.close()


async def test_a_new_sqlite_file_another_process_is_writing_is_waited_for_not_refused(tmp_path, monkeypatch):
    """SQLite refuses a new file's switch to WAL at once while another connection holds a lock."""
    path = tmp_path / "gateway.db"
    other_process = sqlite3.connect(path, isolation_level=None)
    other_process.execute("BEGIN IMMEDIATE")
    other_process.execute("CREATE TABLE other_tool (x)")
    waiting = anyio.Event()
    real_await = database_module._await

    def noticing_the_wait(awaitable):
        waiting.set()
        return real_await(awaitable)

    monkeypatch.setattr(database_module, "_await", noticing_the_wait)
    database = Database(f"sqlite:///{path}")
    try:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                group.start_soon(database.migrate)
                await waiting.wait()  # the gateway found the file locked and is waiting, not failing
                other_process.execute("COMMIT")

        schema, versions = await _schema_and_version(database)
        assert versions == [HEAD_REVISION]
        assert set(EXPECTED_SCHEMA["tables"]) <= set(schema["tables"])
    finally:
        other_process.close()
        await database.close()


async def test_tasks_sharing_one_database_object_can_migrate_together(database_url):
    database = Database(database_url)
    try:
        async with anyio.create_task_group() as group:
            for _ in range(3):
                group.start_soon(database.migrate)

        assert await _schema_and_version(database) == (EXPECTED_SCHEMA, [HEAD_REVISION])
    finally:
        await database.close()


async def test_ping_succeeds_on_a_reachable_database_by_asking_it(database):
    """Readiness must reflect the database answering now, so ping has to reach it, not a cache."""
    statements: list[str] = []

    def seen(_connection: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    event.listen(database.engine.sync_engine, "before_cursor_execute", seen)
    try:
        assert await database.ping() is None
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", seen)
    assert statements == ["SELECT 1"]


async def test_ping_on_unreachable_postgres_fails_fast_naming_the_url_without_its_password():
    database = Database("postgresql://gateway:s3cret-pw@127.0.0.1:1/gateway")
    started = time.monotonic()
    try:
        with pytest.raises(StorageUnavailable) as caught:
            await database.ping()
    finally:
        await database.close()

    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert "127.0.0.1:1/gateway" in message
    assert "s3cret-pw" not in message
    assert "***" in message


async def test_migrate_and_sessions_on_an_unreachable_database_raise_storage_unavailable():
    database = Database("postgresql+asyncpg://gateway:s3cret-pw@127.0.0.1:1/gateway")
    try:
        with pytest.raises(StorageUnavailable, match="unavailable") as from_migrate:
            await database.migrate()
        with pytest.raises(StorageUnavailable, match="unavailable") as from_session:
            async with database.session() as session:
                await session.execute(text("SELECT 1"))
    finally:
        await database.close()
    assert "s3cret-pw" not in str(from_migrate.value)
    assert "s3cret-pw" not in str(from_session.value)


async def test_missing_postgres_database_is_reported_as_unavailable(postgres_url):
    database = Database(postgres_url + "_missing")
    try:
        with pytest.raises(StorageUnavailable, match="does not exist"):
            await database.ping()
    finally:
        await database.close()


async def test_sqlite_file_that_cannot_be_created_is_reported_as_unavailable(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where a directory should be")
    database = Database(f"sqlite:///{blocker / 'state' / 'gateway.db'}")
    try:
        with pytest.raises(StorageUnavailable) as caught:
            await database.ping()
    finally:
        await database.close()
    assert str(blocker) in str(caught.value)


async def test_sqlite_creates_missing_directories_and_uses_wal_with_a_busy_timeout(tmp_path):
    path = tmp_path / "state" / "nested" / "gateway.db"
    database = Database(f"sqlite:///{path}", busy_timeout=7.5)
    try:
        await database.migrate()
        async with database.engine.connect() as connection:
            journal_mode = (await connection.exec_driver_sql("PRAGMA journal_mode")).scalar()
            busy_timeout = (await connection.exec_driver_sql("PRAGMA busy_timeout")).scalar()
    finally:
        await database.close()

    assert path.is_file()
    assert journal_mode == "wal"
    assert busy_timeout == 7500


async def test_sqlite_writer_waits_for_another_writer_instead_of_failing(tmp_path):
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    first, second = Database(url), Database(url)
    try:
        await first.migrate()
        order: list[str] = []
        async with first.engine.connect() as holder:
            holder = await holder.execution_options(isolation_level="AUTOCOMMIT")
            await holder.exec_driver_sql("BEGIN IMMEDIATE")

            insert_started = threading.Event()

            failures: list[Exception] = []

            async def write_from_second() -> None:
                try:
                    await insert_into_second()
                except Exception as exc:  # reported below, after the first writer has let go
                    failures.append(exc)
                else:
                    order.append("second wrote")
                finally:
                    insert_started.set()  # a failure must not leave the first writer waiting

            async def insert_into_second() -> None:
                async with second.engine.begin() as connection:
                    raw = await connection.get_raw_connection()
                    # SQLite calls this as the INSERT starts executing, i.e. as it reaches for the lock.
                    await raw.driver_connection.set_trace_callback(
                        lambda statement: insert_started.set() if statement.startswith("INSERT") else None
                    )
                    await connection.exec_driver_sql(
                        "INSERT INTO api_keys (id, agent, roles, key_hash, prefix, created_at) "
                        "VALUES ('key_2', 'a', '[]', 'h2', 'p', '2026-01-01 00:00:00')"
                    )
                    await raw.driver_connection.set_trace_callback(None)

            async with anyio.create_task_group() as group:
                group.start_soon(write_from_second)
                assert await anyio.to_thread.run_sync(insert_started.wait, 30), "the second writer never started"
                order.append("first committed")
                await holder.exec_driver_sql("COMMIT")
        assert not failures, f"the second writer failed instead of waiting: {failures[0]}"
        assert order == ["first committed", "second wrote"]
    finally:
        await first.close()
        await second.close()


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("sqlite:///var/gateway.db", "sqlite+aiosqlite"),
        ("sqlite+aiosqlite:///var/gateway.db", "sqlite+aiosqlite"),
        ("postgresql://gw@db.internal/gateway", "postgresql+asyncpg"),
        ("postgresql+asyncpg://gw@db.internal/gateway", "postgresql+asyncpg"),
        ("postgres://gw@db.internal/gateway", "postgresql+asyncpg"),
    ],
)
async def test_database_urls_are_pointed_at_the_async_drivers(given, driver):
    database = Database(given)
    try:
        assert database.engine.url.drivername == driver
    finally:
        await database.close()


async def test_libpq_sslmode_is_passed_to_asyncpg_as_ssl():
    database = Database("postgresql://gw@db.internal/gateway?sslmode=require")
    try:
        assert dict(database.engine.url.query) == {"ssl": "require"}
    finally:
        await database.close()


def test_the_default_url_is_a_local_sqlite_file():
    assert DEFAULT_DATABASE_URL == "sqlite+aiosqlite:///gateway.db"


@pytest.mark.parametrize(
    "given",
    ["mysql://gw:s3cret-pw@db/gateway", "postgresql+psycopg2://gw:s3cret-pw@db/gateway", "not a url at all"],
)
def test_unsupported_database_urls_are_a_config_error_that_hides_the_password(given):
    with pytest.raises(ConfigError) as caught:
        Database(given)
    assert "postgresql://" in str(caught.value)
    assert "s3cret-pw" not in str(caught.value)


async def test_timestamps_come_back_timezone_aware_in_utc(database):
    written = datetime(2026, 3, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    async with database.session() as session, session.begin():
        session.add(
            ApiKeyRow(
                id="key_00000002",
                agent="a",
                roles=[],
                key_hash="1" * 64,
                prefix="agw_11111111",
                description=None,
                created_at=written,
                revoked_at=None,
            )
        )
    async with database.session() as session:
        read = await session.scalar(select(ApiKeyRow.created_at))

    assert read == written
    assert read.tzinfo is not None
    assert read.utcoffset() == timedelta(0)
