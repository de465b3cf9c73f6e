"""jobs: the dispatch outbox (queued_at, queued_epoch) and a delayed job's due time

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 18:00:00

``queued_at`` is set only once the broker took the current attempt's message; a
pending job without it is in the outbox and the watchdog pass sends it.
``queued_epoch`` is the broker's incarnation (Redis ``run_id``) it was sent to.
``due_at`` is when a ``when: delayed`` job may start, so a re-send keeps the delay.
Jobs pending before this revision have no ``queued_at``: they are sent once more.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("due_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("queued_epoch", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("queued_epoch")
        batch_op.drop_column("queued_at")
        batch_op.drop_column("due_at")
