"""The durable pins and reviews, shared by every gateway process through the database.

Each transition is a single statement whose row count says whether this process made it: the
first to insert a pin pins the tool, the first to open (or move) a review quarantines it, the
one whose delete removes a review restores it. So however many replicas list the same change at
the same moment, its audit event and webhook go out once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import orjson
from sqlalchemy import Table, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from gateway.catalog.instructions import Flag
from gateway.catalog.pins import Key, Pin, PinState, Review
from gateway.errors import NothingToAccept
from gateway.storage.database import Database
from gateway.storage.tables import ToolPinRow, ToolReviewRow

_PINS = cast(Table, ToolPinRow.__table__)
_REVIEWS = cast(Table, ToolReviewRow.__table__)
#: Rows per INSERT when a listing pins many tools at once (SQLite allows 32,766 bound values a statement).
_PINS_PER_STATEMENT = 500


class PinStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def read(self) -> PinState:
        """Every pin and review (a few rows per backend tool): the whole state a process needs."""
        async with self._database.session() as session:
            pins = (await session.execute(select(ToolPinRow))).scalars().all()
            reviews = (await session.execute(select(ToolReviewRow))).scalars().all()
        return PinState(
            pins={(row.connector, row.tool): _pin(row) for row in pins},
            reviews={(row.connector, row.tool): _review(row) for row in reviews},
        )

    async def pin_first(
        self, key: Key, digest: str, definition: Mapping[str, Any], *, accepted_by: str, reason: str
    ) -> bool:
        """Pin a tool never pinned before; False when another process pinned it first."""
        values = {
            "connector": key[0],
            "tool": key[1],
            "digest": digest,
            "definition": _json(definition),
            "accepted_by": accepted_by,
            "accepted_at": datetime.now(UTC),
            "reason": reason,
        }
        return await self._insert_once(_PINS, values)

    async def pin_many(
        self, tools: Sequence[tuple[Key, str, Mapping[str, Any] | None]], *, accepted_by: str, reason: str
    ) -> set[Key]:
        """Pin tools never pinned before, 500 a statement; the keys pinned here (not by another process first)."""
        now = datetime.now(UTC)
        insert = postgresql.insert if self._database.dialect == "postgresql" else sqlite.insert
        pinned: set[Key] = set()
        # One transaction per statement: on SQLite a single long one would hold the only write lock
        # and keep the audit log from committing the calls made meanwhile.
        for start in range(0, len(tools), _PINS_PER_STATEMENT):
            async with self._database.session() as session, session.begin():
                rows = [
                    {
                        "connector": key[0],
                        "tool": key[1],
                        "digest": digest,
                        "definition": _json(definition or {}),
                        "accepted_by": accepted_by,
                        "accepted_at": now,
                        "reason": reason,
                    }
                    for key, digest, definition in tools[start : start + _PINS_PER_STATEMENT]
                ]
                statement = (
                    insert(_PINS)
                    .values(rows)
                    .on_conflict_do_nothing(index_elements=["connector", "tool"])
                    .returning(_PINS.c.connector, _PINS.c.tool)
                )
                pinned.update((row.connector, row.tool) for row in await session.execute(statement))
        return pinned

    async def open_review(
        self, key: Key, state: str, digest: str, definition: Mapping[str, Any], flags: Sequence[Flag]
    ) -> bool:
        """Withhold a tool for review, or move its review to a newer definition; False when nothing changed.

        A review already open for this very digest is left alone (another process opened it), so
        the caller's audit event and webhook go out once per definition.
        """
        values = {
            "connector": key[0],
            "tool": key[1],
            "state": state,
            "digest": digest,
            "definition": _json(definition),
            "flags": _json([flag.as_json() for flag in flags]),
            "seen_at": datetime.now(UTC),
        }
        if await self._insert_once(_REVIEWS, values):
            return True
        async with self._database.session() as session, session.begin():
            moved = await session.execute(
                update(_REVIEWS)
                .where(_REVIEWS.c.connector == key[0], _REVIEWS.c.tool == key[1], _REVIEWS.c.digest != digest)
                .values(values)
            )
        return bool(moved.rowcount)  # type: ignore[attr-defined]

    async def close_review(self, key: Key, *, only_digest: str | None = None) -> bool:
        """Drop a tool's review (its backend went back to the pinned definition); False when none was open."""
        statement = delete(_REVIEWS).where(_REVIEWS.c.connector == key[0], _REVIEWS.c.tool == key[1])
        if only_digest is not None:
            statement = statement.where(_REVIEWS.c.digest == only_digest)
        async with self._database.session() as session, session.begin():
            result = await session.execute(statement)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def accept(self, key: Key, *, actor: str, reason: str) -> tuple[Review, Pin | None]:
        """Make the reviewed definition the pin and close the review, in one transaction.

        Returns the review accepted and the pin it replaced (None for a new tool). Raises
        `NothingToAccept` when the tool is not waiting for review.
        """
        now = datetime.now(UTC)
        async with self._database.session() as session, session.begin():
            row = (
                await session.execute(
                    select(ToolReviewRow).where(ToolReviewRow.connector == key[0], ToolReviewRow.tool == key[1])
                )
            ).scalar_one_or_none()
            if row is None:
                raise NothingToAccept(
                    f"tool '{key[1]}' of backend '{key[0]}' is not waiting for review (already accepted, or "
                    "never listed): `gateway tools pending` lists the tools that are"
                )
            review = _review(row)
            previous_row = (
                await session.execute(
                    select(ToolPinRow).where(ToolPinRow.connector == key[0], ToolPinRow.tool == key[1])
                )
            ).scalar_one_or_none()
            previous = _pin(previous_row) if previous_row is not None else None
            await session.execute(delete(_PINS).where(_PINS.c.connector == key[0], _PINS.c.tool == key[1]))
            await session.execute(
                _PINS.insert().values(
                    connector=key[0],
                    tool=key[1],
                    digest=row.digest,
                    definition=row.definition,
                    accepted_by=actor,
                    accepted_at=now,
                    reason=reason,
                )
            )
            await session.execute(
                delete(_REVIEWS).where(
                    _REVIEWS.c.connector == key[0], _REVIEWS.c.tool == key[1], _REVIEWS.c.digest == row.digest
                )
            )
        return review, previous

    async def _insert_once(self, table: Table, values: Mapping[str, Any]) -> bool:
        insert = postgresql.insert if self._database.dialect == "postgresql" else sqlite.insert
        statement = insert(table).values(dict(values)).on_conflict_do_nothing(index_elements=["connector", "tool"])
        async with self._database.session() as session, session.begin():
            result = await session.execute(statement)
        return bool(result.rowcount)  # type: ignore[attr-defined]


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _loads(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}


def _pin(row: ToolPinRow) -> Pin:
    definition = _loads(row.definition)
    return Pin(
        connector=row.connector,
        tool=row.tool,
        digest=row.digest,
        definition=definition if isinstance(definition, dict) else {},
        accepted_by=row.accepted_by,
        accepted_at=row.accepted_at,
        reason=row.reason,
    )


def _review(row: ToolReviewRow) -> Review:
    definition = _loads(row.definition)
    flags = _loads(row.flags)
    return Review(
        connector=row.connector,
        tool=row.tool,
        state=row.state,
        digest=row.digest,
        definition=definition if isinstance(definition, dict) else {},
        flags=tuple(
            Flag(str(item.get("rule")), str(item.get("where")), str(item.get("excerpt")))
            for item in (flags if isinstance(flags, list) else [])
            if isinstance(item, dict)
        ),
        seen_at=row.seen_at,
    )
