"""Named leases for jobs one process runs, and who ended an approval without a vote.

`leases`: a job that must run in one process of many (the approvals sweeper: expiries and
escalations, each of which notifies people) is run by whichever process holds the job's row,
renewed by its heartbeat; when the holder dies its lease runs out and another process takes it
over. The columns are those of `audit_replica_leases`, under a job's name instead of a replica id.

`approvals.ended_by` and `approvals.end_comment`: who cancelled an approval (or denied it as the
admin, which records no vote) and what they said, so the agent whose call it was hears it.
Approvals ended before this revision have neither.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-14
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("token", sa.String(32), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_leases"),
    )
    # Nullable columns: SQLite adds them in place, without the batch mode's copy of the table.
    op.add_column("approvals", sa.Column("ended_by", sa.String(256), nullable=True))
    op.add_column("approvals", sa.Column("end_comment", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        batch.drop_column("end_comment")
        batch.drop_column("ended_by")
    op.drop_table("leases")
