"""Users and their keys on real SQLite and PostgreSQL: people apart from agents, keys that stop working."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from gateway.errors import (
    AuthenticationFailed,
    InvalidIdentityName,
    UnknownUser,
    UnknownUserKey,
    UserDisabled,
    UserExists,
)
from gateway.identity.api_keys import ApiKeyStore
from gateway.identity.users import USER_KEY_PREFIX, User, UserStore
from gateway.storage import Database

pytestmark = pytest.mark.anyio


async def test_a_user_is_created_with_a_key_that_authenticates_them(database: Database) -> None:
    users = UserStore(database)
    user, key = await users.create("carol", ["treasury", "audit", "treasury"])
    assert user == User(user.id, "carol", ("treasury", "audit"))
    assert user.id.startswith("usr_") and key.startswith(USER_KEY_PREFIX) and len(key) == 47
    assert await users.authenticate(key) == user
    record = await users.get("carol")
    assert record.user == user and not record.disabled
    assert [k.prefix for k in record.keys] == [key[:12]]
    async with database.engine.connect() as connection:
        stored = (await connection.execute(text("SELECT key_hash FROM user_keys"))).scalars().all()
    assert key not in stored and len(stored) == 1


async def test_names_follow_the_agents_rules_and_are_never_reused(database: Database) -> None:
    users = UserStore(database)
    with pytest.raises(InvalidIdentityName):
        await users.create("carol smith", ["treasury"])
    with pytest.raises(InvalidIdentityName):
        await users.create("carol", ["bad role!"])
    with pytest.raises(InvalidIdentityName):
        await users.create("carol", "treasury")  # type: ignore[arg-type]
    await users.create("carol", [])
    await users.disable("carol")
    with pytest.raises(UserExists):
        await users.create("carol", ["treasury"])
    with pytest.raises(UnknownUser):
        await users.get("dave")
    with pytest.raises(UnknownUser):
        await users.disable("dave")


async def test_more_keys_revoking_one_and_listing(database: Database) -> None:
    users = UserStore(database)
    carol, first = await users.create("carol", ["treasury"])
    await users.create("bob", [])
    second_key, second = await users.add_key("carol")
    assert second_key.id.startswith("ukey_") and second_key.user == "carol" and second != first
    revoked = await users.revoke_key(second_key.id)
    assert revoked.revoked and revoked.user == "carol"
    again = await users.revoke_key(second_key.id)
    assert again.revoked_at == revoked.revoked_at
    with pytest.raises(AuthenticationFailed, match="revoked"):
        await users.authenticate(second)
    assert await users.authenticate(first) == carol
    with pytest.raises(UnknownUserKey):
        await users.revoke_key("ukey_00000000")
    listed = await users.list()
    assert [record.user.name for record in listed] == ["carol", "bob"]
    assert [(k.id, k.revoked) for k in listed[0].keys][1] == (second_key.id, True)
    assert len(listed[1].keys) == 1


async def test_a_disabled_user_cannot_authenticate_nor_get_keys(database: Database) -> None:
    users = UserStore(database)
    _, key = await users.create("carol", ["treasury"])
    first = await users.disable("carol")
    assert first.disabled
    assert (await users.disable("carol")).disabled_at == first.disabled_at
    with pytest.raises(AuthenticationFailed, match="disabled"):
        await users.authenticate(key)
    with pytest.raises(UserDisabled):
        await users.add_key("carol")


async def test_agent_keys_and_user_keys_never_pass_for_each_other(database: Database) -> None:
    users = UserStore(database)
    agents = ApiKeyStore(database, cache_seconds=0)
    _, agent_key = await agents.create("billing-bot", ["treasury"])
    _, user_key = await users.create("carol", ["treasury"])
    with pytest.raises(AuthenticationFailed, match="agent's API key"):
        await users.authenticate(agent_key)
    with pytest.raises(AuthenticationFailed):
        await agents.authenticate(user_key)
    for wrong in ("", "agu_short", USER_KEY_PREFIX + "x" * 43, user_key + "x"):
        with pytest.raises(AuthenticationFailed):
            await users.authenticate(wrong)
