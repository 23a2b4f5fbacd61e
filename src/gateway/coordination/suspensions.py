"""The kill switch: an operator suspends an agent, and every request of it is refused until resumed.

A suspension is a row in the database (`agent_suspensions`), so it survives restarts and every
replica sees it; each process keeps the suspensions in force in memory (`suspended_agents`) and
refuses a suspended agent's requests with a set lookup. Suspending also cancels the agent's
pending approvals (held calls and questions to people alike), so a held call waiting in any
process ends at once with the reason, woken by the approvals' own signal.

The order of a suspension is chosen so the agent is stopped first and explained after: the row
is committed, the other processes are signalled (`agent_suspensions`) so they refuse its next
request now rather than at their next poll, then its pending approvals are cancelled, then the
audit event is written. A crash after the commit leaves the agent suspended (the row is the
record of truth, as for approvals); its approvals are then left for their approvers or expiry.

A suspension may name an agent the gateway has never seen: it is refused from its first request.
Its API keys are not touched, so resuming restores exactly the access it had.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import RowMapping, Table, select, update
from sqlalchemy.exc import IntegrityError

from gateway.approvals import ApprovalState, ApprovalStore, uuid7
from gateway.audit.recorder import AuditRecorder
from gateway.errors import (
    AgentAlreadySuspended,
    AgentNotSuspended,
    AgentSuspended,
    ApprovalConflict,
    AuditUnavailable,
    GatewayError,
    InvalidSuspension,
)
from gateway.signals import Signals
from gateway.storage.database import Database
from gateway.storage.tables import ACTIVE_SUSPENSION, AgentSuspensionRow

logger = logging.getLogger(__name__)

#: The signal channel of suspensions and resumptions; the payload is `{"agent": name}`.
CHANNEL = "agent_suspensions"
#: Longest agent name a suspension takes: the longest the audit log and approvals keep.
MAX_AGENT_CHARS = 256
#: Longest reason kept: the agent hears it whole in every refusal, so it stays a sentence or a few.
MAX_REASON_CHARS = 2000

_SUSPENSIONS = cast(Table, AgentSuspensionRow.__table__)
#: How many of an agent's pending approvals are read at a time while cancelling them.
_CANCEL_PAGE = 200


def _now() -> datetime:
    return datetime.now(UTC)


def when(moment: datetime) -> str:
    """A moment as agents and operators read it: UTC to the second, `2026-12-14T09:30:05Z`."""
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Suspension:
    """One suspension as stored: who stopped which agent, when and why, and whether it was resumed."""

    id: str
    agent: str
    suspended_by: str
    suspended_at: datetime
    reason: str
    resumed_by: str | None = None
    resumed_at: datetime | None = None
    resume_comment: str | None = None

    @property
    def active(self) -> bool:
        return self.resumed_at is None

    def describe(self) -> str:
        """`suspended by maria at 2026-12-14T09:30:05Z: runaway refunds`: the words every refusal uses."""
        return f"suspended by {self.suspended_by} at {when(self.suspended_at)}: {self.reason}"

    def refusal(self) -> AgentSuspended:
        """What every request of the suspended agent is answered with."""
        return AgentSuspended(
            f"denied: agent '{self.agent}' is {self.describe()}. Every request of this agent is refused until "
            "an operator resumes it; ask the gateway's operators."
        )


@dataclass(frozen=True, slots=True)
class Suspended:
    """What suspending did: the suspension in force, and the pending approvals it cancelled."""

    suspension: Suspension
    cancelled_approvals: tuple[str, ...]


class SuspensionStore:
    """Suspensions in the gateway database, and what suspending and resuming do beside the row.

    `approvals` is the store whose pending approvals a suspension cancels (None: no approvals
    are kept, so there are none to cancel); `recorder` audits each suspension and resumption;
    `signals` tells the other gateway processes at once (they also poll, so a lost signal only
    delays them by their poll interval). Every action names who does it (`actor`).
    """

    def __init__(
        self,
        database: Database,
        *,
        recorder: AuditRecorder | None = None,
        approvals: ApprovalStore | None = None,
        signals: Signals | None = None,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self._db = database
        self._recorder = recorder
        self._approvals = approvals
        self._signals = signals
        self._clock = clock

    async def suspend(
        self, agent: str, *, actor: str, reason: str, details: Mapping[str, Any] | None = None
    ) -> Suspended:
        """Suspend `agent` now; `details` (how it was done: the console, the command line) go in the audit event.

        Raises `AgentAlreadySuspended` (saying by whom, when and why) when a suspension is in force.
        """
        agent, reason = _checked(agent, reason)
        moment = self._clock()
        suspension = Suspension(str(uuid7(moment)), agent, actor, moment, reason)
        row = {
            "id": suspension.id,
            "agent": agent,
            "suspended_by": actor,
            "suspended_at": moment,
            "reason": reason,
        }
        try:
            async with self._db.session() as session, session.begin():
                await session.execute(_SUSPENSIONS.insert().values(**row))
        except IntegrityError:
            current = await self.current(agent)
            said = f" ({current.describe()})" if current is not None else ""
            raise AgentAlreadySuspended(
                f"agent '{agent}' is already suspended{said}; resume it first to suspend it for another reason"
            ) from None
        await self._signal(agent)
        cancelled = await self._cancel_pending(agent, actor=actor, reason=reason)
        await self._audit(
            "suspended", suspension, actor=actor, reason=reason, details={**(details or {}), "cancelled": cancelled}
        )
        return Suspended(suspension, tuple(cancelled))

    async def resume(
        self, agent: str, *, actor: str, comment: str | None = None, details: Mapping[str, Any] | None = None
    ) -> Suspension:
        """End `agent`'s suspension; it is served again from its next request. Returns the ended suspension.

        Raises `AgentNotSuspended` when none is in force.
        """
        statement = (
            update(_SUSPENSIONS)
            .where(_SUSPENSIONS.c.agent == agent, ACTIVE_SUSPENSION)
            .values(resumed_by=actor, resumed_at=self._clock(), resume_comment=comment or None)
            .returning(*_SUSPENSIONS.c)
        )
        async with self._db.session() as session, session.begin():
            found = (await session.execute(statement)).mappings().first()
        if found is None:
            raise AgentNotSuspended(f"agent '{agent}' is not suspended, so there is nothing to resume")
        resumed = _suspension(found)
        await self._signal(agent)
        await self._audit(
            "resumed", resumed, actor=actor, reason=comment, details={**(details or {}), "suspension": resumed.id}
        )
        return resumed

    async def current(self, agent: str) -> Suspension | None:
        """The suspension of `agent` in force, or None."""
        query = select(_SUSPENSIONS).where(_SUSPENSIONS.c.agent == agent, ACTIVE_SUSPENSION)
        found = await self._select(query)
        return found[0] if found else None

    async def active(self) -> builtins.list[Suspension]:
        """Every suspension in force, oldest first: what each process keeps in memory."""
        return await self._select(select(_SUSPENSIONS).where(ACTIVE_SUSPENSION).order_by(_SUSPENSIONS.c.suspended_at))

    async def history(self, *, agent: str | None = None, limit: int = 50) -> builtins.list[Suspension]:
        """Suspensions, resumed ones included, newest first (`agent`: only that agent's)."""
        query = select(_SUSPENSIONS)
        if agent is not None:
            query = query.where(_SUSPENSIONS.c.agent == agent)
        newest_first = query.order_by(_SUSPENSIONS.c.suspended_at.desc(), _SUSPENSIONS.c.id.desc())
        return await self._select(newest_first.limit(limit))

    async def _select(self, query: Any) -> builtins.list[Suspension]:
        async with self._db.session() as session:
            return [_suspension(row) for row in (await session.execute(query)).mappings().all()]

    async def _cancel_pending(self, agent: str, *, actor: str, reason: str) -> builtins.list[str]:
        """Cancel every pending approval of `agent`, with the suspension's reason; the ids cancelled.

        One decided meanwhile (a race with its approvers) is left as they decided it. An approved
        call not yet collected cannot be cancelled; the agent, suspended, cannot collect it.
        """
        if self._approvals is None:
            return []
        cancelled: builtins.list[str] = []
        cursor: str | None = None
        while True:
            page = await self._approvals.list(
                state=ApprovalState.PENDING, agent=agent, limit=_CANCEL_PAGE, cursor=cursor
            )
            for approval in page.approvals:
                try:
                    await self._approvals.cancel(approval.id, actor=actor, comment=reason)
                except ApprovalConflict:
                    continue
                cancelled.append(approval.id)
            if page.next_cursor is None:
                return cancelled
            cursor = page.next_cursor

    async def _signal(self, agent: str) -> None:
        """Tell every gateway process to read the suspensions now; failing to is logged: they also poll."""
        if self._signals is None:
            return
        try:
            await self._signals.publish(CHANNEL, {"agent": agent})
        except GatewayError as exc:
            logger.warning(
                "suspension not signalled to other processes; they find it at their next poll",
                extra={"agent": agent, "error": str(exc)},
            )

    async def _audit(
        self, action: str, suspension: Suspension, *, actor: str, reason: str | None, details: Mapping[str, Any]
    ) -> None:
        if self._recorder is None:
            return
        try:
            await self._recorder.record_suspension_event(
                action, agent=suspension.agent, actor=actor, reason=reason, details=details
            )
        except AuditUnavailable as error:
            # Committed, and it stays: the row is the record of truth for suspensions.
            logger.error("agent %s: %s was committed but not audited: %s", suspension.agent, action, error)


def _checked(agent: str, reason: str) -> tuple[str, str]:
    agent, reason = agent.strip(), reason.strip()
    if not agent or len(agent) > MAX_AGENT_CHARS or not agent.isprintable():
        raise InvalidSuspension(
            f"name the agent to suspend: 1 to {MAX_AGENT_CHARS} printable characters, as it authenticates"
        )
    if not reason:
        raise InvalidSuspension("give a reason for the suspension: the agent is told it with every refusal")
    if len(reason) > MAX_REASON_CHARS:
        raise InvalidSuspension(f"the reason is {len(reason)} characters; keep it to {MAX_REASON_CHARS}")
    return agent, reason


def _suspension(row: Mapping[str, Any] | RowMapping) -> Suspension:
    return Suspension(
        id=row["id"],
        agent=row["agent"],
        suspended_by=row["suspended_by"],
        suspended_at=_aware(row["suspended_at"]),
        reason=row["reason"],
        resumed_by=row["resumed_by"],
        resumed_at=_aware(row["resumed_at"]) if row["resumed_at"] is not None else None,
        resume_comment=row["resume_comment"],
    )


def _aware(value: datetime) -> datetime:
    """Core queries bypass `UtcDateTime` on some drivers' paths; times are aware UTC either way."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
