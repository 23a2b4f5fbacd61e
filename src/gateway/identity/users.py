"""Users: the people who approve held calls (and, later, use the console), each with keys of their own.

People and agents never share credentials. A user key is `agu_` followed by 32 random bytes in
URL-safe base64, and lives in `user_keys`, not `api_keys`: an agent's key (`agw_`) is refused
here before any lookup, and a user key is refused by the agents' key store, so an agent can
never vote on the calls it makes by presenting its own key as a person's.

As for API keys, only the SHA-256 of a key is stored. Unlike them, nothing is cached: people
authenticate once per command, not once per call, so every check reads the database and a
revocation or a disabled user bites at once in every process.

Users are disabled, never deleted, and a name is never given twice: votes and audit events name
people, and a name must keep meaning the same person.

People may also sign in with the organisation's identity provider (`people`), which then vouches
for their name and roles. They need no row here: the provider is the source of truth for who they
are (`vouched_for`). A row of the same name is the same person; only its being disabled counts,
so an administrator can stop someone deciding at once, whatever the provider says.
"""

from __future__ import annotations

import builtins
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Select, select, update
from sqlalchemy.exc import IntegrityError

from gateway.errors import (
    AuthenticationFailed,
    InvalidIdentityName,
    UnknownUser,
    UnknownUserKey,
    UserDisabled,
    UserExists,
)
from gateway.identity.api_keys import KEY_PREFIX as AGENT_KEY_PREFIX
from gateway.identity.api_keys import checked_name, hash_api_key
from gateway.storage.database import Database
from gateway.storage.tables import UserKeyRow, UserRow

USER_KEY_PREFIX = "agu_"
_SECRET_BYTES = 32
_KEY_PATTERN = re.compile(r"agu_[A-Za-z0-9_-]{43}")
#: The scheme and 8 characters (48 bits): enough to tell keys apart, far too few to help guess one.
_DISPLAY_PREFIX_LENGTH = len(USER_KEY_PREFIX) + 8
_ID_ATTEMPTS = 5

#: Reasons given to the person; never the key itself, which may be a mistyped real secret.
MALFORMED = "malformed user key"
AGENT_KEY = "that is an agent's API key; people decide with a user key (`gateway users key NAME`)"
UNKNOWN = "unknown user key"
REVOKED = "user key revoked"
DISABLED = "user disabled"
#: The prefix of the `id` of a person only the identity provider knows (no local row).
VOUCHED_ID_PREFIX = "idp:"


@dataclass(frozen=True, slots=True)
class User:
    """A person, as a check of their key or their sign-in token proves them: what votes and audit events record.

    `id` is the local row's (`usr_...`), or `idp:<name>` for a person only the identity provider knows.
    """

    id: str
    name: str
    roles: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UserKey:
    """What the gateway shows about a user key: never its secret, nor the hash of it."""

    id: str
    user: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A user as administrators see them: when they were made or disabled, and their keys."""

    user: User
    created_at: datetime
    disabled_at: datetime | None
    keys: tuple[UserKey, ...]

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None


class UserStore:
    """Creates, lists and disables users, issues and revokes their keys, and checks a presented key."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def create(self, name: str, roles: Sequence[str] = ()) -> tuple[User, str]:
        """Create a user with a first key; returns them and the plain key, which is never shown again."""
        name = checked_name(name, "user")
        if isinstance(roles, str):
            raise InvalidIdentityName(f"roles must be a list of role names, not the single string {roles!r}")
        unique_roles = tuple(dict.fromkeys(checked_name(role, "role") for role in roles))
        now = datetime.now(UTC)
        key = _new_key()
        for attempt in range(_ID_ATTEMPTS):
            user = UserRow(
                id=f"usr_{secrets.token_hex(4)}", name=name, roles=list(unique_roles), created_at=now, disabled_at=None
            )
            key_row = _key_row(user.id, key)
            try:
                # One transaction: a user never exists without the key they were given.
                async with self._db.session() as session, session.begin():
                    if await session.scalar(select(UserRow.id).where(UserRow.name == name)) is not None:
                        raise UserExists(f"a user named {name!r} exists already (names are never reused)")
                    session.add(user)
                    await session.flush()
                    session.add(key_row)
            except IntegrityError:
                # A colliding short id, or the same name created at the same moment elsewhere.
                async with self._db.session() as session:
                    if await session.scalar(select(UserRow.id).where(UserRow.name == name)) is not None:
                        raise UserExists(f"a user named {name!r} exists already (names are never reused)") from None
                if attempt == _ID_ATTEMPTS - 1:
                    raise
                continue
            return User(user.id, name, unique_roles), key
        raise AssertionError("unreachable")

    async def get(self, name: str) -> UserRecord:
        """The user of that name, disabled or not; `UnknownUser` if there is none."""
        async with self._db.session() as session:
            row = await session.scalar(select(UserRow).where(UserRow.name == name))
            if row is None:
                raise UnknownUser(f"no user is named {name!r}; `gateway users list` shows them")
            keys = (await session.scalars(_keys_query().where(UserKeyRow.user_id == row.id))).all()
        return _record(row, [_key(key, row.name) for key in keys])

    async def list(self) -> builtins.list[UserRecord]:
        """Every user, oldest first, with their keys."""
        async with self._db.session() as session:
            rows = (await session.scalars(select(UserRow).order_by(UserRow.created_at, UserRow.id))).all()
            keys = (await session.scalars(_keys_query())).all()
        names = {row.id: row.name for row in rows}
        by_user: dict[str, builtins.list[UserKey]] = {}
        for key in keys:
            if key.user_id in names:  # a user created between the two reads is left for the next listing
                by_user.setdefault(key.user_id, []).append(_key(key, names[key.user_id]))
        return [_record(row, by_user.get(row.id, [])) for row in rows]

    async def disable(self, name: str) -> UserRecord:
        """Disable a user for good: none of their keys works from now on; disabling again keeps the first time."""
        async with self._db.session() as session, session.begin():
            await session.execute(
                update(UserRow)
                .where(UserRow.name == name, UserRow.disabled_at.is_(None))
                .values(disabled_at=datetime.now(UTC))
            )
        return await self.get(name)

    async def add_key(self, name: str) -> tuple[UserKey, str]:
        """Issue another key for an enabled user (a new device, or before revoking an old key)."""
        record = await self.get(name)
        if record.disabled:
            raise UserDisabled(f"user {name!r} is disabled; a disabled user gets no new keys")
        return await self._issue(record.user.id, name)

    async def revoke_key(self, key_id: str) -> UserKey:
        """Revoke a key for good; revoking it again keeps the first revocation time."""
        async with self._db.session() as session, session.begin():
            await session.execute(
                update(UserKeyRow)
                .where(UserKeyRow.id == key_id, UserKeyRow.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
            found = (
                await session.execute(
                    select(UserKeyRow, UserRow.name)
                    .join(UserRow, UserRow.id == UserKeyRow.user_id)
                    .where(UserKeyRow.id == key_id)
                    .execution_options(populate_existing=True)
                )
            ).first()
        if found is None:
            raise UnknownUserKey(f"no user key has the id {key_id!r}; `gateway users list` shows the ids")
        return _key(found[0], found[1])

    async def authenticate(self, presented: str) -> User:
        """The user a presented key belongs to, or `AuthenticationFailed` saying why not.

        Keys are looked up by their hash, and the stored hash is compared in constant time, as
        for API keys. The user's roles are read now, so a change of roles counts at once.
        """
        if presented.startswith(AGENT_KEY_PREFIX):
            raise AuthenticationFailed(AGENT_KEY)
        if not _KEY_PATTERN.fullmatch(presented):
            raise AuthenticationFailed(MALFORMED)
        key_hash = hash_api_key(presented)
        async with self._db.session() as session:
            found = (
                await session.execute(
                    select(UserKeyRow, UserRow)
                    .join(UserRow, UserRow.id == UserKeyRow.user_id)
                    .where(UserKeyRow.key_hash == key_hash)
                )
            ).first()
        if found is None or not hmac.compare_digest(found[0].key_hash, key_hash):
            raise AuthenticationFailed(UNKNOWN)
        key, user = found[0], found[1]
        if key.revoked_at is not None:
            raise AuthenticationFailed(REVOKED)
        if user.disabled_at is not None:
            raise AuthenticationFailed(DISABLED)
        return User(user.id, user.name, tuple(user.roles))

    async def vouched_for(self, name: str, roles: Sequence[str]) -> User:
        """The person the identity provider signed in as `name` with `roles`, or `AuthenticationFailed`.

        The name must read like any user name; a local user of that name who is disabled is
        refused. Roles are the provider's alone, never a local row's: whoever the provider calls
        `name` gets no more than the provider grants them.
        """
        try:
            checked_name(name, "user")
        except InvalidIdentityName:
            raise AuthenticationFailed(
                f"the identity provider names this person {name[:64]!r}, which is not a usable user name "
                "(1 to 128 letters, digits, '_', '.', '@' or '-')"
            ) from None
        async with self._db.session() as session:
            row = await session.scalar(select(UserRow).where(UserRow.name == name))
        if row is not None and row.disabled_at is not None:
            raise AuthenticationFailed(
                f"user {name!r} is disabled on this gateway, so cannot decide held calls, even when signed in "
                "with the identity provider"
            )
        return User(row.id if row is not None else VOUCHED_ID_PREFIX + name, name, tuple(dict.fromkeys(roles)))

    async def _issue(self, user_id: str, name: str) -> tuple[UserKey, str]:
        key = _new_key()
        for attempt in range(_ID_ATTEMPTS):
            row = _key_row(user_id, key)
            try:
                async with self._db.session() as session, session.begin():
                    session.add(row)
            except IntegrityError:
                # Short public ids can collide; draw another one.
                if attempt == _ID_ATTEMPTS - 1:
                    raise
                continue
            return _key(row, name), key
        raise AssertionError("unreachable")


def _new_key() -> str:
    return USER_KEY_PREFIX + secrets.token_urlsafe(_SECRET_BYTES)


def _key_row(user_id: str, key: str) -> UserKeyRow:
    """A new key's row under a short public id such as `ukey_3f9a1c2b`, safe to print, log and type."""
    return UserKeyRow(
        id=f"ukey_{secrets.token_hex(4)}",
        user_id=user_id,
        key_hash=hash_api_key(key),
        prefix=key[:_DISPLAY_PREFIX_LENGTH],
        created_at=datetime.now(UTC),
        revoked_at=None,
    )


def _keys_query() -> Select[UserKeyRow]:
    return select(UserKeyRow).order_by(UserKeyRow.created_at, UserKeyRow.id)


def _key(row: UserKeyRow, name: str) -> UserKey:
    return UserKey(id=row.id, user=name, prefix=row.prefix, created_at=row.created_at, revoked_at=row.revoked_at)


def _record(row: UserRow, keys: Sequence[UserKey]) -> UserRecord:
    return UserRecord(
        user=User(row.id, row.name, tuple(row.roles)),
        created_at=row.created_at,
        disabled_at=row.disabled_at,
        keys=tuple(keys),
    )
