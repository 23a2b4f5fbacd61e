"""Questions people answer, kept beside held calls in the `approvals` table.

`gateway__ask_human` makes a question that is routed, expired, escalated, notified and
cancelled exactly as a held call's approval is, so it is an approval of another kind rather
than a table of its own that would repeat all of that:

- `kind`: `call` (every approval made before this revision) or `question`;
- `question`: the text, the options a person may choose from and the urgency;
- `answer`: the answer given, the option chosen, who answered and when.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-20
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A server default fills existing rows, so SQLite adds the column in place without copying the table.
    op.add_column("approvals", sa.Column("kind", sa.String(16), nullable=False, server_default="call"))
    op.add_column("approvals", sa.Column("question", sa.JSON(), nullable=True))
    op.add_column("approvals", sa.Column("answer", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        batch.drop_column("answer")
        batch.drop_column("question")
        batch.drop_column("kind")
