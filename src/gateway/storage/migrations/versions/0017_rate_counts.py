"""Rate counts: each gateway process's recent calls per agent and tool, shared so replicas count together.

A row per (replica, agent, tool) with per-second counts of the last minute and per-minute counts
of the last hour, rewritten by its process about every second under a rising `version`, which
the other processes read past.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rate_counts",
        sa.Column("replica", sa.String(64), nullable=False),
        sa.Column("agent", sa.String(256), nullable=False),
        sa.Column("tool", sa.String(256), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seconds", sa.Text(), nullable=False),
        sa.Column("minutes", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("replica", "agent", "tool", name="pk_rate_counts"),
    )
    op.create_index("ix_rate_counts_replica_version", "rate_counts", ["replica", "version"])
    op.create_index("ix_rate_counts_written_at", "rate_counts", ["written_at"])


def downgrade() -> None:
    op.drop_index("ix_rate_counts_written_at", table_name="rate_counts")
    op.drop_index("ix_rate_counts_replica_version", table_name="rate_counts")
    op.drop_table("rate_counts")
