"""Agent suspensions: the kill switch that stops every request of one agent on every replica.

A row per suspension, never deleted: the agent, who suspended it, when and why, and once
resumed, who resumed it and when. A partial unique index keeps at most one suspension per agent
in force (`resumed_at IS NULL`), and is what each gateway process reads, a fraction of a second
apart, to keep its in-memory set of suspended agents.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-15
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ACTIVE = sa.text("resumed_at IS NULL")


def upgrade() -> None:
    op.create_table(
        "agent_suspensions",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("agent", sa.String(256), nullable=False),
        sa.Column("suspended_by", sa.String(256), nullable=False),
        sa.Column("suspended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("resumed_by", sa.String(256), nullable=True),
        sa.Column("resumed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resume_comment", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_agent_suspensions"),
    )
    op.create_index(
        "uq_agent_suspensions_active_agent",
        "agent_suspensions",
        ["agent"],
        unique=True,
        sqlite_where=_ACTIVE,
        postgresql_where=_ACTIVE,
    )
    op.create_index("ix_agent_suspensions_suspended_at", "agent_suspensions", ["suspended_at"])


def downgrade() -> None:
    op.drop_index("ix_agent_suspensions_suspended_at", table_name="agent_suspensions")
    op.drop_index("uq_agent_suspensions_active_agent", table_name="agent_suspensions")
    op.drop_table("agent_suspensions")
