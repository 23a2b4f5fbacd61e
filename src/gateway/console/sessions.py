"""Console sessions: who is signed in to `/ui`, kept in the database and found by the cookie's secret.

The cookie holds a random secret and nothing else; the row (found by the secret's SHA-256) holds
who signed in, their roles at the time, how, and the CSRF token of their forms. So any replica
serves the session, a stolen database does not yield usable cookies, and signing out, or the
session's idle or absolute timeout, ends it everywhere at once.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, delete, insert, select, update

from gateway.identity.users import User
from gateway.settings.console import ConsoleSettings
from gateway.storage.database import Database
from gateway.storage.tables import ConsoleSessionRow

_SESSIONS = cast(Table, ConsoleSessionRow.__table__)
#: A session's last use is written at most this often (or a quarter of the idle timeout, when that is
#: shorter, so a person at work is never taken for idle): a page load is not a write each time.
_TOUCH_EVERY = timedelta(seconds=30)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    """One signed-in person: who, with which roles, how they signed in, and their forms' CSRF token."""

    user: User
    via: str
    csrf_token: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime


class ConsoleSessions:
    """Opens, finds and ends console sessions; `idle_timeout` and `absolute_timeout` come from `[console]`."""

    def __init__(self, database: Database, settings: ConsoleSettings, *, clock: Callable[[], datetime] = _now) -> None:
        self._db = database
        self._idle = timedelta(seconds=settings.idle_timeout)
        self._absolute = timedelta(seconds=settings.absolute_timeout)
        self._touch_every = min(_TOUCH_EVERY, self._idle / 4)
        self._clock = clock

    async def open(self, user: User, *, via: str) -> tuple[str, ConsoleSession]:
        """A new session for `user`; returns the cookie's secret (shown once, never stored) and the session."""
        secret = secrets.token_urlsafe(32)
        now = self._clock()
        session = ConsoleSession(user, via, secrets.token_urlsafe(32), now, now, now + self._absolute)
        values: dict[str, Any] = {
            "id_hash": _hash(secret),
            "user_id": user.id,
            "user_name": user.name,
            "roles": list(user.roles),
            "via": via,
            "csrf_token": session.csrf_token,
            "created_at": now,
            "last_seen_at": now,
            "expires_at": session.expires_at,
        }
        async with self._db.session() as db, db.begin():
            await db.execute(insert(_SESSIONS).values(values))
            # Ended sessions are removed as new ones start, so the table holds only live ones.
            await db.execute(delete(_SESSIONS).where(_SESSIONS.c.expires_at <= now))
        return secret, session

    async def find(self, secret: str, *, touch: bool = True) -> ConsoleSession | None:
        """The live session of `secret`, or None (unknown, signed out, idle too long, or past its end).

        `touch` counts the request as the person's activity; the console's own background requests
        (live updates) do not, so a tab left open still idles out.
        """
        if not secret or len(secret) > 128:
            return None
        id_hash = _hash(secret)
        async with self._db.session() as db:
            row = (await db.execute(select(_SESSIONS).where(_SESSIONS.c.id_hash == id_hash))).mappings().first()
        if row is None:
            return None
        now = self._clock()
        session = ConsoleSession(
            User(row["user_id"], row["user_name"], tuple(row["roles"])),
            row["via"],
            row["csrf_token"],
            row["created_at"],
            row["last_seen_at"],
            row["expires_at"],
        )
        if now >= session.expires_at or now - session.last_seen_at >= self._idle:
            await self._remove(id_hash)
            return None
        if touch and now - session.last_seen_at >= self._touch_every:
            async with self._db.session() as db, db.begin():
                await db.execute(update(_SESSIONS).where(_SESSIONS.c.id_hash == id_hash).values(last_seen_at=now))
        return session

    async def close(self, secret: str) -> None:
        """Sign out: the session ends on every replica at once."""
        await self._remove(_hash(secret))

    async def close_all_of(self, user_name: str) -> int:
        """End every session of a person (disabled, or their key revoked); how many there were."""
        async with self._db.session() as db, db.begin():
            result = await db.execute(delete(_SESSIONS).where(_SESSIONS.c.user_name == user_name))
        return int(getattr(result, "rowcount", 0) or 0)

    async def _remove(self, id_hash: str) -> None:
        async with self._db.session() as db, db.begin():
            await db.execute(delete(_SESSIONS).where(_SESSIONS.c.id_hash == id_hash))


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
