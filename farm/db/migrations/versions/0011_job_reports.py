"""jobs' test report (artifacts: reports: junit) and environment

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-10 10:00:00

``jobs.test_report`` holds the totals and failing cases a worker parsed from the job's
JUnit files (``messages.TestReport``); ``jobs.environment`` the job's ``environment:``
(name, url, action) from its spec, so a deployment shows where it went.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("test_report", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("environment", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("environment")
        batch_op.drop_column("test_report")
