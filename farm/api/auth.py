"""Who is calling, and may they: bearer tokens, scopes, and the exposure rule.

Every route declares the scope it needs with :func:`requires` (the public ones are
listed in :data:`PUBLIC_PATHS`; ``tests/unit/api/test_auth_routes.py`` walks the app and
fails on a route that declares neither).  A token comes as ``Authorization: Bearer`` or,
for the dashboard, as the HttpOnly ``farm_token`` cookie.  Lookups are cached for
``FARM_TOKEN_CACHE_SECONDS`` so a busy worker does not hit the database per log line; a
revoke takes effect within that time.
"""

from __future__ import annotations

import contextlib
import ipaddress
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from farm.db.tokens import TokenDb
from farm.domain.auth import ANYONE, Principal, Scope, TokenInfo, hash_token, is_local_repo
from farm.errors import ConfigError, Forbidden, Unauthorized
from farm.settings import Settings

__all__ = [
    "COOKIE",
    "PUBLIC_PATHS",
    "Authenticator",
    "PrincipalDep",
    "check_exposure",
    "check_repo_access",
    "requires",
]

COOKIE = "farm_token"
# Reachable without a token: liveness, the API's description, the webhooks (which carry
# their own signatures), the provenance public key (verifiers need it), the dashboard's
# login page, and /deliver: the deployed software's own clients ask it which version
# they get (it names versions and digests; downloading them needs `read`).
PUBLIC_PATHS = frozenset(
    {
        "/healthz",
        "/api/v1/keys/provenance.pub",
        "/api/v1/deliver/{project}",
        "/openapi.json",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
        "/api/v1/hooks/github",
        "/api/v1/hooks/gitlab",
        "/login",
        "/logout",
    }
)
_TOUCH_EVERY = 60.0  # seconds between last-used writes for one token
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER_VALUE = "farm"  # X-Requested-With on cookie-authenticated changes


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) only listens on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def check_exposure(settings: Settings) -> None:
    """Refuse to serve without authentication anywhere but loopback (one-line reason)."""
    if not settings.auth and not is_loopback(settings.api_host):
        raise ConfigError(
            f"refusing to listen on {settings.api_host} with FARM_AUTH=false: anyone who can "
            "reach it could run code and deploy; keep auth on (the default) or bind 127.0.0.1"
        )


class Authenticator:
    """Turns a presented token into a :class:`Principal` (or 401), with a short cache."""

    def __init__(self, tokens: TokenDb, settings: Settings) -> None:
        self.tokens = tokens
        self.enabled = settings.auth
        self._ttl = settings.token_cache_seconds
        self._cache: dict[str, tuple[float, TokenInfo | None]] = {}
        self._touched: dict[int, float] = {}
        self._lock = threading.Lock()
        self._toucher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="token-touch")

    def _lookup(self, token: str) -> TokenInfo | None:
        key = hash_token(token)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        info = self.tokens.lookup(token)
        with self._lock:
            if len(self._cache) > 10_000:  # a flood of made-up tokens must not grow it
                self._cache.clear()
            self._cache[key] = (now, info)
        return info

    def knows(self, token: str | None) -> bool:
        """Whether :meth:`principal` answers ``token`` from memory (no database read)."""
        if not self.enabled or not token:
            return True
        with self._lock:
            hit = self._cache.get(hash_token(token))
        return hit is not None and time.monotonic() - hit[0] < self._ttl

    def principal(self, token: str | None) -> Principal:
        """The caller ``token`` makes; Unauthorized if there is none or it does not work."""
        if not self.enabled:
            return ANYONE
        if not token:
            raise Unauthorized(
                "this farm needs an API token: send 'Authorization: Bearer <token>' "
                "(set FARM_TOKEN for the CLI; make one with `farm token create`)"
            )
        info = self._lookup(token)
        if info is None:
            raise Unauthorized("unknown API token")
        state = info.state(datetime.now(UTC))
        if state != "active":
            raise Unauthorized(f"API token {info.prefix}… ({info.name}) is {state}")
        self._touch(info.id)
        return info.principal()

    def _touch(self, token_id: int) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._touched.get(token_id, -_TOUCH_EVERY) < _TOUCH_EVERY:
                return
            self._touched[token_id] = now
        # Off the request's path: the write waits for the database's write lock, which a
        # big submit holds for a while, and no request should wait for a timestamp.
        self._toucher.submit(self._touch_now, token_id, datetime.now(UTC))

    def _touch_now(self, token_id: int, at: datetime) -> None:
        # A busy database must not fail anything over a timestamp.
        with contextlib.suppress(Exception):
            self.tokens.touch(token_id, at)

    def authorize(self, header: str | None, *scopes: Scope) -> Principal:
        """Check an ``Authorization`` header value for any of ``scopes`` (the data plane)."""
        principal = self.principal(bearer(header))
        demand(principal, scopes)
        return principal


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value, or None."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def demand(principal: Principal, scopes: tuple[Scope, ...]) -> None:
    """Forbidden unless ``principal`` holds one of ``scopes``."""
    if not principal.has_any(*scopes):
        wanted = " or ".join(s.value for s in scopes)
        raise Forbidden(f"this needs a token with the {wanted} scope ({principal.name} has not)")


async def _principal(request: Request) -> Principal:
    """The request's caller, resolved once per request.

    A dependency FastAPI runs on the event loop, not in its thread pool (a sync one
    costs a thread hop per request: a third of the API's CPU on the worker routes,
    issue 10): a token the authenticator knows is answered from memory; only a
    lookup in the database goes to a thread.
    """
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    auth: Authenticator = request.app.state.auth
    header_token = bearer(request.headers.get("authorization"))
    token = header_token or request.cookies.get(COOKIE)
    if auth.knows(token):
        return _resolve(request, auth, header_token, token)
    return await run_in_threadpool(_resolve, request, auth, header_token, token)


def _resolve(
    request: Request, auth: Authenticator, header_token: str | None, token: str | None
) -> Principal:
    principal = auth.principal(token)
    # CSRF guard: a browser attaches the dashboard's cookie to requests other sites make
    # it send, so a change authenticated by the cookie alone must also carry the header
    # ``X-Requested-With: farm``.  A cross-site form cannot set a custom header, and a
    # cross-site fetch that does needs a CORS preflight this API never grants; the
    # dashboard's own script sends it.  Bearer tokens are never sent by a browser on its
    # own, so they need no such proof.
    if (
        header_token is None
        and token
        and request.method not in _SAFE_METHODS
        and request.headers.get("x-requested-with") != CSRF_HEADER_VALUE
    ):
        raise Forbidden(
            "a change authenticated by the dashboard's cookie needs the header "
            f"'X-Requested-With: {CSRF_HEADER_VALUE}' (CSRF guard); API clients send "
            "'Authorization: Bearer <token>'"
        )
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(_principal)]


def requires(*scopes: Scope) -> Any:
    """A dependency: the caller holds one of ``scopes`` (401 without a token, else 403).

    Use on a router (``APIRouter(dependencies=[requires(Scope.READ)])``) or a route.
    """

    async def check(principal: PrincipalDep) -> Principal:  # on the loop: no I/O
        demand(principal, scopes)
        return principal

    check.farm_scopes = scopes  # type: ignore[attr-defined]  # read by the route audit test
    return Depends(check)


def scope_dep(*scopes: Scope) -> Callable[..., Awaitable[Principal]]:
    """The callable behind :func:`requires` (for ``Annotated[Principal, Depends(...)]``)."""
    dep: Callable[..., Awaitable[Principal]] = requires(*scopes).dependency
    return dep


def check_repo_access(principal: Principal, repo: str, settings: Settings) -> None:
    """A repository path on the coordinator's disk needs ``FARM_LOCAL_REPO_SCOPE`` (admin).

    Remote URLs are open to anyone who may submit; webhooks never reach here with a path.
    """
    needed = Scope(settings.local_repo_scope)
    if is_local_repo(repo) and not principal.has(needed):
        raise Forbidden(
            f"building a path on the farm's own disk needs the {needed.value} scope; "
            "submit a git URL (https://, ssh://, git@host:) instead"
        )
