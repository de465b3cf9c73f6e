"""jobs' timeline and reused results; the job result cache (issue 11)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-12 10:00:00

``jobs.timeline`` holds an attempt's marks (farm/domain/timeline.py: queued, claimed,
the worker's marks, reported, next dispatched; epoch seconds); ``jobs.cached_from`` the
job whose result a job reused. ``result_cache`` maps a job result key
(farm/domain/result_key.py) to the successful job that produced it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("timeline", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("cached_from", sa.Integer(), nullable=True))
    op.create_table(
        "result_cache",
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_result_cache_job_id", "result_cache", ["job_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_result_cache_job_id", table_name="result_cache")
    op.drop_table("result_cache")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("cached_from")
        batch_op.drop_column("timeline")
