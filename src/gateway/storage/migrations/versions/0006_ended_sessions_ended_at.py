"""Ended sessions carry when they ended, so each process reads only the new ones.

Every process reloads the ended sessions every few seconds to catch any whose signal it
missed. Reading the whole table each time grows with the number of sessions ended per day; with
`ended_at` a reload reads just the rows since the previous one. Rows from before this revision
have no `ended_at` and are read only when a process starts, as before.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("ended_sessions", sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_ended_sessions_ended_at", "ended_sessions", ["ended_at"])


def downgrade() -> None:
    op.drop_index("ix_ended_sessions_ended_at", table_name="ended_sessions")
    with op.batch_alter_table("ended_sessions") as table:
        table.drop_column("ended_at")
