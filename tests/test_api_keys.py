"""API keys against real databases: issuing, listing, revoking, and checking them on the hot path."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta

import anyio
import pytest
from sqlalchemy import event, text

from gateway.errors import AuthenticationFailed, InvalidIdentityName, StorageUnavailable, UnknownApiKey
from gateway.identity import ApiKeyRecord, ApiKeyStore, Principal
from gateway.identity import api_keys as api_keys_module
from gateway.storage import Database

pytestmark = pytest.mark.anyio


class ManualClock:
    """A monotonic clock the test moves by hand, so cache expiry needs no sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@contextmanager
def counted_queries(database: Database) -> Iterator[list[str]]:
    """Every SQL statement the database receives inside the block."""
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append(statement)

    event.listen(database.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", record)


def a_well_formed_key_nobody_issued() -> str:
    return "agw_" + "A" * 43


async def test_a_new_key_authenticates_as_its_agent_and_roles(database):
    store = ApiKeyStore(database)
    before = datetime.now(UTC)

    record, key = await store.create("billing-bot", ["finance.reader", "ops@eu"], description="nightly reconciliation")

    assert re.fullmatch(r"agw_[A-Za-z0-9_-]{43}", key)
    assert re.fullmatch(r"key_[0-9a-f]{8}", record.id)
    assert record.agent == "billing-bot"
    assert record.roles == ("finance.reader", "ops@eu")
    assert record.description == "nightly reconciliation"
    assert record.prefix == key[:12]
    assert before - timedelta(seconds=1) <= record.created_at <= datetime.now(UTC) + timedelta(seconds=1)
    assert record.created_at.tzinfo is not None
    assert record.revoked_at is None
    assert not record.revoked

    principal = await store.authenticate(key)
    assert principal == Principal(
        agent="billing-bot",
        roles=("finance.reader", "ops@eu"),
        user=None,
        auth_method="api_key",
        credential_id=record.id,
    )


async def test_every_key_is_different_and_speaks_only_for_its_own_agent(database):
    store = ApiKeyStore(database)
    first, first_key = await store.create("agent-one")
    second, second_key = await store.create("agent-two", ["admin"])

    assert first_key != second_key
    assert first.id != second.id
    assert (await store.authenticate(first_key)).agent == "agent-one"
    assert (await store.authenticate(second_key)) == Principal("agent-two", ("admin",), credential_id=second.id)


async def test_repeated_roles_are_kept_once_in_the_order_given(database):
    store = ApiKeyStore(database)
    record, key = await store.create("agent", ["writer", "reader", "writer"])

    assert record.roles == ("writer", "reader")
    assert (await store.authenticate(key)).roles == ("writer", "reader")


async def test_the_record_and_its_text_never_carry_the_secret_or_its_hash(database):
    record, key = await ApiKeyStore(database).create("agent")

    assert set(ApiKeyRecord.__dataclass_fields__) == {
        "id",
        "agent",
        "roles",
        "prefix",
        "description",
        "created_at",
        "revoked_at",
    }
    assert key not in repr(record)
    assert hashlib.sha256(key.encode()).hexdigest() not in repr(record)


async def test_only_the_hash_of_a_key_is_stored(database):
    record, key = await ApiKeyStore(database).create("agent", ["role"], description="stored row")

    async with database.engine.connect() as connection:
        rows = (await connection.execute(text("SELECT * FROM api_keys"))).mappings().all()

    assert len(rows) == 1
    row = rows[0]
    assert row["id"] == record.id
    assert row["key_hash"] == hashlib.sha256(key.encode()).hexdigest()
    secret = key.removeprefix("agw_")
    for column, value in row.items():
        assert key not in str(value), column
        assert secret not in str(value), column
    assert row["prefix"] == key[:12]


async def test_list_shows_keys_oldest_first_and_can_leave_out_revoked_ones(database):
    store = ApiKeyStore(database)
    first, _ = await store.create("first")
    second, _ = await store.create("second")
    third, _ = await store.create("third")
    revoked = await store.revoke(second.id)

    everything = await store.list()
    assert [record.id for record in everything] == [first.id, second.id, third.id]
    assert everything[1] == revoked
    assert everything[1].revoked
    assert [record.id for record in await store.list(include_revoked=False)] == [first.id, third.id]


async def test_revoking_twice_keeps_the_first_revocation_time(database):
    store = ApiKeyStore(database)
    record, _ = await store.create("agent")

    first = await store.revoke(record.id)
    second = await store.revoke(record.id)

    assert first.revoked_at is not None
    assert first.revoked_at.tzinfo is not None
    assert second.revoked_at == first.revoked_at
    assert second == first


async def test_revoking_an_unknown_id_is_a_clear_error(database):
    store = ApiKeyStore(database)
    with pytest.raises(UnknownApiKey, match="key_doesnotx") as caught:
        await store.revoke("key_doesnotx")
    assert isinstance(caught.value, LookupError)
    assert await store.list() == []


async def test_a_revoked_key_is_refused_at_once_without_a_cache(database):
    checker = ApiKeyStore(database, cache_seconds=0)
    # Revoked through another store, as the CLI or another replica would do it.
    admin = ApiKeyStore(database)
    record, key = await admin.create("agent")
    assert (await checker.authenticate(key)).agent == "agent"

    await admin.revoke(record.id)

    with pytest.raises(AuthenticationFailed, match=r"^API key revoked$"):
        await checker.authenticate(key)


async def test_a_key_revoked_on_another_replica_is_refused_once_the_cache_expires(database):
    clock = ManualClock()
    replica = ApiKeyStore(database, cache_seconds=5, clock=clock)
    other_replica = ApiKeyStore(database)
    record, key = await other_replica.create("agent")
    assert (await replica.authenticate(key)).agent == "agent"

    await other_replica.revoke(record.id)
    clock.advance(4.9)
    # Within the cache window this replica still trusts its last check: the documented bound.
    assert (await replica.authenticate(key)).agent == "agent"

    clock.advance(0.2)
    with pytest.raises(AuthenticationFailed, match=r"^API key revoked$"):
        await replica.authenticate(key)
    clock.advance(60)
    with pytest.raises(AuthenticationFailed, match=r"^API key revoked$"):
        await replica.authenticate(key)


async def test_a_key_revoked_on_the_same_replica_is_refused_at_once_despite_the_cache(database):
    store = ApiKeyStore(database, cache_seconds=300, clock=ManualClock())
    record, key = await store.create("agent")
    assert (await store.authenticate(key)).agent == "agent"

    await store.revoke(record.id)

    with pytest.raises(AuthenticationFailed, match=r"^API key revoked$"):
        await store.authenticate(key)


@asynccontextmanager
async def following_revocations(store: ApiKeyStore, interval: float) -> AsyncIterator[None]:
    async with anyio.create_task_group() as group:
        await group.start(store.follow_revocations, interval)
        yield
        group.cancel_scope.cancel()


async def test_a_key_revoked_by_another_process_is_refused_within_the_poll_interval(database):
    replica = ApiKeyStore(database, cache_seconds=300)
    elsewhere = ApiKeyStore(database, cache_seconds=0)  # as the CLI opens it
    revoked_record, revoked_key = await elsewhere.create("revoked-agent")
    _, kept_key = await elsewhere.create("kept-agent")
    async with following_revocations(replica, 0.05):
        assert (await replica.authenticate(revoked_key)).agent == "revoked-agent"
        assert (await replica.authenticate(kept_key)).agent == "kept-agent"
        with counted_queries(database) as queries:
            # Cached: the request path asks the database nothing, however the follower is set.
            await replica.authenticate(revoked_key)
            assert not [q for q in queries if "api_keys.key_hash =" in q]

        await elsewhere.revoke(revoked_record.id)
        revoked_at = anyio.current_time()

        async def refused() -> bool:
            try:
                await replica.authenticate(revoked_key)
            except AuthenticationFailed as refusal:
                return str(refusal) == "API key revoked"
            return False

        while not await refused():
            assert anyio.current_time() - revoked_at < 10, "the revocation never reached the other store"
            await anyio.sleep(0.01)
        assert anyio.current_time() - revoked_at < 1.0
        with counted_queries(database) as queries:
            # Only the revoked key left the cache.
            assert (await replica.authenticate(kept_key)).agent == "kept-agent"
            assert not [q for q in queries if "api_keys.key_hash =" in q]


class HeldChecks:
    """Stands in for the store's database: the next key check pauses after its query until released.

    Lets a test put other requests (more checks, a revocation) while one check is in flight,
    without timing anything.
    """

    def __init__(self, database: Database) -> None:
        self._database = database
        self.holding = False
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self._database, name)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[object]:
        held = self.holding
        self.holding = False
        async with self._database.session() as session:
            yield session
        if held:
            self.reached.set()
            await self.release.wait()


async def test_concurrent_requests_with_an_expired_key_share_one_database_check(database):
    clock = ManualClock()
    store = ApiKeyStore(database, cache_seconds=5, clock=clock)
    _, key = await store.create("agent")
    assert (await store.authenticate(key)).agent == "agent"
    clock.advance(5.1)

    with counted_queries(database) as queries:
        principals = await asyncio.gather(*(store.authenticate(key) for _ in range(20)))

    assert [principal.agent for principal in principals] == ["agent"] * 20
    assert len(queries) == 1


async def test_a_caller_giving_up_does_not_cancel_the_check_others_wait_for(database):
    admin = ApiKeyStore(database)
    _, key = await admin.create("agent")
    held = HeldChecks(database)
    store = ApiKeyStore(held, cache_seconds=5)  # type: ignore[arg-type]

    held.holding = True
    impatient = asyncio.create_task(store.authenticate(key))
    await held.reached.wait()
    patient = asyncio.create_task(store.authenticate(key))
    await asyncio.sleep(0)  # `patient` starts and joins the check in flight
    impatient.cancel()
    held.release.set()

    assert (await patient).agent == "agent"
    assert impatient.cancelled()


async def test_a_check_in_flight_during_a_revocation_does_not_cache_the_key_as_valid(database):
    held = HeldChecks(database)
    store = ApiKeyStore(held, cache_seconds=300)  # type: ignore[arg-type]
    record, key = await store.create("agent")

    held.holding = True
    in_flight = asyncio.create_task(store.authenticate(key))
    await held.reached.wait()  # its query has read the key as valid
    await store.revoke(record.id)
    held.release.set()
    # That request was under way before the revocation finished; it may still pass.
    assert (await in_flight).agent == "agent"

    with pytest.raises(AuthenticationFailed, match=r"^API key revoked$"):
        await store.authenticate(key)


async def test_an_unknown_key_is_refused_without_echoing_it(database):
    store = ApiKeyStore(database)
    await store.create("agent")
    presented = a_well_formed_key_nobody_issued()

    with pytest.raises(AuthenticationFailed, match=r"^unknown API key$") as caught:
        await store.authenticate(presented)
    assert presented not in str(caught.value)


@pytest.mark.parametrize(
    "presented",
    [
        "",
        "agw_",
        "hunter2",
        "Bearer agw_" + "A" * 43,
        "agw_" + "A" * 42,
        "agw_" + "A" * 44,
        "agw_" + "A" * 42 + "=",
        "agw_" + "A" * 42 + "é",
        "xyz_" + "A" * 43,
        "agw_" + "A" * 43 + "\n",
    ],
)
async def test_a_malformed_key_is_refused_without_asking_the_database(database, presented):
    store = ApiKeyStore(database, cache_seconds=0)

    with (
        counted_queries(database) as queries,
        pytest.raises(AuthenticationFailed, match=r"^malformed API key$") as caught,
    ):
        await store.authenticate(presented)

    assert queries == []
    if presented:
        assert presented not in str(caught.value)


async def test_a_valid_key_is_checked_in_the_database_once_per_cache_period(database):
    clock = ManualClock()
    store = ApiKeyStore(database, cache_seconds=5, clock=clock)
    _, key = await store.create("agent")

    with counted_queries(database) as queries:
        for _ in range(100):
            assert (await store.authenticate(key)).agent == "agent"
        assert len(queries) == 1

        clock.advance(4.9)
        await store.authenticate(key)
        assert len(queries) == 1

        clock.advance(0.2)
        await store.authenticate(key)
        assert len(queries) == 2


async def test_a_repeated_unknown_key_is_checked_in_the_database_only_briefly(database):
    clock = ManualClock()
    store = ApiKeyStore(database, cache_seconds=5, negative_cache_seconds=1, clock=clock)
    presented = a_well_formed_key_nobody_issued()

    with counted_queries(database) as queries:
        for _ in range(50):
            with pytest.raises(AuthenticationFailed, match=r"^unknown API key$"):
                await store.authenticate(presented)
        assert len(queries) == 1

        clock.advance(1.1)
        with pytest.raises(AuthenticationFailed, match=r"^unknown API key$"):
            await store.authenticate(presented)
        assert len(queries) == 2


async def test_a_zero_cache_checks_the_database_on_every_call(database):
    store = ApiKeyStore(database, cache_seconds=0)
    _, key = await store.create("agent")
    presented = a_well_formed_key_nobody_issued()

    with counted_queries(database) as queries:
        for _ in range(3):
            await store.authenticate(key)
            with pytest.raises(AuthenticationFailed):
                await store.authenticate(presented)

    assert len(queries) == 6


async def test_the_cache_stays_within_its_size_limit(database):
    clock = ManualClock()
    store = ApiKeyStore(database, cache_seconds=60, max_cached=2, clock=clock)
    keys = [(await store.create(f"agent-{index}"))[1] for index in range(3)]

    with counted_queries(database) as queries:
        for key in keys:
            await store.authenticate(key)
        assert len(queries) == 3
        # The newest two are still cached; the oldest was dropped to make room.
        await store.authenticate(keys[2])
        await store.authenticate(keys[1])
        assert len(queries) == 3
        assert (await store.authenticate(keys[0])).agent == "agent-0"
        assert len(queries) == 4


async def test_a_database_outage_is_reported_as_such_not_as_a_bad_key():
    database = Database("postgresql://gateway:s3cret-pw@127.0.0.1:1/gateway")
    try:
        with pytest.raises(StorageUnavailable):
            await ApiKeyStore(database).authenticate(a_well_formed_key_nobody_issued())
    finally:
        await database.close()


@pytest.mark.parametrize(
    ("agent", "roles"),
    [
        ("", ()),
        ("has space", ()),
        ("semi;colon", ()),
        ("x" * 129, ()),
        ("ok-agent", ("",)),
        ("ok-agent", ("role/with/slash",)),
        ("ok-agent", ("r" * 129,)),
        ("ok-agent", "admin"),
    ],
)
async def test_invalid_agent_or_role_names_are_refused_and_nothing_is_stored(database, agent, roles):
    store = ApiKeyStore(database)

    with pytest.raises(InvalidIdentityName) as caught:
        await store.create(agent, roles)

    assert isinstance(caught.value, ValueError)
    assert await store.list() == []


async def test_names_at_the_limits_are_accepted(database):
    store = ApiKeyStore(database)
    record, key = await store.create("a" * 128, ["Role_1.x@corp-eu", "r" * 128])

    assert (await store.authenticate(key)).agent == "a" * 128
    assert record.roles == ("Role_1.x@corp-eu", "r" * 128)


async def test_a_clash_of_short_public_ids_does_not_fail_key_creation(database, monkeypatch):
    store = ApiKeyStore(database)
    existing, _ = await store.create("first")
    offered = iter([existing.id, existing.id, "key_0000beef"])
    monkeypatch.setattr(api_keys_module, "_new_key_id", lambda: next(offered))

    record, key = await store.create("second")

    assert record.id == "key_0000beef"
    assert (await store.authenticate(key)) == Principal("second", (), credential_id="key_0000beef")
    assert [record.id for record in await store.list()] == [existing.id, "key_0000beef"]
