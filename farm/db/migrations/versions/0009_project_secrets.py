"""project_secrets and project_settings

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 10:00:00

Per-project secret variables (each value a Fernet token under the farm's secrets key)
and per-project settings: the repository the project's secrets are bound to (NULL: none,
no build gets them) and its protected ref patterns (NULL: ``main`` and ``master``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "project_secrets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("protected", sa.Boolean(), nullable=False),
        sa.Column("masked", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project", "name", name="uq_project_secrets_project_name"),
    )
    with op.batch_alter_table("project_secrets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_project_secrets_project"), ["project"], unique=False)
    op.create_table(
        "project_settings",
        sa.Column("project", sa.String(length=255), nullable=False),
        sa.Column("repo", sa.Text(), nullable=True),
        sa.Column("protected_refs", sa.JSON(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("project"),
    )


def downgrade() -> None:
    op.drop_table("project_settings")
    with op.batch_alter_table("project_secrets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_project_secrets_project"))
    op.drop_table("project_secrets")
