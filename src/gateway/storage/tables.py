"""The gateway's tables, declared once for the application and for Alembic.

Every table hangs off the one `Base`, so migrations see the whole schema in `Base.metadata`.
Constraint and index names follow a fixed convention: Alembic's SQLite batch mode recreates
tables and must find constraints by name, and the same name on SQLite and PostgreSQL keeps one
set of hand-written migrations valid for both.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, DateTime, Dialect, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """The shared declarative base: every gateway table belongs to its metadata."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, on every database.

    SQLite has no timezone type and hands back naive datetimes; PostgreSQL hands back the session's
    zone. Normalising here means no caller ever compares a naive time with an aware one, and naive
    values are refused on the way in because their zone would be a guess.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamps stored by the gateway must be timezone-aware")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class ApiKeyRow(Base):
    """One issued API key: who it speaks for, and the SHA-256 of its secret, never the secret.

    `key_hash` is a plain SHA-256 hex digest on purpose. Password hashes (bcrypt, argon2) are slow
    because passwords are guessable; a key is 32 random bytes, so no amount of guessing reaches it
    and a fast hash is as safe while keeping the lookup cheap on every request.
    """

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    agent: Mapped[str] = mapped_column(String(128), index=True)
    roles: Mapped[list[str]] = mapped_column(JSON)
    key_hash: Mapped[str] = mapped_column(String(64), index=True, unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
