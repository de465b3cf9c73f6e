"""a change counter per build, written on the jobs it changed

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-11 10:00:00

``builds.rev`` counts the changes of its jobs' states; each job carries the value of its
last change (``jobs.rev``), so a coordinator reads only the jobs that changed since it
last looked (issue 10: a finish's cost independent of the build's size). Older rows
start at 0, which a coordinator's first full read of a build covers.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rev", sa.Integer(), server_default="0", nullable=False))
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rev", sa.Integer(), server_default="0", nullable=False))
    op.create_index("ix_jobs_build_rev", "jobs", ["build_id", "rev"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_jobs_build_rev", table_name="jobs")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("rev")
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.drop_column("rev")
