"""Idempotency records: de-duplicated tool calls and the outcomes their repeats receive.

A row per call that a connector file's `idempotency_key` names, unique by the digest of its key,
so the request that inserts it is the one that runs the call. It keeps the run's state
(`executing`, `succeeded`, `unknown`), which process runs it (for crash recovery), the audit call
that ran it, and its result (bounded) until `expires_at`.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "idempotency_records",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("key_digest", sa.String(64), nullable=False),
        sa.Column("tool", sa.String(256), nullable=False),
        sa.Column("connector", sa.String(64), nullable=False),
        sa.Column("key_shown", sa.Text(), nullable=False),
        sa.Column("arguments_digest", sa.String(length=64), nullable=True),
        sa.Column("agent", sa.String(128), nullable=False),
        sa.Column("workflow_id", sa.String(256), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("executor", sa.String(64), nullable=False),
        sa.Column("call_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result", sa.LargeBinary(), nullable=True),
        sa.Column("result_truncated", sa.Boolean(), nullable=False),
        sa.Column("replays", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_idempotency_records"),
        sa.UniqueConstraint("key_digest", name="uq_idempotency_records_key_digest"),
    )
    op.create_index("ix_idempotency_records_executor", "idempotency_records", ["executor"])
    op.create_index("ix_idempotency_records_state_expires_at", "idempotency_records", ["state", "expires_at"])


def downgrade() -> None:
    op.drop_index("ix_idempotency_records_state_expires_at", table_name="idempotency_records")
    op.drop_index("ix_idempotency_records_executor", table_name="idempotency_records")
    op.drop_table("idempotency_records")
