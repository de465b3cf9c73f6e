"""Alembic environment: runs against the connection farm hands it, or FARM settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from farm.db.tables import Base

target_metadata = Base.metadata


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things in place
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    from farm.settings import get_settings

    engine = create_engine(get_settings().resolved_database_url)
    with engine.begin() as conn:
        _run(conn)
