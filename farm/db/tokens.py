"""API tokens in the database: created, looked up by hash, listed, revoked.

Only a token's SHA-256 is stored (:func:`farm.domain.auth.hash_token`); the token is
shown once, when it is made.  The local token files (``$FARM_DATA_DIR/tokens/*.token``,
mode 0600) are what ``farm up`` gives its own CLI and workers on one host.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from farm.db.session import aware, transaction
from farm.db.tables import TokenRow
from farm.domain.auth import Scope, TokenInfo, hash_token, new_token, parse_scopes
from farm.errors import NotFound
from farm.settings import local_token_path

__all__ = ["LOCAL_TOKENS", "TokenDb"]

# The tokens `farm up` (and `farm api` on one host) keep for their own CLI and workers.
LOCAL_TOKENS: dict[str, tuple[Scope, ...]] = {
    "admin": (Scope.ADMIN,),
    "worker": (Scope.WORKER,),
}
_PREFIX_CHARS = 12  # "farm_" and 7 more: enough to tell tokens apart in a listing


def _info(row: TokenRow) -> TokenInfo:
    return TokenInfo(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        scopes=parse_scopes(row.scopes),
        created_at=aware(row.created_at),
        created_by=row.created_by,
        expires_at=aware(row.expires_at),
        revoked_at=aware(row.revoked_at),
        last_used_at=aware(row.last_used_at),
    )


class TokenDb:
    """The ``api_tokens`` table."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def create(
        self,
        name: str,
        scopes: tuple[Scope, ...],
        *,
        created_by: str,
        expires_at: datetime | None = None,
    ) -> tuple[TokenInfo, str]:
        """A new token: its record and the token itself (shown this once, never stored)."""
        token = new_token()
        with transaction(self._sessions) as s:
            row = TokenRow(
                name=name,
                hash=hash_token(token),
                prefix=token[:_PREFIX_CHARS],
                scopes=",".join(scope.value for scope in scopes),
                created_at=datetime.now(UTC),
                created_by=created_by,
                expires_at=expires_at,
            )
            s.add(row)
            s.flush()
            return _info(row), token

    def lookup(self, token: str) -> TokenInfo | None:
        """The record of ``token`` (active or not), or None if no such token was made."""
        with self._sessions() as s:
            row = s.scalars(select(TokenRow).where(TokenRow.hash == hash_token(token))).first()
            return _info(row) if row is not None else None

    def list(self) -> list[TokenInfo]:
        """Every token, newest first."""
        with self._sessions() as s:
            return [_info(r) for r in s.scalars(select(TokenRow).order_by(TokenRow.id.desc()))]

    def get(self, token_id: int) -> TokenInfo:
        """One token by id; NotFound if there is none."""
        with self._sessions() as s:
            row = s.get(TokenRow, token_id)
            if row is None:
                raise NotFound(f"no token {token_id}")
            return _info(row)

    def revoke(self, token_id: int) -> TokenInfo:
        """Revoke a token (idempotent: revoking twice keeps the first time)."""
        with transaction(self._sessions) as s:
            row = s.get(TokenRow, token_id)
            if row is None:
                raise NotFound(f"no token {token_id}")
            if row.revoked_at is None:
                row.revoked_at = datetime.now(UTC)
            s.flush()
            return _info(row)

    def touch(self, token_id: int, at: datetime) -> None:
        """Record a use (callers rate-limit this: it is a write)."""
        with transaction(self._sessions) as s:
            s.execute(update(TokenRow).where(TokenRow.id == token_id).values(last_used_at=at))

    def ensure_local(self, data_dir: Path) -> dict[str, Path]:
        """Make sure each local token file holds a token that works; mint the missing ones.

        A file whose token is unknown, revoked or expired (a new database, an operator's
        revoke) is replaced.  Files are written 0600 in a 0700 directory.
        """
        paths: dict[str, Path] = {}
        now = datetime.now(UTC)
        for name, scopes in LOCAL_TOKENS.items():
            path = local_token_path(data_dir, name)
            paths[name] = path
            current = _read(path)
            info = self.lookup(current) if current else None
            if info is not None and info.state(now) == "active":
                continue
            _, token = self.create(f"local-{name}", scopes, created_by="farm (local)")
            _write_private(path, token)
        return paths


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text``, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
