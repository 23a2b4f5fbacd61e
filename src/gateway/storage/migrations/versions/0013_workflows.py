"""Workflows: the notes agents leave for each other and the result summaries connector files share.

A workflow's steps are its audit events (`audit_events.workflow_id`, already indexed), so no
second write per call is needed for them; these two tables hold only what the audit log does
not: hand-off notes (`gateway__workflow_note`) and short redacted result summaries of the tools
whose connector file says `share_result = true`.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "workflow_notes",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("workflow_id", sa.String(256), nullable=False),
        sa.Column("agent", sa.String(256), nullable=False),
        sa.Column("user_id", sa.String(256), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_workflow_notes"),
    )
    op.create_index("ix_workflow_notes_workflow_id_created_at", "workflow_notes", ["workflow_id", "created_at"])
    op.create_table(
        "workflow_results",
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("workflow_id", sa.String(256), nullable=False),
        sa.Column("tool", sa.String(256), nullable=False),
        sa.Column("agent", sa.String(256), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("call_id", name="pk_workflow_results"),
    )
    op.create_index("ix_workflow_results_workflow_id_created_at", "workflow_results", ["workflow_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_workflow_results_workflow_id_created_at", table_name="workflow_results")
    op.drop_table("workflow_results")
    op.drop_index("ix_workflow_notes_workflow_id_created_at", table_name="workflow_notes")
    op.drop_table("workflow_notes")
