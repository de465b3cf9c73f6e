"""rollouts, their history, and builds run on behalf of another build

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollouts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project", sa.String(length=255), nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=128), nullable=False),
        sa.Column("previous_version", sa.String(length=128), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("snapshot", sa.JSON(), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("phase_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("job_build_id", sa.Integer(), nullable=True),
        sa.Column("checks", sa.JSON(), nullable=True),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["release_id"], ["releases.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("rollouts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rollouts_project"), ["project"], unique=False)
        batch_op.create_index(batch_op.f("ix_rollouts_release_id"), ["release_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_rollouts_state"), ["state"], unique=False)
        batch_op.create_index(
            "uq_rollouts_active_project",
            ["project"],
            unique=True,
            sqlite_where=sa.text("active"),
            postgresql_where=sa.text("active"),
        )
    op.create_table(
        "rollout_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rollout_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("from_state", sa.String(length=16), nullable=False),
        sa.Column("to_state", sa.String(length=16), nullable=False),
        sa.Column("from_step", sa.Integer(), nullable=False),
        sa.Column("to_step", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["rollout_id"], ["rollouts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("rollout_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rollout_events_rollout_id"), ["rollout_id"])
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parent_build_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_builds_parent_build_id"), ["parent_build_id"])
        batch_op.create_foreign_key(
            "fk_builds_parent_build_id", "builds", ["parent_build_id"], ["id"], ondelete="SET NULL"
        )


def downgrade() -> None:
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.drop_constraint("fk_builds_parent_build_id", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_builds_parent_build_id"))
        batch_op.drop_column("parent_build_id")
    op.drop_table("rollout_events")
    op.drop_table("rollouts")
