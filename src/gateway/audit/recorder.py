"""The write-ahead audit recorder: no call proceeds until its event is durably committed.

Callers hand events to one background writer task per recorder. The writer takes everything
queued, chains it into rows and hands them to its event store (`store_selection`: a writer thread
on SQLite, the asyncpg connection on PostgreSQL), which commits them in one transaction; only
then are the callers woken (group commit): under load many calls share one commit, and a lone
call pays one round trip. Each recorder writes its own chain (`replica_id`), so replicas sharing PostgreSQL
never wait for one another's chain head.

When a write fails (database locked, unreachable, read-only, disk full) nothing of that batch
is part of the chain: every `record_call` in it raises `AuditUnavailable` so the call is
refused, and the chain head is reloaded from the database before the next write, which is how
the recorder recovers by itself once writes succeed again. Outcomes and refused
authentications describe things that already happened, so a failed write keeps them queued and
retries them (in order) with the next batch instead of losing them.

A process killed mid-call leaves a `call` event without an `outcome`. `start()` finds those in
this replica's chain and records the outcome `unknown` for each: the log never guesses whether
the backend ran the call. Whoever starts a recorder on a chain holds its lease (`leases`), the
process itself or, for a process that died, a live one closing its chain.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import socket
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
import asyncpg
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from opentelemetry import trace
from sqlalchemy import and_, exists, select
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

from gateway.audit.chain import (
    chain_hash,
    checkpoint_statement,
    event_content,
    isoformat,
    key_id,
    sign,
)
from gateway.audit.entry import (
    APPROVAL,
    AUTH_REFUSED,
    CALL,
    CHECKPOINT,
    CONSOLE,
    OUTCOME,
    OUTCOMES,
    RECOVERED,
    SUSPENSION,
    TOOL_PIN,
    CallHandle,
    Timings,
    index_columns,
    new_call_id,
    outcome_payload,
    request_id_value,
    result_digest,
    short_text,
)
from gateway.audit.event_store import COLUMNS, ChainHead, EventStore, Row
from gateway.audit.redaction import Redactor, clean_text
from gateway.audit.sqlalchemy_writer import read_head
from gateway.audit.store_selection import open_event_store
from gateway.calls import Call
from gateway.errors import AuditUnavailable, GatewayError, StorageUnavailable
from gateway.memo import remember
from gateway.storage.database import Database
from gateway.storage.tables import AuditEventRow

logger = logging.getLogger("gateway.audit")

_REPLICA_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}")

#: Errors that mean "this write did not happen (or may not have)"; anything else is a bug.
_WRITE_FAILURES = (
    SQLAlchemyError,
    StorageUnavailable,
    OSError,
    TimeoutError,
    sqlite3.Error,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)
_HASH = COLUMNS.index("hash")
_INDEXED = COLUMNS[COLUMNS.index("agent") : COLUMNS.index("prev_hash")]  # filled by `index_columns`

_RECENT_BATCHES = 1024
_MAX_RETAINED = 10_000
_RETRY_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


def default_replica_id() -> str:
    """`<host>-p<pid>-<random>`: a chain of its own for every process, even several on one host.

    A process that stops without closing its chain never comes back under the same id; the
    chain's lease expires and a live process closes the calls it left open (`leases`).
    """
    host = re.sub(r"[^A-Za-z0-9_.:@-]", "-", socket.gethostname()).strip("-.") or "gateway"
    suffix = f"-p{os.getpid()}-{secrets.token_hex(3)}"
    return host[: 64 - len(suffix)] + suffix


@dataclass(frozen=True, slots=True)
class ToolPinEvent:
    """What happened to one tool's pinned definition, as `record_tool_pin_events` takes it."""

    action: str
    connector: str
    tool: str
    exposed: str
    actor: str
    reason: str | None = None
    details: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class RecorderStats:
    """Counters for metrics and benchmarks; a snapshot, taken by `AuditRecorder.stats()`."""

    batches: int
    events: int
    failed_batches: int
    retrying: int
    dropped: int
    recent_batch_sizes: tuple[int, ...]
    histogram: dict[int, int]

    @property
    def mean_batch_size(self) -> float:
        return self.events / self.batches if self.batches else 0.0

    @property
    def max_batch_size(self) -> int:
        return max(self.recent_batch_sizes, default=0)


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What `start()` found: calls left without an outcome by a previous run of this replica."""

    replica_id: str
    head_seq: int
    recovered_calls: int
    call_ids: tuple[str, ...]


@dataclass(slots=True)
class _Pending:
    kind: str
    call_id: str | None
    time: datetime
    data: dict[str, Any]
    future: asyncio.Future[int | None] | None  # None: nobody waits for this event
    retry: bool  # on a failed write, keep and retry instead of failing the caller


@dataclass(frozen=True, slots=True)
class _Plan:
    rows: list[Row]
    assigned: list[int]
    seq: int
    prev: str
    since: int


@dataclass(slots=True)
class _Counters:
    batches: int = 0
    events: int = 0
    failed_batches: int = 0
    dropped: int = 0
    recent: deque[int] = field(default_factory=lambda: deque(maxlen=_RECENT_BATCHES))
    histogram: dict[int, int] = field(default_factory=dict)


class AuditRecorder:
    """Records calls, outcomes and refused authentications of one gateway replica.

    `max_batch` caps the events per transaction. `max_wait_ms` is how long the writer may hold
    a batch open for more callers, which it does only while load is visible (the previous batch
    was larger than what is queued now); a lone caller never waits for company.
    `checkpoint_every` events (and on close) a checkpoint is appended, signed with
    `signing_key` when given.
    """

    def __init__(
        self,
        db: Database,
        redactor: Redactor,
        *,
        replica_id: str,
        max_batch: int = 256,
        max_wait_ms: float = 2.0,
        signing_key: Ed25519PrivateKey | None = None,
        checkpoint_every: int = 1000,
        write_timeout: float = 10.0,
        on_batch: Callable[[int, float], None] | None = None,
        event_store: Callable[[Database], EventStore] | None = None,
    ) -> None:
        """`on_batch(events, seconds)` is told of every committed batch (metrics: size, write latency).

        `event_store` builds the store to write through instead of the fastest one for the
        database (see `store_selection`); benchmarks use it to measure one store against another.
        """
        if not _REPLICA_ID.fullmatch(replica_id):
            raise ValueError(
                f"replica id {replica_id!r} must be 1-64 characters of letters, digits and '_.:@-', "
                "starting with a letter or digit"
            )
        if max_batch < 1 or checkpoint_every < 1 or max_wait_ms < 0 or write_timeout <= 0:
            raise ValueError("max_batch and checkpoint_every must be positive, max_wait_ms not negative")
        self._db = db
        self._redactor = redactor
        self._replica_id = replica_id
        self._on_batch = on_batch
        self._event_store = event_store
        self._max_batch = max_batch
        self._max_wait = max_wait_ms / 1000
        self._signing_key = signing_key
        self._key_id = key_id(signing_key) if signing_key is not None else None
        self._checkpoint_every = checkpoint_every
        self._write_timeout = write_timeout
        self._queue: deque[_Pending] = deque()
        self._retained: deque[_Pending] = deque()
        self._wakeup = anyio.Event()  # replaced, not cleared, before each wait: anyio events are set once
        self._reasons: dict[str, str] = {}
        # Held while a batch is planned and written, by the writer task or by a caller writing inline.
        self._write_lock = asyncio.Lock()
        # One timer for the outcomes nobody waits for, started by the oldest one still queued.
        # asyncio: a cancellable callback at a set time; anyio has that only as a task per timer.
        self._outcome_flush: asyncio.TimerHandle | None = None
        self._store: EventStore | None = None
        self._head: tuple[int, str] | None = None
        self._since_checkpoint = 0
        self._clean_close_seq = -1
        # A failed batch that may have committed all the same (the write timed out while the
        # database was finishing it): its planned head, and its events.
        self._uncertain: tuple[int, str, list[_Pending], str] | None = None
        self._open_calls: set[str] = set()
        # asyncio: the writer outlives `start()`; an anyio task group ends in the scope that opened it.
        self._writer: asyncio.Task[None] | None = None
        self._running = False
        self._last_batch = 1
        self._retry_attempt = 0
        self._counters = _Counters()
        self._claim_valid: Callable[[], bool] | None = None

    @property
    def replica_id(self) -> str:
        return self._replica_id

    def stats(self) -> RecorderStats:
        counters = self._counters
        return RecorderStats(
            batches=counters.batches,
            events=counters.events,
            failed_batches=counters.failed_batches,
            retrying=len(self._retained),
            dropped=counters.dropped,
            recent_batch_sizes=tuple(counters.recent),
            histogram=dict(sorted(counters.histogram.items())),
        )

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, *, closing_for: str | None = None) -> RecoveryReport:
        """Load this replica's chain head, start the writer, and close calls a crash left open.

        `closing_for` names the live replica closing this chain for a process that died (see
        `leases`); the recovery event says so, since its writer is not the chain's own process.
        """
        if self._writer is not None:
            raise RuntimeError("the audit recorder is already started")
        try:
            async with asyncio.timeout(self._write_timeout):  # asyncio: see `_write_batch`
                async with self._db.engine.connect() as connection:
                    self._set_head(await read_head(connection, self._replica_id))
                    orphans = await self._orphan_calls(connection)
                if self._event_store is not None:
                    self._store = self._event_store(self._db)
                else:
                    self._store = await open_event_store(self._db, write_timeout=self._write_timeout)
        except _WRITE_FAILURES as error:
            raise AuditUnavailable(f"the audit log cannot be read at start: {_describe(error)}") from error
        self._running = True
        self._writer = asyncio.create_task(self._run(), name=f"audit-writer-{self._replica_id}")
        head_seq = self._head[0] if self._head else 0
        if orphans:
            now = datetime.now(UTC)
            detail = "the gateway stopped before this call finished; whether the backend ran it is unknown"
            futures = [
                self._enqueue(
                    OUTCOME,
                    call_id,
                    now,
                    outcome_payload("unknown", error_type="GatewayStopped", error_message=detail, recovered=True),
                    retry=False,
                )
                for call_id in orphans
            ]
            futures.append(
                self._enqueue(
                    RECOVERED,
                    None,
                    now,
                    {
                        "calls": len(orphans),
                        "call_ids": list(orphans[:100]),
                        "previous_head_seq": head_seq,
                        **({"closed_by": closing_for} if closing_for is not None else {}),
                    },
                    retry=False,
                )
            )
            await asyncio.gather(*futures)
            logger.warning(
                "audit: recorded outcome 'unknown' for calls a previous run left unfinished",
                extra={"replica_id": self._replica_id, "calls": len(orphans)},
            )
        return RecoveryReport(self._replica_id, head_seq, len(orphans), tuple(orphans))

    async def close(self) -> None:
        """Write everything queued, append a closing checkpoint, and stop the writer."""
        if self._writer is None or not self._running:
            return
        self._running = False
        if self._outcome_flush is not None:
            self._outcome_flush.cancel()
            self._outcome_flush = None
        self._wakeup.set()
        await self._writer
        async with self._write_lock:  # after a caller's inline write still under way
            final = [*self._retained, *self._queue]
            self._retained.clear()
            self._queue.clear()
            if final or self._head is None or self._head[0] != self._clean_close_seq:
                await self._write_batch(final, closing=True)
        if self._retained:
            logger.error(
                "audit: events could not be written before closing and are lost",
                extra={"replica_id": self._replica_id, "events": len(self._retained)},
            )
            self._retained.clear()
        if self._store is not None:
            await self._store.close()

    async def __aenter__(self) -> AuditRecorder:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    def write_only_while(self, claim_valid: Callable[[], bool]) -> None:
        """Write a batch only while `claim_valid()` says this process still holds its replica id.

        A process that stalled past its lease may find another process closing its chain, marking
        the calls it left open `unknown`; writing on would give such a call a second outcome. So
        batches are refused instead: calls are refused like any unrecordable call, and outcomes
        are kept for when the id is claimed again (never written if another process took it).
        """
        self._claim_valid = claim_valid

    # -- recording -------------------------------------------------------------------------

    async def record_call(
        self,
        call: Call,
        *,
        decision: str,
        policy_ids: Sequence[str] = (),
        reason: str | None = None,
        call_id: str | None = None,
        time: datetime | None = None,
    ) -> CallHandle:
        """Record `call` before it runs, with the decision taken on it; returns once the event is committed.

        Raises `AuditUnavailable` when the database does not take the write: refuse the call.
        """
        self._require_running()
        if call_id is not None and not 0 < len(call_id) <= 64:
            raise ValueError("call_id must be 1 to 64 characters")
        if time is not None and time.tzinfo is None:
            raise ValueError("time must carry a time zone")
        call_id = call_id or new_call_id()
        moment = time or datetime.now(UTC)
        redact = self._redactor
        origin = call.origin
        principal = origin.principal
        target = call.target
        data = {
            "request_id": request_id_value(origin.request_id),
            "agent": clean_text(principal.agent),
            "user": short_text(principal.user),
            "roles": [clean_text(role) for role in principal.roles],
            "auth_method": short_text(principal.auth_method),
            "credential_id": short_text(principal.credential_id),
            "session_id": short_text(origin.session_id),
            "workflow_id": short_text(call.workflow),
            "client": {"name": short_text(origin.client_name), "version": short_text(origin.client_version)},
            "protocol_version": short_text(origin.protocol_version),
            "method": clean_text(call.method),
            "name": short_text(call.name),
            "connector": short_text(target.connector) if target is not None else None,
            "original_name": short_text(target.original) if target is not None else None,
            "arguments": redact.redact_arguments(call.arguments, tool=call.name).as_json(),
            "reasoning": redact.redact_text(call.reasoning) if call.reasoning is not None else None,
            "decision": clean_text(decision),
            "policy_ids": [clean_text(policy_id) for policy_id in policy_ids],
            "reason": self._redacted_reason(reason) if reason is not None else None,
            "trace_id": _current_trace_id(),
        }
        inline = self._may_write_inline()
        written = self._enqueue(CALL, call_id, moment, data, retry=False, wake=not inline)
        if inline:
            await self._write_inline()
        seq = await written
        assert seq is not None
        self._open_calls.add(call_id)
        return CallHandle(call_id, self._replica_id, seq, moment, call.method, call.name)

    async def record_outcome(
        self,
        handle: CallHandle,
        *,
        outcome: str,
        result: bytes | Any = None,
        error: BaseException | None = None,
        timings: Timings | None = None,
        wait: bool = True,
    ) -> None:
        """Record how a call ended; returns once committed, or queued for retry if the write failed.

        With `wait=False` it returns at once: the outcome is queued in order behind the call and
        written with the next batch, so the agent does not wait for a second commit.

        `result` is what the agent received: bytes as sent, or a JSON-ready value (serialised
        canonically). Only its size and SHA-256 are kept, so the log can be matched against the
        agent's transcript without holding the data itself.

        `error` is what ended the call, if anything. Its class is kept, and its message only when
        it is one of the gateway's own (`GatewayError`), written to be read: any other exception's
        text can hold whatever its library put there (a connection string, a path).
        """
        if wait:
            data = self._outcome_data(handle, outcome, result, error, timings)
            await self._enqueue(OUTCOME, handle.call_id, datetime.now(UTC), data, retry=True)
            return
        self.queue_outcome(handle, outcome=outcome, result=result, error=error, timings=timings)

    def queue_outcome(
        self,
        handle: CallHandle,
        *,
        outcome: str,
        result: bytes | Any = None,
        error: BaseException | None = None,
        timings: Timings | None = None,
    ) -> None:
        """`record_outcome(..., wait=False)` without a coroutine: it can run after the agent has its answer."""
        data = self._outcome_data(handle, outcome, result, error, timings)
        # Not waited for: ride along with the next call's commit (one commit per call for a
        # sequential agent instead of two), or be written on its own shortly after.
        self._queue.append(_Pending(OUTCOME, handle.call_id, datetime.now(UTC), data, None, True))
        if self._outcome_flush is None:
            # One timer for all queued outcomes, from the oldest: a timer per outcome would fire,
            # for a busy sequential agent, between nearly every outcome and the next call, and
            # split each ride-along commit into two.
            self._outcome_flush = asyncio.get_running_loop().call_later(_OUTCOME_DELAY_SECONDS, self._flush_outcomes)

    def _outcome_data(
        self,
        handle: CallHandle,
        outcome: str,
        result: bytes | Any,
        error: BaseException | None,
        timings: Timings | None,
    ) -> dict[str, Any]:
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(sorted(OUTCOMES))}, not {outcome!r}")
        if handle.replica_id != self._replica_id or handle.call_id not in self._open_calls:
            raise ValueError(f"call {handle.call_id} is not open on this recorder (its outcome is already recorded?)")
        self._require_running()
        self._open_calls.discard(handle.call_id)
        size, digest = result_digest(result) if result is not None else (None, None)
        message = str(error) if isinstance(error, GatewayError) else None
        return outcome_payload(
            outcome,
            result_bytes=size,
            result_sha256=digest,
            timings=timings,
            error_type=short_text(type(error).__name__) if error is not None else None,
            error_message=self._redactor.redact_text(message, max_chars=4096) if message else None,
        )

    def _flush_outcomes(self) -> None:
        self._outcome_flush = None
        self._wakeup.set()

    async def record_auth_refused(
        self,
        reason: str,
        client_address: str | None,
        *,
        method: str | None = None,
        path: str | None = None,
        auth_method: str | None = None,
    ) -> None:
        """Record a refused authentication: why and from where, never the credential presented."""
        self._require_running()
        data = {
            "reason": self._redactor.redact_text(reason, max_chars=1024),
            "client_address": short_text(client_address),
            "method": short_text(method),
            "path": self._redactor.redact_text(path, max_chars=1024) if path else None,
            "auth_method": short_text(auth_method),
        }
        await self._enqueue(AUTH_REFUSED, None, datetime.now(UTC), data, retry=True)

    async def record_approval_event(
        self,
        approval_id: str,
        action: str,
        *,
        state: str,
        previous_state: str | None,
        actor: str | None,
        agent: str,
        user: str | None,
        tool: str,
        workflow: str | None = None,
        comment: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Record what happened to a held call's approval, who did it and what they said.

        Like outcomes, it describes something already committed (see `gateway.approvals.store`),
        so a failed write keeps it queued and retries it rather than losing it. `details` must
        be JSON values the caller already cleaned (counts, policy ids, digests), never arguments.
        """
        self._require_running()
        data = {
            "approval_id": approval_id,
            "action": short_text(action),
            "state": short_text(state),
            "previous_state": short_text(previous_state),
            "actor": short_text(actor),
            "agent": short_text(agent),
            "user": short_text(user),
            "tool": short_text(tool),
            "workflow_id": short_text(workflow),
            "comment": self._redactor.redact_text(comment, max_chars=4096) if comment else None,
            "details": dict(details) if details else None,
        }
        await self._enqueue(APPROVAL, None, datetime.now(UTC), data, retry=True)

    async def record_console_event(
        self,
        action: str,
        *,
        user: str,
        via: str | None = None,
        client_address: str | None = None,
        target: str | None = None,
        comment: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Record what a person did in the web console (`action`: sign_in, sign_out, decide, key_created...).

        `target` names what it was done to (an approval, a key, a user); `details` are JSON values
        the caller already cleaned, never secrets. Retried like approval events: it already happened.
        """
        self._require_running()
        data = {
            "action": short_text(action),
            "user": short_text(user),
            "via": short_text(via),
            "client_address": short_text(client_address),
            "target": short_text(target),
            "comment": self._redactor.redact_text(comment, max_chars=4096) if comment else None,
            "details": dict(details) if details else None,
        }
        await self._enqueue(CONSOLE, None, datetime.now(UTC), data, retry=True)

    async def record_suspension_event(
        self,
        action: str,
        *,
        agent: str,
        actor: str,
        reason: str | None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Record that `actor` suspended or resumed `agent` (`action`), and why.

        The suspension is already committed when this is called, so like approval events a
        failed write stays queued and is retried. `details` must be JSON values the caller
        already cleaned (the ids of the approvals the suspension cancelled, how it was done).
        """
        self._require_running()
        data = {
            "action": short_text(action),
            "agent": short_text(agent),
            "actor": short_text(actor),
            "reason": self._redactor.redact_text(reason, max_chars=4096) if reason else None,
            "details": dict(details) if details else None,
        }
        await self._enqueue(SUSPENSION, None, datetime.now(UTC), data, retry=True)

    async def record_tool_pin_event(
        self,
        action: str,
        *,
        connector: str,
        tool: str,
        exposed: str,
        actor: str,
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Record what happened to a tool's pinned definition (`action`: pinned, held, quarantined, accepted, restored).

        The change is already committed in the pin tables, so like approval events a failed write
        stays queued and is retried. `details` are digests and instruction flags, never secrets.
        """
        await self.record_tool_pin_events([ToolPinEvent(action, connector, tool, exposed, actor, reason, details)])

    async def record_tool_pin_events(self, events: Iterable[ToolPinEvent]) -> None:
        """Several at once, queued together and awaited together: a backend's first listing of
        thousands of tools waits for a few group commits, not one per tool."""
        self._require_running()
        moment = datetime.now(UTC)
        written = [
            self._enqueue(
                TOOL_PIN,
                None,
                moment,
                {
                    "action": short_text(event.action),
                    "connector": short_text(event.connector),
                    "tool": short_text(event.tool),
                    "exposed": short_text(event.exposed),
                    "actor": short_text(event.actor),
                    "reason": self._redactor.redact_text(event.reason, max_chars=4096) if event.reason else None,
                    "details": dict(event.details) if event.details else None,
                },
                retry=True,
            )
            for event in events
        ]
        await asyncio.gather(*written)

    # -- queue -----------------------------------------------------------------------------

    def _require_running(self) -> None:
        if not self._running:
            raise AuditUnavailable("the audit recorder is not running (not started, or shutting down)")

    def _enqueue(
        self, kind: str, call_id: str | None, moment: datetime, data: dict[str, Any], *, retry: bool, wake: bool = True
    ) -> asyncio.Future[int | None]:
        # asyncio: cancelling a caller cancels its future at once, so the writer never takes a call given up on.
        future: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(kind, call_id, moment, data, future, retry))
        if wake:
            self._wakeup.set()
        return future

    def _redacted_reason(self, reason: str) -> str:
        """A decision's reason, redacted once per distinct text: the same few reasons come back on every call."""
        redacted = self._reasons.get(reason)
        if redacted is None:
            redacted = remember(self._reasons, reason, self._redactor.redact_text(reason), limit=_REMEMBERED_REASONS)
        return redacted

    def _may_write_inline(self) -> bool:
        """Whether a call's entry can be written by its caller: nothing is being written, nothing retried.

        Then the caller's task takes the queue and writes it itself, sparing two task switches
        (waking the writer task, and the writer task waking the caller) on every lone call.
        """
        return self._running and not self._write_lock.locked() and not self._retained and self._head is not None

    async def _write_inline(self) -> None:
        # Shielded: a batch half written when its caller goes away would leave the chain's head
        # unknown. The write is bounded by `write_timeout`; a cancelled caller's call then does
        # not run, as when it is cancelled while the writer task writes its entry.
        with anyio.CancelScope(shield=True):
            async with self._write_lock:
                batch = self._take()
                if batch:
                    await self._write_batch(batch)
        if self._queue or self._retained:
            self._wakeup.set()  # queued meanwhile, or kept to retry: the writer task takes them

    async def _run(self) -> None:
        while (batch := await self._next_batch()) is not None:
            # One batch at a time, in the order taken: a caller writing inline holds the same lock.
            async with self._write_lock:
                await self._write_batch(batch)

    async def _next_batch(self) -> list[_Pending] | None:
        while not self._queue:
            if not self._running:
                return None
            self._wakeup = anyio.Event()
            if not self._retained:
                await self._wakeup.wait()
                continue
            delay = _RETRY_DELAYS[min(self._retry_attempt, len(_RETRY_DELAYS) - 1)]
            with anyio.move_on_after(delay) as retry_due:
                await self._wakeup.wait()
            if retry_due.cancelled_caught:
                return self._take()
        target = min(self._last_batch, self._max_batch)
        if self._max_wait and self._running and len(self._queue) < target:
            await self._linger(target)
        return self._take()

    async def _linger(self, target: int) -> None:
        with anyio.move_on_after(self._max_wait):
            while len(self._queue) < target and self._running:
                self._wakeup = anyio.Event()
                await self._wakeup.wait()

    def _take(self) -> list[_Pending]:
        batch = list(self._retained)
        self._retained.clear()
        while self._queue and len(batch) < self._max_batch:
            item = self._queue.popleft()
            if item.kind == CALL and item.future is not None and item.future.cancelled():
                continue  # the caller gave up before its call was recorded, so the call never runs
            batch.append(item)
        if not self._queue and self._outcome_flush is not None:
            self._outcome_flush.cancel()  # every queued outcome is in this batch
            self._outcome_flush = None
        return batch

    # -- writing ---------------------------------------------------------------------------

    async def _write_batch(self, batch: list[_Pending], *, closing: bool = False) -> None:
        store = self._store
        assert store is not None
        if self._claim_valid is not None and not self._claim_valid():
            lost = AuditUnavailable(
                f"this process's lease on its audit replica id {self._replica_id!r} ran out (a late heartbeat, "
                "or another process took the id); nothing is written until it is claimed again"
            )
            await self._write_failed(batch, lost, None)
            return
        reused = store.connected
        plan: _Plan | None = None

        async def attempt() -> _Plan:
            nonlocal plan
            # asyncio: its timeout cancels once, so a driver's clean-up (rollback) still runs; anyio's re-cancels it.
            async with asyncio.timeout(self._write_timeout):
                if self._head is None:
                    self._set_head(await store.load_head(self._replica_id))
                    self._reconcile(batch)
                if plan is not None and self._head == (plan.seq, plan.prev):
                    return plan  # the failed attempt had committed after all; write nothing twice
                plan = self._plan(batch, closing)
                if plan.rows:
                    await store.append(plan.rows)
            return plan

        started = time.perf_counter()
        try:
            try:
                written = await attempt()
            except _WRITE_FAILURES as error:
                if not (reused and store.connection_lost(error)):
                    raise
                # The connection kept since the last batch died meanwhile (database restart, idle
                # timeout on the server or a proxy): one more try on a fresh connection.
                self._head = None
                await store.reset()
                written = await attempt()
        except _WRITE_FAILURES as error:
            await self._write_failed(batch, error, plan)
            return
        except Exception as error:
            # The writer is the boundary between callers and storage: whatever goes wrong here
            # must reach the callers as a refusal, and must not stop the writer for later calls.
            logger.exception("audit: unexpected error while writing a batch", extra={"replica_id": self._replica_id})
            await self._write_failed(batch, error, plan)
            return
        except BaseException:
            # Cancelled mid-write (a task cancelled outright, which no shield stops): as a failed
            # write, but without awaiting anything more in a task that is being cancelled.
            self._interrupted(batch, plan)
            raise
        self._head = (written.seq, written.prev)
        if self._on_batch is not None and written.rows:
            self._on_batch(len(written.rows), time.perf_counter() - started)
        self._since_checkpoint = written.since
        if closing:
            self._clean_close_seq = written.seq
        self._retry_attempt = 0
        self._last_batch = max(1, len(batch))
        self._count(len(written.rows))
        for item, item_seq in zip(batch, written.assigned):
            if item.future is None:
                continue
            if not item.future.done():
                item.future.set_result(item_seq)
            elif item.kind == CALL and item.future.cancelled():
                # The caller gave up while its call was being written, so the call never ran:
                # say so rather than leave the call open.
                data = outcome_payload(
                    "cancelled", error_type="Cancelled", error_message="cancelled while the call was being recorded"
                )
                self._queue.append(_Pending(OUTCOME, item.call_id, datetime.now(UTC), data, None, True))

    def _interrupted(self, batch: list[_Pending], plan: _Plan | None) -> None:
        """What `_write_failed` does, synchronously: the next batch reloads the head, which also
        tells whether this one committed after all (see `_reconcile`)."""
        self._forget(batch, plan, _INTERRUPTED_LATE)
        self._release(batch, "the audit write was interrupted, so the call is refused")

    def _forget(self, batch: list[_Pending], plan: _Plan | None, late: str) -> None:
        """Whatever `batch` did is not part of the chain: reload the head before writing again."""
        self._head = None
        if plan is not None and plan.rows:
            self._uncertain = (plan.seq, plan.prev, batch, late)
        self._counters.failed_batches += 1

    def _release(self, batch: list[_Pending], refusal: str) -> None:
        """The waiters of a failed batch: what already happened is kept for the retry, calls are refused."""
        for item in batch:
            if item.retry:
                if len(self._retained) < _MAX_RETAINED:
                    self._retained.append(item)
                else:
                    self._counters.dropped += 1
                if item.future is not None and not item.future.done():
                    item.future.set_result(None)
            elif item.future is not None and not item.future.done():
                item.future.set_exception(AuditUnavailable(refusal))
                item.future.exception()  # retrieved here: its caller may have been cancelled meanwhile

    def _reconcile(self, batch: list[_Pending]) -> None:
        """After a reload: if the last failed batch committed after all, make `batch` say so.

        A write can fail on the event loop's side (the write timeout) while the database still
        commits it. Its calls were refused, so their events must not stand as calls that ran:
        each gets the outcome `refused`. Its outcomes are in the log already, so they leave
        `batch` instead of being written twice.
        """
        if self._uncertain is None:
            return
        seq, prev, failed, detail = self._uncertain
        self._uncertain = None
        if self._head != (seq, prev):
            return  # it did not commit: nothing of it is in the chain
        written = {id(item) for item in failed}
        batch[:] = [item for item in batch if id(item) not in written]
        refused = outcome_payload("refused", error_type="AuditUnavailable", error_message=detail)
        now = datetime.now(UTC)
        batch[:0] = [_Pending(OUTCOME, item.call_id, now, refused, None, True) for item in failed if item.kind == CALL]
        logger.warning(
            "audit: a batch reported as failed was committed; its calls are recorded as refused",
            extra={"replica_id": self._replica_id, "events": len(failed)},
        )

    def _plan(self, batch: list[_Pending], closing: bool) -> _Plan:
        """The rows for `batch` after the current head, with checkpoints where they fall due."""
        assert self._head is not None
        seq, prev = self._head
        since = self._since_checkpoint
        rows: list[Row] = []
        assigned: list[int] = []
        for item in batch:
            seq += 1
            rows.append(self._row(seq, prev, item.kind, item.call_id, item.time, item.data))
            assigned.append(seq)
            prev = rows[-1][_HASH]
            since += 1
            if since >= self._checkpoint_every:
                seq += 1
                rows.append(self._checkpoint_row(seq, prev, "interval"))
                prev = rows[-1][_HASH]
                since = 0
        if closing and seq != self._clean_close_seq:
            seq += 1
            rows.append(self._checkpoint_row(seq, prev, "close"))
            prev = rows[-1][_HASH]
            since = 0
        return _Plan(rows, assigned, seq, prev, since)

    async def _write_failed(self, batch: list[_Pending], error: BaseException, plan: _Plan | None) -> None:
        self._forget(batch, plan, _TIMED_OUT_LATE)
        self._retry_attempt += 1
        if self._store is not None:
            await self._store.reset()
        logger.warning("audit: write failed", extra={"replica_id": self._replica_id, "error": _describe(error)})
        self._release(batch, f"the audit log could not record the event, so the call is refused: {_describe(error)}")

    def _row(self, seq: int, prev: str, kind: str, call_id: str | None, moment: datetime, data: dict[str, Any]) -> Row:
        content = event_content(
            replica_id=self._replica_id, seq=seq, kind=kind, time=moment, call_id=call_id, data=data
        )
        return (
            self._replica_id,
            seq,
            kind,
            moment,
            call_id,
            *map(index_columns(kind, data).__getitem__, _INDEXED),
            prev,
            chain_hash(prev, content),
            content.decode("utf-8"),
        )

    def _checkpoint_row(self, seq: int, prev: str, reason: str) -> Row:
        moment = datetime.now(UTC)
        covered = seq - 1
        signature = None
        if self._signing_key is not None:
            statement = checkpoint_statement(
                replica_id=self._replica_id, seq=covered, hash=prev, time=isoformat(moment)
            )
            signature = sign(self._signing_key, statement)
        data = {
            "seq": covered,
            "hash": prev,
            "reason": reason,
            "open_calls": len(self._open_calls),
            "signature": signature,
            "key_id": self._key_id,
        }
        return self._row(seq, prev, CHECKPOINT, None, moment, data)

    def _count(self, events: int) -> None:
        counters = self._counters
        counters.batches += 1
        counters.events += events
        counters.recent.append(events)
        bucket = 1
        while bucket < events:
            bucket *= 2
        counters.histogram[bucket] = counters.histogram.get(bucket, 0) + 1

    # -- reading the chain -----------------------------------------------------------------

    def _set_head(self, head: ChainHead) -> None:
        self._head = (head.seq, head.hash)
        self._since_checkpoint = head.since_checkpoint

    async def _orphan_calls(self, connection: AsyncConnection) -> list[str]:
        """This replica's calls without an outcome, after its last clean close."""
        table = AuditEventRow.__table__
        clean_close = 0
        below: int | None = None
        while not clean_close:
            query = select(table.c.seq, table.c.content).where(
                table.c.replica_id == self._replica_id, table.c.kind == CHECKPOINT
            )
            if below is not None:
                query = query.where(table.c.seq < below)
            page = (await connection.execute(query.order_by(table.c.seq.desc()).limit(100))).all()
            for row in page:
                data = orjson.loads(row.content).get("data", {})
                if data.get("reason") == "close" and data.get("open_calls") == 0:
                    clean_close = row.seq
                    break
            if len(page) < 100:
                break
            below = page[-1].seq
        if self._head is not None and self._head[0] == clean_close:
            self._clean_close_seq = clean_close
        outcome = aliased(AuditEventRow.__table__)
        orphans = await connection.execute(
            select(table.c.call_id)
            .where(
                table.c.replica_id == self._replica_id,
                table.c.kind == CALL,
                table.c.seq > clean_close,
                ~exists().where(and_(outcome.c.call_id == table.c.call_id, outcome.c.kind == OUTCOME)),
            )
            .order_by(table.c.seq)
        )
        return [call_id for (call_id,) in orphans]


def _describe(error: BaseException) -> str:
    if isinstance(error, AuditUnavailable):
        return str(error)  # already says what happened, in the gateway's words
    if isinstance(error, DBAPIError) and error.orig is not None:
        error = error.orig
    if isinstance(error, TimeoutError):
        return "the database did not answer in time"
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


#: Why a call whose entry was committed after its write was given up on did not run (see `_reconcile`).
_TIMED_OUT_LATE = "the audit write did not finish in time, so the call was refused; the event was committed late"
_INTERRUPTED_LATE = "the call was cancelled while its audit entry was written, so it did not run; the entry committed"

#: Distinct decision reasons whose redaction is kept before the memory starts over.
_REMEMBERED_REASONS = 1024

#: How long an outcome nobody waits for may wait for a call's commit to ride along with.
_OUTCOME_DELAY_SECONDS = 0.05


def _current_trace_id() -> str | None:
    """The trace the call's request span belongs to (32 hex), so the audit entry leads to the trace; None untraced."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None
