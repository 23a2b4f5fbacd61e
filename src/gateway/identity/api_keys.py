"""API keys: issued once, stored as a hash, checked on every request without a database trip.

A key is `agw_` followed by 32 random bytes in URL-safe base64. Only its SHA-256 is stored, so a
copy of the database grants nothing. Checking a key is on the hot path of every call, so results
are cached per key hash for a few seconds. A revocation bites at once in the process that made it;
every other process (replicas, workers, the gateway serving while `gateway keys revoke` runs)
learns of it from `follow_revocations`, which counts the revoked keys every fraction of a second
and, when the count moves, drops the newly revoked ones from the cache. That keeps the request
path free of any extra check: the cost is one small query per interval per process, not one per
call. When an entry is missing or has expired, concurrent requests with that key share one
database check instead of each making its own: an agent with many calls in flight would
otherwise send a burst of identical queries every `cache_seconds`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Callable, Collection, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import anyio
import anyio.abc
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from gateway.errors import AuthenticationFailed, InvalidIdentityName, StorageUnavailable, UnknownApiKey
from gateway.identity.principal import Principal
from gateway.storage.database import Database
from gateway.storage.tables import ApiKeyRow

logger = logging.getLogger(__name__)

KEY_PREFIX = "agw_"
_SECRET_BYTES = 32
#: `token_urlsafe(32)` is 43 characters of the URL-safe base64 alphabet, without padding.
_KEY_PATTERN = re.compile(r"agw_[A-Za-z0-9_-]{43}")
#: How much of a key is kept in clear to tell keys apart in listings: the scheme and 8 characters
#: (48 bits), far too few to help guess the remaining 35 characters (about 210 bits).
_DISPLAY_PREFIX_LENGTH = len(KEY_PREFIX) + 8
_NAME_PATTERN = re.compile(r"[A-Za-z0-9_.@-]{1,128}")
_ID_ATTEMPTS = 5

#: Reasons given to the caller; never the key itself, which may be a mistyped real secret.
MALFORMED = "malformed API key"
UNKNOWN = "unknown API key"
REVOKED = "API key revoked"


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """What the gateway shows about an API key: never its secret, nor the hash of it."""

    id: str
    agent: str
    roles: tuple[str, ...]
    prefix: str
    description: str | None
    created_at: datetime
    revoked_at: datetime | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True, slots=True)
class _CachedCheck:
    """The outcome of one database check of a key hash, valid until `expires_at` (monotonic)."""

    principal: Principal | None
    refusal: str | None
    expires_at: float

    def outcome(self) -> Principal:
        if self.principal is None:
            raise AuthenticationFailed(self.refusal or UNKNOWN)
        return self.principal


class _ChecksInFlight:
    """The database checks under way, at most one per key hash, shared by every request presenting that key.

    A check runs as a task of its own, so that a request giving up (its client went away) cannot
    cancel it for the other requests waiting on it.
    """

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[_CachedCheck]] = {}

    async def join(self, key_hash: str, check: Callable[[], Coroutine[Any, Any, _CachedCheck]]) -> _CachedCheck:
        """The outcome of the check of `key_hash` under way, or of `check`, started now if none is."""
        task = self._tasks.get(key_hash)
        if task is None:
            # asyncio, not anyio: anyio has no task that outlives the caller who started it, as a shared check must.
            task = asyncio.get_running_loop().create_task(check())
            self._tasks[key_hash] = task
            task.add_done_callback(partial(self._done, key_hash))
        return await asyncio.shield(task)

    def forget(self, key_hashes: Collection[str]) -> None:
        """Leave these keys' checks to the requests already waiting: later ones start a check of their own."""
        for key_hash in [checking for checking in self._tasks if checking in key_hashes]:
            del self._tasks[key_hash]

    def _done(self, key_hash: str, task: asyncio.Task[_CachedCheck]) -> None:
        if self._tasks.get(key_hash) is task:
            del self._tasks[key_hash]
        if not task.cancelled():
            task.exception()  # retrieved here too, in case every caller gave up waiting


def hash_api_key(key: str) -> str:
    """The SHA-256 hex digest stored for a key.

    A fast hash is right here, unlike for passwords: the secret is 32 random bytes, so there is
    nothing to gain from guessing, and a slow hash would only slow down every request.
    """
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeyStore:
    """Issues, lists, revokes and checks API keys held in the gateway database.

    `cache_seconds` bounds how long a process keeps trusting a key revoked elsewhere when it does
    not run `follow_revocations` or cannot read the database (0 checks the database on every
    call). Unknown keys are remembered for at most `negative_cache_seconds`, so an agent retrying
    a wrong key does not put a query on the database for every attempt; the cache holds at most
    `max_cached` keys. `clock` is a monotonic clock, replaceable for tests.
    """

    def __init__(
        self,
        db: Database,
        *,
        cache_seconds: float = 5.0,
        negative_cache_seconds: float = 1.0,
        max_cached: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if cache_seconds < 0 or negative_cache_seconds < 0:
            raise ValueError("cache durations cannot be negative")
        if max_cached < 1:
            raise ValueError("max_cached must be at least 1")
        self._db = db
        self._cache_seconds = cache_seconds
        self._negative_cache_seconds = min(negative_cache_seconds, cache_seconds)
        self._max_cached = max_cached
        self._clock = clock
        self._cache: dict[str, _CachedCheck] = {}
        self._checking = _ChecksInFlight()
        self._revocations = 0

    async def create(
        self, agent: str, roles: Sequence[str] = (), description: str | None = None
    ) -> tuple[ApiKeyRecord, str]:
        """Issue a key for `agent`; returns its record and the plain key, which is never shown again."""
        agent = checked_name(agent, "agent")
        if isinstance(roles, str):
            raise InvalidIdentityName(f"roles must be a list of role names, not the single string {roles!r}")
        unique_roles = tuple(dict.fromkeys(checked_name(role, "role") for role in roles))
        key = KEY_PREFIX + secrets.token_urlsafe(_SECRET_BYTES)
        for attempt in range(_ID_ATTEMPTS):
            row = ApiKeyRow(
                id=_new_key_id(),
                agent=agent,
                roles=list(unique_roles),
                key_hash=hash_api_key(key),
                prefix=key[:_DISPLAY_PREFIX_LENGTH],
                description=description,
                created_at=datetime.now(UTC),
                revoked_at=None,
            )
            try:
                async with self._db.session() as session, session.begin():
                    session.add(row)
            except IntegrityError:
                # Short public ids can collide; draw another one.
                if attempt == _ID_ATTEMPTS - 1:
                    raise
                continue
            return _record(row), key
        raise AssertionError("unreachable")

    async def list(self, *, include_revoked: bool = True) -> list[ApiKeyRecord]:
        """Every key, oldest first."""
        query = select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.id)
        if not include_revoked:
            query = query.where(ApiKeyRow.revoked_at.is_(None))
        async with self._db.session() as session:
            rows = (await session.scalars(query)).all()
        return [_record(row) for row in rows]

    async def revoke(self, key_id: str) -> ApiKeyRecord:
        """Revoke a key for good; revoking it again keeps the first revocation time."""
        async with self._db.session() as session, session.begin():
            await session.execute(
                update(ApiKeyRow)
                .where(ApiKeyRow.id == key_id, ApiKeyRow.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
            row = await session.get(ApiKeyRow, key_id, populate_existing=True)
            if row is None:
                raise UnknownApiKey(f"no API key has the id {key_id!r}; `gateway keys list` shows the ids")
            record = _record(row)
            key_hash = row.key_hash
        self._revocations += 1
        self._cache.pop(key_hash, None)
        self._checking.forget({key_hash})  # a check begun before the revocation answers no one else
        return record

    async def authenticate(self, presented: str) -> Principal:
        """The principal a presented key speaks for, or `AuthenticationFailed` saying why not.

        Keys are looked up by their hash; the timing of that lookup tells an attacker at most
        something about a SHA-256 output, which does not help find a key. The stored hash is still
        compared in constant time, so no byte-wise comparison of secrets happens anywhere.
        Database failures surface as `StorageUnavailable`, never as a refusal.
        """
        if not _KEY_PATTERN.fullmatch(presented):
            raise AuthenticationFailed(MALFORMED)
        key_hash = hash_api_key(presented)
        cached = self._cache.get(key_hash)
        if cached is not None and cached.expires_at > self._clock():
            return cached.outcome()
        return (await self._checking.join(key_hash, partial(self._check, key_hash))).outcome()

    async def follow_revocations(
        self, interval: float, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Stop trusting keys revoked by any other process within about `interval` seconds; runs forever.

        Revocations are permanent and keys are never deleted, so the number of revoked keys only
        grows: a change of that number is the cheap signal that some key was revoked, and only then
        are the revoked hashes read. It works the same on SQLite (the CLI is another process) and
        on PostgreSQL (every replica polls), and a lost notification cannot make it miss one.
        While the database cannot be read, cached keys stay trusted for at most `cache_seconds`,
        and every revoked key is looked for once it can be read again.
        """
        known: int | None = None
        missed = False
        ready = False
        while True:
            try:
                count = await self._revoked_count()
                if missed or (known is not None and count != known):
                    await self._forget_revoked()
            except StorageUnavailable as exc:
                if not missed:
                    logger.warning(
                        "cannot look for revoked API keys; cached keys stay trusted until their cache expires",
                        extra={"error": str(exc), "key_cache_seconds": self._cache_seconds},
                    )
                missed = True
            else:
                if missed:
                    logger.info("looking for revoked API keys again")
                known, missed = count, False
            if not ready:
                task_status.started()
                ready = True
            await anyio.sleep(interval)

    async def _revoked_count(self) -> int:
        async with self._db.session() as session:
            return await session.scalar(select(func.count()).where(ApiKeyRow.revoked_at.is_not(None))) or 0

    async def _forget_revoked(self) -> None:
        async with self._db.session() as session:
            revoked = set(await session.scalars(select(ApiKeyRow.key_hash).where(ApiKeyRow.revoked_at.is_not(None))))
        self._revocations += 1  # a check that read the key before it was revoked must not cache it
        for key_hash in [known for known in self._cache if known in revoked]:
            del self._cache[key_hash]
        self._checking.forget(revoked)

    async def _check(self, key_hash: str) -> _CachedCheck:
        revocations = self._revocations
        async with self._db.session() as session:
            row = await session.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == key_hash))
        now = self._clock()
        if row is None or not hmac.compare_digest(row.key_hash, key_hash):
            check = _CachedCheck(None, UNKNOWN, now + self._negative_cache_seconds)
        elif row.revoked_at is not None:
            check = _CachedCheck(None, REVOKED, now + self._cache_seconds)
        else:
            principal = Principal(agent=row.agent, roles=tuple(row.roles), credential_id=row.id)
            check = _CachedCheck(principal, None, now + self._cache_seconds)
        if revocations == self._revocations:  # a revocation meanwhile may have made this answer stale
            self._remember(key_hash, check)
        return check

    def _remember(self, key_hash: str, check: _CachedCheck) -> None:
        if check.expires_at <= self._clock():
            return
        self._cache.pop(key_hash, None)
        if len(self._cache) >= self._max_cached:
            now = self._clock()
            for stale in [known for known, entry in self._cache.items() if entry.expires_at <= now]:
                del self._cache[stale]
            while len(self._cache) >= self._max_cached:
                # Oldest first: dicts keep insertion order and every entry is re-inserted when renewed.
                del self._cache[next(iter(self._cache))]
        self._cache[key_hash] = check


def checked_name(name: str, kind: str) -> str:
    """`name` if it is a valid agent, user or role name; one rule for all, so names read alike everywhere."""
    if not isinstance(name, str) or not _NAME_PATTERN.fullmatch(name):
        raise InvalidIdentityName(f"invalid {kind} name {name!r}: use 1 to 128 letters, digits, '_', '.', '@' or '-'")
    return name


def _new_key_id() -> str:
    """A short public id such as `key_3f9a1c2b`, safe to print, log and type."""
    return f"key_{secrets.token_hex(4)}"


def _record(row: ApiKeyRow) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=row.id,
        agent=row.agent,
        roles=tuple(row.roles),
        prefix=row.prefix,
        description=row.description,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )
