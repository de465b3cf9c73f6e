"""Engine and sessions; schema brought up to date by Alembic migrations."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, overload

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


BUSY_TIMEOUT = 30.0  # seconds SQLite waits for another connection's write lock
# A write transaction that still finds the database locked after the busy timeout is
# started again this many times in all, after a short jittered pause; then the error
# goes up (the API answers 503 with Retry-After).
LOCKED_ATTEMPTS = 3


def make_engine(url: str, *, busy_timeout: float = BUSY_TIMEOUT) -> Engine:
    """An engine for ``url``; SQLite gets WAL and a busy timeout for concurrent writers."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": busy_timeout}
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def migrate(engine: Engine) -> None:
    """Upgrade the schema to the newest Alembic revision (idempotent)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Session factory; objects stay usable after commit (records are built inside anyway)."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on error.

    On SQLite the transaction is a write transaction from its first statement
    (``BEGIN IMMEDIATE``): it waits for the write lock up front, under the busy timeout,
    instead of starting as a reader and failing with "database is locked" at once when
    it must upgrade after another connection wrote.  A BEGIN that still finds the
    database locked is retried (:data:`LOCKED_ATTEMPTS`), which is safe: nothing ran yet.
    """
    with sessions() as session, session.begin():
        connection = session.connection()
        if connection.dialect.name == "sqlite":
            _begin_immediate(connection)
        yield session


def _is_locked(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) and "database is locked" in str(exc.orig)


def _begin_immediate(connection: Connection) -> None:
    """``BEGIN IMMEDIATE`` on a connection pysqlite has not begun a transaction on yet."""
    for attempt in Retrying(
        retry=retry_if_exception(_is_locked),
        stop=stop_after_attempt(LOCKED_ATTEMPTS),
        wait=wait_random_exponential(multiplier=0.05, max=1.0),
        reraise=True,
    ):
        with attempt:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


@overload
def aware(value: datetime) -> datetime: ...
@overload
def aware(value: None) -> None: ...
def aware(value: datetime | None) -> datetime | None:
    """``value`` as UTC-aware: SQLite hands back naive datetimes even for timezone=True."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value
