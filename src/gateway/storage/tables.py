"""The gateway's tables, declared once for the application and for Alembic.

Every table hangs off the one `Base`, so migrations see the whole schema in `Base.metadata`.
Constraint and index names follow a fixed convention: Alembic's SQLite batch mode recreates
tables and must find constraints by name, and the same name on SQLite and PostgreSQL keeps one
set of hand-written migrations valid for both.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    text,
)
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


#: Columns searched by equality that most events leave empty (every outcome, and calls without
#: a user or workflow): indexed only where set.
AUDIT_SEARCH_COLUMNS = ("agent", "user_id", "tool", "workflow_id")


def _present_only(column: str) -> Index:
    """An index of `column` and time over the events that have the column (a partial index).

    Each commit writes every index page it touches to the write-ahead log before its fsync; an
    empty column would put every outcome's entry in the index's separate run of NULLs, one more
    page per index and commit, for searches that never ask for NULL.
    """
    present = text(f"{column} IS NOT NULL")
    return Index(f"ix_audit_events_{column}_time", column, "time", sqlite_where=present, postgresql_where=present)


class AuditEventRow(Base):
    """One immutable audit event, a link in its writer's hash chain (see `gateway.audit`).

    Each gateway process writes its own chain, keyed by `replica_id`, with contiguous `seq`
    numbers: replicas sharing PostgreSQL never contend for one chain head, and a gap in `seq`
    is a deletion. `content` is the canonical JSON the hash covers, stored byte for byte so
    verification recomputes the hash from exactly what was written; the other columns repeat
    parts of it for indexing, and verification checks that they still agree with it.
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_kind_time", "kind", "time"),
        Index("ix_audit_events_call_id", "call_id"),
        *(_present_only(column) for column in AUDIT_SEARCH_COLUMNS),
    )

    replica_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(16))
    time: Mapped[datetime] = mapped_column(UtcDateTime)
    call_id: Mapped[str | None] = mapped_column(String(64))
    agent: Mapped[str | None] = mapped_column(String(256))
    user_id: Mapped[str | None] = mapped_column(String(256))
    tool: Mapped[str | None] = mapped_column(String(256))
    workflow_id: Mapped[str | None] = mapped_column(String(256))
    decision: Mapped[str | None] = mapped_column(String(32))
    outcome: Mapped[str | None] = mapped_column(String(32))
    reasoning: Mapped[str | None] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    content: Mapped[str] = mapped_column(Text)


class CatalogListingRow(Base):
    """The last listing each backend gave: tools, resources, templates and prompts as wire JSON.

    Kept so that a restart while a backend is down still knows that backend's tools: policies
    that name them validate, agents see them (calls answer that the backend is unavailable), and
    nothing depends on which backend happened to answer first.
    """

    __tablename__ = "catalog_listings"

    connector: Mapped[str] = mapped_column(String(64), primary_key=True)
    listing: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class EndedSessionRow(Base):
    """A sealed session id ended by its client (HTTP DELETE), refused until it would have expired.

    A sealed id cannot be un-issued, so every process must remember the ended ones. Processes
    running at the time hear of it by signal; this row tells those that start later, or that
    missed the signal, and a single gateway after a restart.
    """

    __tablename__ = "ended_sessions"

    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    until: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    #: When it was recorded, so reloads read only what is new; None for rows from before revision 0006.
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)


class AuditReplicaLeaseRow(Base):
    """Which live process writes the audit chain `replica_id`, renewed by its heartbeat until `expires_at`.

    One writer per chain: a second process must not take a live id (their sequence numbers would
    collide and each one's recovery would close the other's running calls). A lease left to expire
    means its writer died; whoever takes it over closes the calls that writer left open. `token`
    is the holder's tenure, so a holder that stalled past its expiry cannot renew a lease that
    was taken over meanwhile.
    """

    __tablename__ = "audit_replica_leases"

    replica_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    token: Mapped[str] = mapped_column(String(32))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    acquired_at: Mapped[datetime] = mapped_column(UtcDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class LeaseRow(Base):
    """Which live process runs the job `name` (one of many may), renewed by its heartbeat until `expires_at`.

    The same columns as `AuditReplicaLeaseRow`, read and written by `gateway.storage.leases`: a
    job whose holder stops renewing is taken over by another process once the lease runs out.
    """

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    token: Mapped[str] = mapped_column(String(32))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    acquired_at: Mapped[datetime] = mapped_column(UtcDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)


class RecordLockRow(Base):
    """A record lock: one connector record (`key`, a digest of the connector and the lock's argument values)
    held by one running call, renewed by its gateway process until `expires_at` (see `gateway.coordination.locks`).

    The lease columns are those of `leases`, read and written by `gateway.storage.leases`; the
    others say who holds it, for the agent refused by it and for the workflow's status. A row
    whose lease ran out belongs to a process that died: the next call for that record takes it over.
    """

    __tablename__ = "record_locks"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    token: Mapped[str] = mapped_column(String(32))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    acquired_at: Mapped[datetime] = mapped_column(UtcDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    connector: Mapped[str] = mapped_column(String(64))
    tool: Mapped[str] = mapped_column(String(256))
    agent: Mapped[str] = mapped_column(String(256))
    workflow: Mapped[str | None] = mapped_column(String(256), index=True)


#: The states of an approval whose call may still run (`gateway.approvals.model.OPEN_STATES`).
OPEN_APPROVAL = text("state IN ('pending', 'approved', 'executing')")


class ApprovalRow(Base):
    """A tool call held until people approve it, and what became of it (see `gateway.approvals`).

    Every change goes through a compare-and-set on `state` and `version`, so of two replicas
    deciding the same approval exactly one wins. `sealed_arguments` holds the exact arguments
    encrypted, only while the call may still run; `redacted_arguments` is what people are shown.
    """

    __tablename__ = "approvals"
    __table_args__ = (
        Index("ix_approvals_state_expires_at", "state", "expires_at"),
        Index("ix_approvals_repeat", "agent", "tool", "arguments_digest", "state"),
        # One open approval per identical call: two requests that both found none cannot both hold it.
        Index(
            "uq_approvals_open_call",
            "agent",
            "tool",
            "arguments_digest",
            unique=True,
            sqlite_where=OPEN_APPROVAL,
            postgresql_where=OPEN_APPROVAL,
        ),
        Index("ix_approvals_created_at", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    agent: Mapped[str] = mapped_column(String(128))
    user_id: Mapped[str | None] = mapped_column(String(256))
    roles: Mapped[list[str]] = mapped_column(JSON)
    tool: Mapped[str] = mapped_column(String(256))
    connector: Mapped[str] = mapped_column(String(64))
    original_tool: Mapped[str] = mapped_column(String(256))
    arguments_digest: Mapped[str] = mapped_column(String(64))
    redacted_arguments: Mapped[Any] = mapped_column(JSON, nullable=True)
    sealed_arguments: Mapped[bytes | None] = mapped_column(LargeBinary)
    reasoning: Mapped[str | None] = mapped_column(Text)
    workflow_id: Mapped[str | None] = mapped_column(String(256))
    session_id: Mapped[str | None] = mapped_column(String(256))
    policy_ids: Mapped[list[str]] = mapped_column(JSON)
    reasons: Mapped[list[str]] = mapped_column(JSON)
    approvers: Mapped[list[str]] = mapped_column(JSON)
    quorum: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    escalate_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    escalate_to: Mapped[list[str]] = mapped_column(JSON)
    escalated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    policy_version: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    executed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    #: Which process runs the call, so crash recovery closes only its own executions.
    executor: Mapped[str | None] = mapped_column(String(64))
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    result: Mapped[bytes | None] = mapped_column(LargeBinary)
    result_truncated: Mapped[bool] = mapped_column(Boolean)
    version: Mapped[int] = mapped_column(Integer)
    #: Who ended it without a vote (a cancellation, an admin's denial) and what they said, for its agent to hear.
    ended_by: Mapped[str | None] = mapped_column(String(256))
    end_comment: Mapped[str | None] = mapped_column(Text)
    #: `call` (a held call) or `question` (`gateway__ask_human`: people answer rather than approve).
    kind: Mapped[str] = mapped_column(String(16), server_default="call")
    #: A question's text, options and urgency; its answer once given, with who answered and when.
    question: Mapped[Any] = mapped_column(JSON, nullable=True)
    answer: Mapped[Any] = mapped_column(JSON, nullable=True)


class ApprovalVoteRow(Base):
    """One person's vote on one approval: the primary key allows each person a single vote."""

    __tablename__ = "approval_votes"

    approval_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("approvals.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    roles: Mapped[list[str]] = mapped_column(JSON)
    approve: Mapped[bool] = mapped_column(Boolean)
    comment: Mapped[str | None] = mapped_column(Text)
    voted_at: Mapped[datetime] = mapped_column(UtcDateTime)


class UserRow(Base):
    """A person the gateway knows (an approver, later a console user): never an agent.

    Users are disabled, never deleted, so a name once given keeps naming the same person in
    votes and audit events, which record people by name.
    """

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    roles: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class UserKeyRow(Base):
    """One key a user proves who they are with; like `ApiKeyRow`, only the SHA-256 of its secret is kept."""

    __tablename__ = "user_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32), ForeignKey("users.id"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), index=True, unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class ConsoleSessionRow(Base):
    """One person signed in to the web console; only the SHA-256 of the cookie's secret is kept.

    In the database rather than in the cookie, so any replica serves the session, signing out
    (or disabling the user) ends it everywhere at once, and the cookie itself carries no claims.
    """

    __tablename__ = "console_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(160))
    user_name: Mapped[str] = mapped_column(String(128), index=True)
    roles: Mapped[list[str]] = mapped_column(JSON)
    #: How the person signed in: "key" or "oidc".
    via: Mapped[str] = mapped_column(String(16))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class WorkflowNoteRow(Base):
    """A hand-off note an agent left in a workflow (`gateway__workflow_note`), read by the others.

    The steps of a workflow are its audit events (`audit_events.workflow_id`); only what the
    audit log does not hold, notes and shared result summaries, has tables of its own.
    """

    __tablename__ = "workflow_notes"
    __table_args__ = (Index("ix_workflow_notes_workflow_id_created_at", "workflow_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(256))
    agent: Mapped[str] = mapped_column(String(256))
    user_id: Mapped[str | None] = mapped_column(String(256))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class WorkflowResultRow(Base):
    """The short, redacted summary of one call's result, kept when its connector file shares it.

    Keyed by the call's audit `call_id`, so a timeline joins it to the step it summarises.
    """

    __tablename__ = "workflow_results"
    __table_args__ = (Index("ix_workflow_results_workflow_id_created_at", "workflow_id", "created_at"),)

    call_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(256))
    tool: Mapped[str] = mapped_column(String(256))
    agent: Mapped[str] = mapped_column(String(256))
    summary: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


#: The suspensions still in force: not resumed.
ACTIVE_SUSPENSION = text("resumed_at IS NULL")


class AgentSuspensionRow(Base):
    """An agent an operator suspended (the kill switch), and when and by whom it was resumed.

    Rows are never deleted, so the history of who stopped which agent and why stays readable.
    At most one suspension per agent is in force (the partial unique index): two operators
    suspending one agent at once cannot both succeed, and resuming ends exactly one.
    """

    __tablename__ = "agent_suspensions"
    __table_args__ = (
        Index(
            "uq_agent_suspensions_active_agent",
            "agent",
            unique=True,
            sqlite_where=ACTIVE_SUSPENSION,
            postgresql_where=ACTIVE_SUSPENSION,
        ),
        Index("ix_agent_suspensions_suspended_at", "suspended_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    agent: Mapped[str] = mapped_column(String(256))
    suspended_by: Mapped[str] = mapped_column(String(256))
    suspended_at: Mapped[datetime] = mapped_column(UtcDateTime)
    reason: Mapped[str] = mapped_column(Text)
    resumed_by: Mapped[str | None] = mapped_column(String(256))
    resumed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    resume_comment: Mapped[str | None] = mapped_column(Text)


class RateCountRow(Base):
    """One gateway process's recent calls by one agent to one tool, so every replica counts them (`context.rate`).

    `seconds` and `minutes` are JSON lists of [slot, count] pairs (seconds and minutes since the
    epoch) for the last minute and the last hour. A process rewrites its own rows, with a higher
    `version` each time, about every second; the others read the rows whose version is above the
    one they last saw of that replica. Rows not written for hours carry nothing any window counts
    and are deleted.
    """

    __tablename__ = "rate_counts"
    __table_args__ = (Index("ix_rate_counts_replica_version", "replica", "version"),)

    replica: Mapped[str] = mapped_column(String(64), primary_key=True)
    agent: Mapped[str] = mapped_column(String(256), primary_key=True)
    tool: Mapped[str] = mapped_column(String(256), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    written_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    seconds: Mapped[str] = mapped_column(Text)
    minutes: Mapped[str] = mapped_column(Text)


class IdempotencyRecordRow(Base):
    """One de-duplicated call: taken by the request that inserted it, then its outcome for the repeats.

    `key_digest` (the tool, the scope and the key's values, hashed) is unique: a request takes the
    call by inserting the row, so of two requests or replicas racing on one key exactly one runs
    it, and the other finds the row. `expires_at` is None while the call runs (and for ever once
    its outcome is unknown, until an operator clears it): only a finished call's row expires.
    """

    __tablename__ = "idempotency_records"
    __table_args__ = (Index("ix_idempotency_records_state_expires_at", "state", "expires_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    key_digest: Mapped[str] = mapped_column(String(64), unique=True)
    tool: Mapped[str] = mapped_column(String(256))
    connector: Mapped[str] = mapped_column(String(64))
    #: The key as configured and its values, redacted like audited arguments: what an operator is shown.
    key_shown: Mapped[str] = mapped_column(Text)
    agent: Mapped[str] = mapped_column(String(128))
    workflow_id: Mapped[str | None] = mapped_column(String(256))
    state: Mapped[str] = mapped_column(String(16))
    #: Which process runs the call, so crash recovery marks only its own runs `unknown`.
    executor: Mapped[str] = mapped_column(String(64), index=True)
    #: The audit call that ran it, named by the replays' audit entries.
    call_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    result: Mapped[bytes | None] = mapped_column(LargeBinary)
    result_truncated: Mapped[bool] = mapped_column(Boolean)
    replays: Mapped[int] = mapped_column(Integer)
    arguments_digest: Mapped[str | None] = mapped_column(String(64))


class ToolPinRow(Base):
    """The definition of a backend's tool an admin (or the gateway, under `new_tools = "accept"`) accepted.

    Keyed by the backend's own connector and tool names, not the exposed name, so renaming the
    separator does not lose the pins. `definition` is the pinned part of the definition as JSON,
    kept so a later change can be shown as a diff; `digest` is its RFC 8785 SHA-256.
    """

    __tablename__ = "tool_pins"

    connector: Mapped[str] = mapped_column(String(64), primary_key=True)
    tool: Mapped[str] = mapped_column(String(256), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64))
    definition: Mapped[str] = mapped_column(Text)
    accepted_by: Mapped[str] = mapped_column(String(128))
    accepted_at: Mapped[datetime] = mapped_column(UtcDateTime)
    reason: Mapped[str | None] = mapped_column(Text)


class ToolReviewRow(Base):
    """A tool waiting for an admin: quarantined (`changed` since its pin) or held (`new`, never accepted).

    One row per tool, inserted by whichever process sees it first, so the audit event and the
    webhook go out once however many replicas list the tool. Every process reads these rows, so
    a tool quarantined by one is withheld by all. `definition` is what the backend lists now.
    """

    __tablename__ = "tool_reviews"

    connector: Mapped[str] = mapped_column(String(64), primary_key=True)
    tool: Mapped[str] = mapped_column(String(256), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    digest: Mapped[str] = mapped_column(String(64))
    definition: Mapped[str] = mapped_column(Text)
    #: The instruction-like passages found in it (JSON list), shown to the reviewer.
    flags: Mapped[str] = mapped_column(Text)
    seen_at: Mapped[datetime] = mapped_column(UtcDateTime)
