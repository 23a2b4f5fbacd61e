"""Record locks: calls that change the same record of a backend run one at a time.

A connector file names a tool's lock key, one or more argument paths:

    [tools.update_record]
    lock = "args.record_id"          # or ["args.account", "args.record_id"], or "args.order.id"
    lock_wait = 10                   # seconds a call may wait for the lock (0: refuse at once)

Calls of one connector whose lock arguments have the same values hold the same lock, whichever
of its tools they call: `update_record` and `delete_record` locked on `args.record_id` exclude
each other for one record and leave every other record alone. An argument a call leaves out
counts as `null`, so such calls share one lock rather than escaping it.

The lock is a lease in the database (`record_locks`, through `gateway.storage.leases`), not
process memory, so it holds across agents, worker processes and replicas. The pipeline takes it
after the call was decided (and approved, when held) and releases it when the backend call ends,
however it ends. While the call runs this process renews the lease every third of `lock_lease`;
a gateway that dies stops renewing, and once the lease runs out the next call takes it over.

A call that finds the lock held waits without polling hot: a release in this process rings its
waiters at once, a release in another one reaches them by the signal `record_lock_released`
(PostgreSQL NOTIFY; payload `{"key": digest}`), and each waiter also looks again every
`poll_interval` seconds and when the holder's lease runs out, since signals are best effort and
SQLite's never leave their process. While it waits it sends progress notifications when its
client asked for them. Past `lock_wait` it is refused (`RecordLocked`), naming the holder's
agent, workflow and tool and since when it holds the lock: nothing ran, and it may be retried.

A call whose tool has no lock costs a dictionary lookup or two (`RecordLocks.held`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import anyio
import anyio.abc
import anyio.lowlevel
from sqlalchemy import Table, delete, select
from sqlalchemy.exc import SQLAlchemyError

from gateway.approvals.wakeups import Waiter
from gateway.calls import Call
from gateway.connectors.base import ProgressCallback
from gateway.errors import GatewayError, RecordLocked
from gateway.settings.connectors import ConnectorBase
from gateway.signals import Signals
from gateway.storage.database import Database
from gateway.storage.leases import Lease, LeaseHolder
from gateway.storage.tables import RecordLockRow

logger = logging.getLogger(__name__)

#: The `record_locks` table, typed as the Core table it is.
RECORD_LOCKS = cast(Table, RecordLockRow.__table__)
#: The signal channel of released locks.
CHANNEL = "record_lock_released"
#: Seconds between a waiting call's own looks at the lock, whatever rings it.
DEFAULT_POLL_INTERVAL = 1.0
#: Seconds between progress notifications to a waiting call's client.
PROGRESS_INTERVAL = 5.0
#: Releases waiting to be signalled; past this many (the database unreachable for long) the newest are dropped.
MAX_QUEUED = 1000
#: A lease that ran out this long ago belongs to nobody: its row is deleted by the next sweep.
_STALE_AFTER = timedelta(minutes=1)
_SWEEP_INTERVAL = 60.0
#: Longest holder text kept (agent, workflow, tool names).
_COLUMN_CHARS = 256

_NOT_LOCKED: AbstractAsyncContextManager[None] = contextlib.nullcontext()


@dataclass(frozen=True, slots=True)
class LockSpec:
    """One tool's record lock, as its connector file declares it."""

    connector: str
    tool: str
    #: The paths as written (`args.order.id`), and each one's property names inside the arguments.
    paths: tuple[str, ...]
    steps: tuple[tuple[str, ...], ...]
    wait: float
    lease: float

    @classmethod
    def of(cls, connector: str, tool: str, paths: Iterable[str], *, wait: float, lease: float) -> LockSpec:
        written = tuple(paths)
        return cls(connector, tool, written, tuple(tuple(p.split(".")[1:]) for p in written), wait, lease)

    def key(self, arguments: Any) -> str:
        """The lock's id for these arguments: a digest of the connector and the values at the lock's paths."""
        values = [_value_at(arguments, steps) for steps in self.steps]
        text = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
        return hashlib.sha256(f"{self.connector}\0{text}".encode()).hexdigest()

    def describe(self) -> str:
        """How a person names the lock: `crm record (args.record_id)`, never the values (they may be redacted)."""
        return f"the lock on '{self.connector}' records by {', '.join(self.paths)}"


@dataclass(frozen=True, slots=True)
class LockHolder:
    """Who holds a record lock: what an agent refused by it is told, and what a workflow's status shows."""

    connector: str
    tool: str
    agent: str
    workflow: str | None
    since: datetime
    expires_at: datetime

    @classmethod
    def of(cls, holder: LeaseHolder) -> LockHolder:
        details = holder.details
        return cls(
            connector=str(details.get("connector", "")),
            tool=str(details.get("tool", "")),
            agent=str(details.get("agent", "")),
            workflow=details.get("workflow"),
            since=holder.acquired_at or holder.heartbeat_at,
            expires_at=holder.expires_at,
        )

    def describe(self) -> str:
        workflow = f"workflow '{self.workflow}'" if self.workflow else "no workflow"
        return f"agent '{self.agent}' ({workflow}, tool '{self.tool}') since {_when(self.since)}"


@dataclass(slots=True)
class _Held:
    """A lock this process holds for a running call, and when its lease is next renewed (monotonic)."""

    lease: Lease
    spec: LockSpec
    renew_at: float


def lock_specs(connectors: Iterable[ConnectorBase]) -> dict[str, dict[str, LockSpec]]:
    """Per connector, per backend tool name, the tools whose connector file names a lock."""
    specs: dict[str, dict[str, LockSpec]] = {}
    for connector in connectors:
        for tool, override in connector.tools.items():
            if override.lock:
                specs.setdefault(connector.name, {})[tool] = LockSpec.of(
                    connector.name, tool, override.lock, wait=override.lock_wait, lease=override.lock_lease
                )
    return specs


class RecordLocks:
    """The record locks of one gateway process: taken around backend calls, renewed, released, waited for.

    `run` (in the process's task group) renews the held locks, signals releases to the other
    processes and rings the waiters here for theirs.
    """

    def __init__(
        self,
        database: Database,
        connectors: Iterable[ConnectorBase],
        signals: Signals | None = None,
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> None:
        self._db = database
        self._specs = lock_specs(connectors)
        self._signals = signals
        self._poll_interval = poll_interval
        self._waiters: dict[str, set[Waiter]] = {}
        self._held: dict[int, _Held] = {}
        self._renewals_changed = anyio.Event()
        self._queue: deque[str] = deque()
        self._queued = anyio.Event()

    @property
    def configured(self) -> bool:
        """Whether any tool has a lock: without, nothing here runs."""
        return bool(self._specs)

    def spec_of(self, connector: str, tool: str) -> LockSpec | None:
        tools = self._specs.get(connector)
        return tools.get(tool) if tools is not None else None

    def held(self, call: Call, on_progress: ProgressCallback | None = None) -> AbstractAsyncContextManager[None]:
        """Hold `call`'s record lock for the block, when its tool names one; else nothing at all.

        Raises `RecordLocked` (entering) when the lock stays held by another call past `lock_wait`.
        """
        if not self._specs or call.method != "tools/call":
            return _NOT_LOCKED
        target = call.target
        tools = self._specs.get(target.connector) if target is not None else None
        if tools is None:
            return _NOT_LOCKED
        assert target is not None
        spec = tools.get(target.original)
        if spec is None:
            return _NOT_LOCKED
        return self._holding(spec, call, on_progress)

    async def holders(self, *, workflow: str | None = None) -> list[LockHolder]:
        """The record locks held now (by live holders), oldest first; only `workflow`'s when given."""
        query = select(RECORD_LOCKS).where(RECORD_LOCKS.c.expires_at > datetime.now(UTC))
        if workflow is not None:
            query = query.where(RECORD_LOCKS.c.workflow == workflow)
        async with self._db.session() as session:
            rows = (await session.execute(query.order_by(RECORD_LOCKS.c.acquired_at))).mappings().all()
        columns = ("connector", "tool", "agent", "workflow", "acquired_at", "expires_at")
        return [LockHolder(*(row[column] for column in columns)) for row in rows]

    # -- one call's lock --------------------------------------------------------------------------

    @asynccontextmanager
    async def _holding(self, spec: LockSpec, call: Call, on_progress: ProgressCallback | None) -> AsyncIterator[None]:
        lease = await self._acquire(spec, call, on_progress)
        held = _Held(lease, spec, anyio.current_time() + lease.seconds / 3)
        self._held[id(held)] = held
        self._renewals_changed.set()
        try:
            yield
        finally:
            del self._held[id(held)]
            # Shielded: a call cancelled by its client must still free the record for the next one.
            with anyio.CancelScope(shield=True):
                try:
                    await lease.release()
                except (GatewayError, SQLAlchemyError) as exc:
                    logger.warning(
                        "record lock not released; it runs out by itself",
                        extra={"connector": spec.connector, "tool": call.name, "error": str(exc)},
                    )
                else:
                    self._released(lease.key)

    async def _acquire(self, spec: LockSpec, call: Call, on_progress: ProgressCallback | None) -> Lease:
        """Take the lock, waiting up to `spec.wait` for its holder to release it or to die."""
        key = spec.key(call.arguments)
        lease = Lease(db=self._db, table=RECORD_LOCKS, key=key, seconds=spec.lease, details=_details(spec, call))
        started = anyio.current_time()
        deadline = started + spec.wait
        next_progress = started
        step = 0
        with self._waiting(key) as waiter:
            while True:
                with anyio.CancelScope(shield=True):  # a take committed must be known, to be released
                    holder = await lease.take()
                if lease.held:
                    return lease
                await anyio.lowlevel.checkpoint()  # a cancelled request stops waiting here
                if holder is None:
                    continue  # released between the two statements: take it now
                now = anyio.current_time()
                if now >= deadline:
                    raise RecordLocked(_refusal(spec, call, LockHolder.of(holder), now - started))
                if on_progress is not None and now >= next_progress:
                    waiting = f"waiting for {spec.describe()}, held by {LockHolder.of(holder).describe()}"
                    await on_progress(float(step), None, waiting)
                    step += 1
                    next_progress = now + PROGRESS_INTERVAL
                runs_out_in = max((holder.expires_at - datetime.now(UTC)).total_seconds(), 0.0) + 0.05
                wake_at = min(deadline, now + self._poll_interval, now + runs_out_in)
                if on_progress is not None:
                    wake_at = min(wake_at, next_progress)
                await waiter.wait(wake_at - now)

    @contextlib.contextmanager
    def _waiting(self, key: str) -> Any:
        """A waiter rung by every release of `key` (here, or signalled from elsewhere) until the block ends."""
        waiter = Waiter()
        self._waiters.setdefault(key, set()).add(waiter)
        try:
            yield waiter
        finally:
            waiters = self._waiters.get(key)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[key]

    def _wake(self, key: str) -> None:
        for waiter in tuple(self._waiters.get(key, ())):
            waiter.ring()

    def _released(self, key: str) -> None:
        """Ring the waiters here at once, and queue the signal for the other processes'."""
        self._wake(key)
        if self._signals is None:
            return
        if len(self._queue) >= MAX_QUEUED:
            logger.warning("record lock release not signalled: too many queued; other processes poll for it")
            return
        self._queue.append(key)
        self._queued.set()

    # -- in the background ------------------------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Renew held locks, signal releases and hear other processes' ones; until cancelled."""
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._renew)
            tasks.start_soon(self._sweep_stale)
            if self._signals is not None:
                await tasks.start(self._listen, self._signals)
                tasks.start_soon(self._send_queued, self._signals)
            task_status.started()

    async def _renew(self) -> None:
        """Push on the lease of every lock held here, each a third of its length before it would run out."""
        while True:
            now = anyio.current_time()
            for held in [held for held in self._held.values() if held.renew_at <= now]:
                try:
                    kept = await held.lease.renew()
                except (GatewayError, SQLAlchemyError) as exc:
                    logger.warning(
                        "record lock not renewed; will retry",
                        extra={"connector": held.spec.connector, "tool": held.spec.tool, "error": str(exc)},
                    )
                    held.renew_at = anyio.current_time() + min(1.0, held.lease.seconds / 6)
                    continue
                if not kept:
                    # This process stalled past the lease and another call took the record: say so loudly.
                    logger.error(
                        "record lock lost while its call ran: the lease ran out before it was renewed and "
                        "another call may have taken the record; raise lock_lease for this tool",
                        extra={"connector": held.spec.connector, "tool": held.spec.tool},
                    )
                    held.renew_at = float("inf")
                    continue
                held.renew_at = anyio.current_time() + held.lease.seconds / 3
            next_at = min((held.renew_at for held in self._held.values()), default=float("inf"))
            with anyio.move_on_after(max(next_at - anyio.current_time(), 0.0)):
                await self._renewals_changed.wait()
            self._renewals_changed = anyio.Event()

    async def _sweep_stale(self) -> None:
        """Delete locks whose holders died long ago and whose records nobody called since: the table stays small."""
        while True:
            await anyio.sleep(_SWEEP_INTERVAL)
            try:
                async with self._db.session() as session, session.begin():
                    await session.execute(
                        delete(RECORD_LOCKS).where(RECORD_LOCKS.c.expires_at < datetime.now(UTC) - _STALE_AFTER)
                    )
            except (GatewayError, SQLAlchemyError) as exc:
                logger.warning("stale record locks not swept; will retry", extra={"error": str(exc)})

    async def _listen(self, signals: Signals, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        async with signals.subscribe(CHANNEL) as subscription:
            task_status.started()
            async for signal in subscription:
                key = signal.payload.get("key")
                if not signal.local and isinstance(key, str):
                    self._wake(key)

    async def _send_queued(self, signals: Signals) -> None:
        while True:
            await self._queued.wait()
            self._queued = anyio.Event()
            while self._queue:
                key = self._queue.popleft()
                try:
                    await signals.publish(CHANNEL, {"key": key})
                except GatewayError as exc:  # the waiters elsewhere find it free at their next look
                    logger.warning("record lock release not signalled to other processes", extra={"error": str(exc)})


def _value_at(arguments: Any, steps: tuple[str, ...]) -> Any:
    value = arguments
    for step in steps:
        if not isinstance(value, Mapping):
            return None
        value = value.get(step)
    return value


def _details(spec: LockSpec, call: Call) -> dict[str, Any]:
    """Who takes the lock, written with the lease so a call refused by it (or a workflow's status) can say."""
    workflow = call.workflow or call.origin.session_id
    return {
        "connector": spec.connector,
        "tool": (call.name or spec.tool)[:_COLUMN_CHARS],
        "agent": call.principal.agent[:_COLUMN_CHARS],
        "workflow": workflow[:_COLUMN_CHARS] if workflow else None,
    }


def _refusal(spec: LockSpec, call: Call, holder: LockHolder, waited: float) -> str:
    return (
        f"'{call.name}' did not run: {spec.describe()} is held for the same record by {holder.describe()}, "
        f"and was not released within {waited:.1f} s (lock_wait {spec.wait:g} s). Nothing was sent to the "
        "backend; retry the call once that work is done."
    )


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
