"""builds' source and origin (commit statuses), and pipeline schedules

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 10:00:00

A build records what started it (``source``: GitLab's CI_PIPELINE_SOURCE words) and,
when a webhook made it, the git host and project its commit status is reported to;
``status_seq`` numbers those reports so an older one never overwrites a newer one.
``schedules`` holds cron timetables; timers claim a due run by a compare-and-set on
``next_run_at``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("source", sa.String(length=32), server_default="api", nullable=False)
        )
        batch_op.add_column(sa.Column("origin_host", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("origin_api_url", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("origin_project", sa.String(length=255), nullable=True))
        batch_op.add_column(
            sa.Column("status_seq", sa.Integer(), server_default="0", nullable=False)
        )
    op.create_table(
        "schedules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project", sa.String(length=255), nullable=False),
        sa.Column("repo", sa.Text(), nullable=False),
        sa.Column("ref", sa.String(length=255), nullable=False),
        sa.Column("cron", sa.String(length=255), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("variables", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_build_id", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["last_build_id"], ["builds.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("schedules", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_schedules_project"), ["project"], unique=False)
        batch_op.create_index(batch_op.f("ix_schedules_next_run_at"), ["next_run_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("schedules", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_schedules_next_run_at"))
        batch_op.drop_index(batch_op.f("ix_schedules_project"))
    op.drop_table("schedules")
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.drop_column("status_seq")
        batch_op.drop_column("origin_project")
        batch_op.drop_column("origin_api_url")
        batch_op.drop_column("origin_host")
        batch_op.drop_column("source")
