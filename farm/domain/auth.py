"""Who may do what: API token scopes, what each implies, and the token format.

Pure rules, no I/O.  A token is ``farm_`` followed by 43 url-safe characters (256 random
bits); only its SHA-256 is stored, so a database leak gives no usable token.  Scopes:

* ``read``: look at builds, jobs, logs, artifacts, releases, rollouts, metrics;
* ``submit``: start, cancel and retry builds, play manual jobs (implies ``read``);
* ``deploy``: release deliverables and drive rollouts (implies ``read``);
* ``admin``: everything above plus tokens, secrets, schedules, GC (never ``worker``);
* ``worker``: the worker channel alone (claim, log, finish, caches, blob uploads).

``worker`` is deliberately outside the hierarchy: a person's admin token cannot report a
job result, and a worker's token cannot read a build's page or start one.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from farm.errors import InvalidRequest

__all__ = [
    "ANYONE",
    "TOKEN_PREFIX",
    "Principal",
    "Scope",
    "TokenInfo",
    "expand",
    "hash_token",
    "is_local_repo",
    "new_token",
    "parse_scopes",
    "same_hash",
]

TOKEN_PREFIX = "farm_"
_TOKEN_BYTES = 32  # 256 bits


class Scope(StrEnum):
    """One right a token carries."""

    READ = "read"
    SUBMIT = "submit"
    DEPLOY = "deploy"
    ADMIN = "admin"
    WORKER = "worker"


_IMPLIES: dict[Scope, frozenset[Scope]] = {
    Scope.READ: frozenset({Scope.READ}),
    Scope.SUBMIT: frozenset({Scope.SUBMIT, Scope.READ}),
    Scope.DEPLOY: frozenset({Scope.DEPLOY, Scope.READ}),
    Scope.ADMIN: frozenset({Scope.ADMIN, Scope.SUBMIT, Scope.DEPLOY, Scope.READ}),
    Scope.WORKER: frozenset({Scope.WORKER}),
}


def expand(scopes: Iterable[Scope]) -> frozenset[Scope]:
    """Every scope the given ones grant, implied ones included."""
    granted: set[Scope] = set()
    for scope in scopes:
        granted |= _IMPLIES[scope]
    return frozenset(granted)


def parse_scopes(text: str | Iterable[str]) -> tuple[Scope, ...]:
    """Scopes from ``"read,submit"`` or a list; an unknown name is one clear error."""
    names = text.split(",") if isinstance(text, str) else list(text)
    out: list[Scope] = []
    for raw in names:
        name = raw.strip().lower()
        if not name:
            continue
        try:
            scope = Scope(name)
        except ValueError:
            known = ", ".join(s.value for s in Scope)
            raise InvalidRequest(f"unknown scope {raw.strip()!r} (known: {known})") from None
        if scope not in out:
            out.append(scope)
    if not out:
        raise InvalidRequest("a token needs at least one scope")
    return tuple(out)


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token's id, name and granted scopes (implied ones included)."""

    token_id: int | None
    name: str
    scopes: frozenset[Scope]

    def has(self, scope: Scope) -> bool:
        """Whether this caller may do what ``scope`` covers."""
        return scope in self.scopes

    def has_any(self, *scopes: Scope) -> bool:
        """Whether this caller holds at least one of ``scopes``."""
        return any(s in self.scopes for s in scopes)


# Who calls when authentication is off (loopback only): everyone may do everything.
ANYONE = Principal(token_id=None, name="anyone (auth off)", scopes=frozenset(Scope))


def new_token() -> str:
    """A fresh token: ``farm_`` and 256 random bits, url-safe."""
    return TOKEN_PREFIX + secrets.token_urlsafe(_TOKEN_BYTES)


def hash_token(token: str) -> str:
    """What is stored of a token: its SHA-256, hex (a 256-bit random token needs no salt)."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def same_hash(a: str, b: str) -> bool:
    """Constant-time comparison of two stored hashes."""
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True)
class TokenInfo:
    """A stored token as people see it: never the token itself, only its first characters."""

    id: int
    name: str
    prefix: str
    scopes: tuple[Scope, ...]
    created_at: datetime
    created_by: str
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    def state(self, now: datetime) -> str:
        """``active``, ``expired`` or ``revoked``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def principal(self) -> Principal:
        """The caller this token makes."""
        return Principal(token_id=self.id, name=self.name, scopes=expand(self.scopes))


_REMOTE_SCHEMES = frozenset({"https", "http", "ssh", "git"})
_SCP_LIKE = re.compile(r"^[\w.-]+@[\w.-]+:")  # git@github.com:org/repo.git


def is_local_repo(repo: str) -> bool:
    """Whether ``repo`` names something on the coordinator's own disk.

    Anything but an ``https``/``http``/``ssh``/``git`` URL or scp-like ``user@host:path``
    counts: a plain path, ``~/x``, and ``file://`` URLs alike.
    """
    text = repo.strip()
    scheme, sep, _ = text.partition("://")
    if sep:
        return scheme.lower() not in _REMOTE_SCHEMES
    return _SCP_LIKE.match(text) is None
