"""Approvals: tool calls held until people approve them, and the votes cast on each.

A held call outlives the request that made it (people answer in minutes or hours, replicas
restart meanwhile), so its state lives here rather than in a process. `version` makes every
change a compare-and-set, so two replicas deciding the same approval cannot both win.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "approvals",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("agent", sa.String(128), nullable=False),
        sa.Column("user_id", sa.String(256), nullable=True),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("tool", sa.String(256), nullable=False),
        sa.Column("connector", sa.String(64), nullable=False),
        sa.Column("original_tool", sa.String(256), nullable=False),
        sa.Column("arguments_digest", sa.String(64), nullable=False),
        sa.Column("redacted_arguments", sa.JSON(), nullable=True),
        sa.Column("sealed_arguments", sa.LargeBinary(), nullable=True),
        sa.Column("reasoning", sa.Text(), nullable=True),
        sa.Column("workflow_id", sa.String(256), nullable=True),
        sa.Column("session_id", sa.String(256), nullable=True),
        sa.Column("policy_ids", sa.JSON(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("approvers", sa.JSON(), nullable=False),
        sa.Column("quorum", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("escalate_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("escalate_to", sa.JSON(), nullable=False),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("policy_version", sa.Text(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("executed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("executor", sa.String(64), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result", sa.LargeBinary(), nullable=True),
        sa.Column("result_truncated", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_approvals"),
    )
    op.create_index("ix_approvals_state_expires_at", "approvals", ["state", "expires_at"])
    op.create_index("ix_approvals_repeat", "approvals", ["agent", "tool", "arguments_digest", "state"])
    op.create_index("ix_approvals_created_at", "approvals", ["created_at", "id"])
    op.create_table(
        "approval_votes",
        sa.Column("approval_id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("approve", sa.Boolean(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("voted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["approval_id"],
            ["approvals.id"],
            name="fk_approval_votes_approval_id_approvals",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("approval_id", "user_id", name="pk_approval_votes"),
    )


def downgrade() -> None:
    op.drop_table("approval_votes")
    op.drop_index("ix_approvals_created_at", table_name="approvals")
    op.drop_index("ix_approvals_repeat", table_name="approvals")
    op.drop_index("ix_approvals_state_expires_at", table_name="approvals")
    op.drop_table("approvals")
