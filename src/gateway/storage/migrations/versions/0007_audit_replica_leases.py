"""Audit replica leases: which live process writes each audit chain, and until when.

Two processes writing one chain (the same replica id) collide on its sequence numbers and,
worse, each one's start-up recovery marks the other's running calls as unknown. A row per
replica id, renewed by its process's heartbeat, lets a starting process see that the id is
taken, and lets any live process find chains whose writer died (the lease expired) and close
the calls those left open.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_replica_leases",
        sa.Column("replica_id", sa.String(64), nullable=False),
        sa.Column("token", sa.String(32), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("replica_id", name="pk_audit_replica_leases"),
    )
    op.create_index("ix_audit_replica_leases_expires_at", "audit_replica_leases", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_audit_replica_leases_expires_at", table_name="audit_replica_leases")
    op.drop_table("audit_replica_leases")
