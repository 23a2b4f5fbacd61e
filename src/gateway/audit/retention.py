"""Retention: delete old events without breaking verification of the ones kept.

A chain whose oldest events are gone can still be verified if its new first event says which
hash it follows, and a checkpoint event says exactly that. So `prune` only ever cuts a chain
right before one of its checkpoints (the recorder writes one every N events and at every
close): the checkpoint is kept and anchors the rest. Deletion runs in short transactions, each
ending at a checkpoint, so a live writer is never blocked for long and an interrupted prune
leaves a chain that verifies.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Table, delete, func, select

from gateway.audit.entry import CHECKPOINT
from gateway.errors import InvalidAuditQuery
from gateway.storage.database import Database
from gateway.storage.tables import AuditEventRow

#: Upper bound of rows one prune transaction deletes, unless two checkpoints are further apart.
_ROWS_PER_TRANSACTION = 10_000


@dataclass(frozen=True, slots=True)
class PrunedReplica:
    """What prune did to one replica's chain; `starts_at` is the anchoring checkpoint's seq."""

    replica_id: str
    deleted: int
    starts_at: int


@dataclass(frozen=True, slots=True)
class PruneReport:
    deleted: int
    replicas: tuple[PrunedReplica, ...]


async def prune(db: Database, older_than: datetime) -> PruneReport:
    """Delete events recorded before `older_than`, up to each chain's last checkpoint before then."""
    if older_than.tzinfo is None:
        raise InvalidAuditQuery("'older_than' must carry a time zone")
    table = cast(Table, AuditEventRow.__table__)  # a mapped class's `__table__` is declared only as a FROM clause
    async with db.session() as session:
        firsts = dict(
            (
                await session.execute(select(table.c.replica_id, func.min(table.c.seq)).group_by(table.c.replica_id))
            ).all()
        )
    results: list[PrunedReplica] = []
    for replica_id, first in sorted(firsts.items()):
        async with db.session() as session:
            boundaries = (
                await session.scalars(
                    select(table.c.seq)
                    .where(
                        table.c.replica_id == replica_id,
                        table.c.kind == CHECKPOINT,
                        table.c.time < older_than,
                        table.c.seq > first,
                    )
                    .order_by(table.c.seq)
                )
            ).all()
        deleted = 0
        start = first
        for index, boundary in enumerate(boundaries):
            last = index == len(boundaries) - 1
            if not last and boundaries[index + 1] - start <= _ROWS_PER_TRANSACTION:
                continue  # the next checkpoint still fits in this transaction
            async with db.session() as session, session.begin():
                statement = delete(table).where(table.c.replica_id == replica_id, table.c.seq < boundary)
                outcome = cast(CursorResult[Any], await session.execute(statement))
            deleted += outcome.rowcount or 0
            start = boundary
        if deleted:
            results.append(PrunedReplica(replica_id, deleted, start))
    return PruneReport(sum(result.deleted for result in results), tuple(results))
