"""Audit search indexes cover only the events that have the searched column.

The agent, user, tool and workflow indexes held an entry for every event, including every
outcome (which has none of these) and every call without a user or workflow. Those NULL
entries gather in a run of their own in each index, so each commit touched one more page per
index: more data to write and fsync before a call may be forwarded. Searches ask for a value,
never for NULL, and a partial index serves `column = value` just the same.

On a large audit table this rebuilds four indexes: plan the upgrade for a quiet moment.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = ("agent", "user_id", "tool", "workflow_id")


def upgrade() -> None:
    for column in _COLUMNS:
        name = f"ix_audit_events_{column}_time"
        present = sa.text(f"{column} IS NOT NULL")
        op.drop_index(name, table_name="audit_events")
        op.create_index(name, "audit_events", [column, "time"], sqlite_where=present, postgresql_where=present)


def downgrade() -> None:
    for column in _COLUMNS:
        name = f"ix_audit_events_{column}_time"
        op.drop_index(name, table_name="audit_events")
        op.create_index(name, "audit_events", [column, "time"])
