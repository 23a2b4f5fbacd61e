"""The durable record of de-duplicated calls: one row per key, taken by inserting it.

The row's `key_digest` is unique, so "who runs this call" is settled by the database: of two
requests (on one replica or two) inserting the same key, one succeeds and runs the call, the
other gets an integrity error and reads the row instead. No lock is held while the call runs;
the row itself says `executing` until its run ends.

A run ends in one of three ways (the states of `gateway.executions`):

- `succeeded`: the result is kept (bounded) until `expires_at`, for repeats to receive;
- released (the row is deleted): the backend reported an error, or the call never reached it,
  so nothing was done and a repeat runs it afresh;
- `unknown`: the gateway stopped (or the backend went silent) while it ran. The row stays, with
  no expiry, until an operator who checked the backend clears it: nothing repeats it meanwhile.

Expired rows are replaced by the next call with their key, and swept (`drop_expired`).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import RowMapping, Table, delete, select, update
from sqlalchemy.exc import IntegrityError

from gateway.approvals.ids import uuid7
from gateway.errors import IdempotencyRecordRunning, UnknownIdempotencyRecord
from gateway.executions import ExecutionState
from gateway.storage.database import Database
from gateway.storage.tables import IdempotencyRecordRow

_RECORDS = cast(Table, IdempotencyRecordRow.__table__)
MAX_LIST_LIMIT = 500


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """One de-duplicated call as stored: who ran it, where it stands, and its kept outcome."""

    id: str
    key_digest: str
    tool: str
    connector: str
    key_shown: str
    agent: str
    workflow: str | None
    state: ExecutionState
    executor: str
    call_id: str | None
    created_at: datetime
    finished_at: datetime | None
    expires_at: datetime | None
    result: bytes | None
    result_truncated: bool
    replays: int
    #: The digest of all the first call's arguments: a repeat must send the same ones to be a repeat.
    arguments_digest: str | None = None


@dataclass(frozen=True, slots=True)
class NewRun:
    """What a request taking a call writes: the key and who runs it."""

    key_digest: str
    tool: str
    connector: str
    key_shown: str
    agent: str
    workflow: str | None
    arguments_digest: str | None = None


class IdempotencyStore:
    """De-duplicated calls in the gateway database; `executor` names this process (its audit replica id)."""

    def __init__(self, database: Database, *, executor: str, clock: Callable[[], datetime] = _now) -> None:
        self._db = database
        self._executor = executor
        self._clock = clock

    async def take(self, run: NewRun) -> IdempotencyRecord | None:
        """Insert the row of a call about to run; None when a row with its key exists (another request has it)."""
        now = self._clock()
        values: dict[str, Any] = {
            "id": str(uuid7(now)),
            "key_digest": run.key_digest,
            "tool": run.tool,
            "connector": run.connector,
            "key_shown": run.key_shown,
            "agent": run.agent,
            "workflow_id": run.workflow,
            "state": ExecutionState.EXECUTING.value,
            "executor": self._executor,
            "call_id": None,
            "created_at": now,
            "finished_at": None,
            "expires_at": None,
            "result": None,
            "result_truncated": False,
            "replays": 0,
            "arguments_digest": run.arguments_digest,
        }
        try:
            async with self._db.session() as session, session.begin():
                await session.execute(_RECORDS.insert().values(values))
        except IntegrityError:
            return None
        return _record(values)

    async def find(self, key_digest: str) -> IdempotencyRecord | None:
        return await self._one(select(_RECORDS).where(_RECORDS.c.key_digest == key_digest))

    async def get(self, record_id: str) -> IdempotencyRecord:
        record = await self._one(select(_RECORDS).where(_RECORDS.c.id == record_id))
        if record is None:
            raise UnknownIdempotencyRecord(
                f"no idempotency record has the id {record_id!r} (it expired, was cleared, or never existed); "
                "list them with `gateway idempotency list`"
            )
        return record

    async def succeeded(
        self, record_id: str, *, call_id: str | None, result: bytes, truncated: bool, expires_at: datetime
    ) -> None:
        """The run ended with a result: kept for the repeats until `expires_at`."""
        await self._executing_becomes(
            record_id,
            state=ExecutionState.SUCCEEDED.value,
            call_id=call_id,
            finished_at=self._clock(),
            expires_at=expires_at,
            result=result,
            result_truncated=truncated,
        )

    async def unknown(self, record_id: str, *, call_id: str | None) -> None:
        """The run ended without an outcome anyone can trust: kept, unexpiring, until an operator clears it."""
        await self._executing_becomes(
            record_id, state=ExecutionState.UNKNOWN.value, call_id=call_id, finished_at=self._clock()
        )

    async def release(self, record_id: str) -> None:
        """The run did nothing (the backend refused it, or it was never sent): its key is free again."""
        async with self._db.session() as session, session.begin():
            await session.execute(
                delete(_RECORDS).where(_RECORDS.c.id == record_id, _RECORDS.c.state == ExecutionState.EXECUTING.value)
            )

    async def replayed(self, record_id: str) -> None:
        """Count one more repeat answered from the record (shown to operators)."""
        async with self._db.session() as session, session.begin():
            await session.execute(
                update(_RECORDS).where(_RECORDS.c.id == record_id).values(replays=_RECORDS.c.replays + 1)
            )

    async def drop_expired(self, record_id: str | None = None) -> int:
        """Delete finished rows past their window (only `record_id`'s when given); how many went."""
        statement = delete(_RECORDS).where(
            _RECORDS.c.state == ExecutionState.SUCCEEDED.value, _RECORDS.c.expires_at <= self._clock()
        )
        if record_id is not None:
            statement = statement.where(_RECORDS.c.id == record_id)
        async with self._db.session() as session, session.begin():
            return int((await session.execute(statement)).rowcount or 0)  # type: ignore[attr-defined]

    async def recover_after_crash(self, *, executor: str | None = None) -> builtins.list[IdempotencyRecord]:
        """Mark runs left `executing` by a stopped process `unknown` (every process's, without `executor`)."""
        query = select(_RECORDS).where(_RECORDS.c.state == ExecutionState.EXECUTING.value)
        if executor is not None:
            query = query.where(_RECORDS.c.executor == executor)
        stranded = await self._many(query)
        recovered = []
        for record in stranded:
            if await self._executing_becomes(record.id, state=ExecutionState.UNKNOWN.value, finished_at=self._clock()):
                recovered.append(await self.get(record.id))
        return recovered

    async def list(self, *, state: ExecutionState | None = None, limit: int = 50) -> builtins.list[IdempotencyRecord]:
        """Records newest first, `limit` of them; `state` narrows them."""
        query = select(_RECORDS)
        if state is not None:
            query = query.where(_RECORDS.c.state == state.value)
        query = query.order_by(_RECORDS.c.created_at.desc(), _RECORDS.c.id.desc()).limit(min(limit, MAX_LIST_LIMIT))
        return await self._many(query)

    async def clear(self, record_id: str) -> IdempotencyRecord:
        """Remove a record that is not running (an operator's decision): the next call with its key runs.

        A call still `executing` keeps its record: clearing it would let an identical call run
        beside it, the duplicate this exists to prevent. Its outcome becomes `unknown` if the
        gateway running it dies, and can be cleared then. The state is checked in the delete
        itself, so a call that starts meanwhile is not cleared either.
        """
        record = await self.get(record_id)
        running = IdempotencyRecordRunning(
            f"idempotency record {record_id} ({record.tool}) belongs to a call that is still running, so it was not "
            "cleared: clearing it would let an identical call run beside it. Wait for the call to end; if the "
            "gateway running it died, the record becomes 'unknown' when another gateway process takes over or it "
            "restarts, and can be cleared then."
        )
        if record.state is ExecutionState.EXECUTING:
            raise running
        statement = delete(_RECORDS).where(
            _RECORDS.c.id == record_id, _RECORDS.c.state != ExecutionState.EXECUTING.value
        )
        async with self._db.session() as session, session.begin():
            gone = (await session.execute(statement)).rowcount  # type: ignore[attr-defined]
        if not gone:
            if (await self._one(select(_RECORDS).where(_RECORDS.c.id == record_id))) is not None:
                raise running
            raise UnknownIdempotencyRecord(f"idempotency record {record_id} was removed meanwhile")
        return record

    async def _executing_becomes(self, record_id: str, **changes: Any) -> bool:
        """Compare-and-set from `executing`: a run ends once, and a cleared or recovered row is left alone."""
        statement = (
            update(_RECORDS)
            .where(_RECORDS.c.id == record_id, _RECORDS.c.state == ExecutionState.EXECUTING.value)
            .values(**changes)
        )
        async with self._db.session() as session, session.begin():
            return bool((await session.execute(statement)).rowcount)  # type: ignore[attr-defined]

    async def _one(self, query: Any) -> IdempotencyRecord | None:
        async with self._db.session() as session:
            row = (await session.execute(query)).mappings().first()
        return _record(row) if row is not None else None

    async def _many(self, query: Any) -> builtins.list[IdempotencyRecord]:
        async with self._db.session() as session:
            return [_record(row) for row in (await session.execute(query)).mappings().all()]


def _record(row: Mapping[str, Any] | RowMapping) -> IdempotencyRecord:
    return IdempotencyRecord(
        id=row["id"],
        key_digest=row["key_digest"],
        tool=row["tool"],
        connector=row["connector"],
        key_shown=row["key_shown"],
        agent=row["agent"],
        workflow=row["workflow_id"],
        state=ExecutionState(row["state"]),
        executor=row["executor"],
        call_id=row["call_id"],
        created_at=_aware(row["created_at"]),
        finished_at=_aware(row["finished_at"]),
        expires_at=_aware(row["expires_at"]),
        result=row["result"],
        result_truncated=bool(row["result_truncated"]),
        replays=int(row["replays"]),
        arguments_digest=row.get("arguments_digest"),
    )


def _aware(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value
