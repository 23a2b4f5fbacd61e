"""Pinned tool definitions: what an admin accepted, and the tools waiting for review.

`tool_pins` holds each backend tool's accepted definition and its digest, who accepted it and
when; `tool_reviews` holds the tools withheld from agents until an admin accepts them: changed
since their pin (quarantined) or new under `new_tools = "review"`.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | Sequence[str] | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tool_pins",
        sa.Column("connector", sa.String(64), nullable=False),
        sa.Column("tool", sa.String(256), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("definition", sa.Text(), nullable=False),
        sa.Column("accepted_by", sa.String(128), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("connector", "tool", name="pk_tool_pins"),
    )
    op.create_table(
        "tool_reviews",
        sa.Column("connector", sa.String(64), nullable=False),
        sa.Column("tool", sa.String(256), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("definition", sa.Text(), nullable=False),
        sa.Column("flags", sa.Text(), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("connector", "tool", name="pk_tool_reviews"),
    )


def downgrade() -> None:
    op.drop_table("tool_reviews")
    op.drop_table("tool_pins")
