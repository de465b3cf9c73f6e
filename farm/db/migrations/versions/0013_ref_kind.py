"""builds' ref kind (branch or tag) and the repository's default branch

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-10 10:00:00

A build records whether its ref is a branch or a tag (GitLab sets CI_COMMIT_BRANCH or
CI_COMMIT_TAG, never both) and the default branch of its repository when it was
submitted (CI_DEFAULT_BRANCH). Older rows were all treated as branches of ``main``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("ref_kind", sa.String(length=16), server_default="branch", nullable=False)
        )
        batch_op.add_column(
            sa.Column(
                "default_branch", sa.String(length=255), server_default="main", nullable=False
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.drop_column("default_branch")
        batch_op.drop_column("ref_kind")
