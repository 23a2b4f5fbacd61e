"""One open approval per identical call.

A held call finds the approval of an identical call (same agent, tool and arguments) before it
makes one, so that a repeat joins the first instead of asking people again and the call never
runs twice. Two identical calls arriving together (a model's parallel tool calls, a retry racing
the first try, two replicas) could both find none and both make one; approved, each ran. This
unique index over the approvals whose call may still run lets only the first be made; the other
request joins it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OPEN = sa.text("state IN ('pending', 'approved', 'executing')")


def upgrade() -> None:
    op.create_index(
        "uq_approvals_open_call",
        "approvals",
        ["agent", "tool", "arguments_digest"],
        unique=True,
        sqlite_where=_OPEN,
        postgresql_where=_OPEN,
    )


def downgrade() -> None:
    op.drop_index("uq_approvals_open_call", table_name="approvals")
