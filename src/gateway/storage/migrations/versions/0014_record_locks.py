"""Record locks: one running call at a time per connector record, across agents and replicas.

`record_locks` holds a lease per locked record (`key`: a digest of the connector and the values
of the tool's lock arguments), with the lease columns of `leases` and who holds it (tool, agent,
workflow), so a call refused by the lock can name its holder and a workflow's status can show it.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-20
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "record_locks",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("token", sa.String(32), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("connector", sa.String(64), nullable=False),
        sa.Column("tool", sa.String(256), nullable=False),
        sa.Column("agent", sa.String(256), nullable=False),
        sa.Column("workflow", sa.String(256), nullable=True),
        sa.PrimaryKeyConstraint("key", name="pk_record_locks"),
    )
    op.create_index("ix_record_locks_workflow", "record_locks", ["workflow"])


def downgrade() -> None:
    op.drop_index("ix_record_locks_workflow", table_name="record_locks")
    op.drop_table("record_locks")
