"""hook_deliveries: webhook deliveries taken, unique by delivery id

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 09:00:00

A GitHub or GitLab delivery is claimed here before its build is submitted; a replay of
the same delivery id finds the row and answers the first build instead of a new one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hook_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("delivery", sa.String(length=255), nullable=False),
        sa.Column("host", sa.String(length=16), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("build_id", sa.Integer(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["build_id"], ["builds.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("delivery"),
    )
    with op.batch_alter_table("hook_deliveries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hook_deliveries_build_id"), ["build_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("hook_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hook_deliveries_build_id"))
    op.drop_table("hook_deliveries")
