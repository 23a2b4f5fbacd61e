"""Audit log: one hash-chained, append-only table of events, one chain per gateway replica.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXES = (
    ("ix_audit_events_kind_time", ["kind", "time"]),
    ("ix_audit_events_call_id", ["call_id"]),
    ("ix_audit_events_agent_time", ["agent", "time"]),
    ("ix_audit_events_user_id_time", ["user_id", "time"]),
    ("ix_audit_events_tool_time", ["tool", "time"]),
    ("ix_audit_events_workflow_id_time", ["workflow_id", "time"]),
)


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("replica_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("call_id", sa.String(64), nullable=True),
        sa.Column("agent", sa.String(256), nullable=True),
        sa.Column("user_id", sa.String(256), nullable=True),
        sa.Column("tool", sa.String(256), nullable=True),
        sa.Column("workflow_id", sa.String(256), nullable=True),
        sa.Column("decision", sa.String(32), nullable=True),
        sa.Column("outcome", sa.String(32), nullable=True),
        sa.Column("reasoning", sa.Text(), nullable=True),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("replica_id", "seq", name="pk_audit_events"),
    )
    for name, columns in _INDEXES:
        op.create_index(name, "audit_events", columns)


def downgrade() -> None:
    for name, _ in reversed(_INDEXES):
        op.drop_index(name, table_name="audit_events")
    op.drop_table("audit_events")
