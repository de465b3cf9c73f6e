"""``/api/v1/tokens``: make, list and revoke API tokens (admin scope).

A token is shown once, in the answer that made it; the list shows each token's first
characters, scopes and dates, never the token.  The coordinator's own host can also make
one without any token (``farm token create``: the operator's break-glass).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, Field

from farm.api.auth import PrincipalDep, requires
from farm.api.errors import errors
from farm.api.limits import MAX_ID, Line
from farm.db.tokens import TokenDb
from farm.domain.auth import Scope, TokenInfo, parse_scopes
from farm.errors import InvalidRequest

router = APIRouter(prefix="/api/v1/tokens", tags=["tokens"], dependencies=[requires(Scope.ADMIN)])
MAX_LIFETIME_DAYS = 3650


class TokenRequest(BaseModel):
    """A token to make: its name, scopes and lifetime (days; none = until revoked)."""

    name: Line
    scopes: list[Scope] = Field(min_length=1, max_length=len(Scope))
    expires_in_days: Annotated[float, Field(gt=0, le=MAX_LIFETIME_DAYS)] | None = None


class TokenOut(BaseModel):
    """A token as listed: never the token itself."""

    id: int
    name: str
    prefix: str
    scopes: list[Scope]
    state: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def of(cls, info: TokenInfo) -> TokenOut:
        """The listing of a stored token."""
        return cls(
            id=info.id,
            name=info.name,
            prefix=info.prefix,
            scopes=list(info.scopes),
            state=info.state(datetime.now(UTC)),
            created_at=info.created_at,
            created_by=info.created_by,
            expires_at=info.expires_at,
            revoked_at=info.revoked_at,
            last_used_at=info.last_used_at,
        )


class NewToken(TokenOut):
    """A token just made: the only answer that carries ``token``."""

    token: str


def _tokens(request: Request) -> TokenDb:
    tokens: TokenDb = request.app.state.auth.tokens
    return tokens


@router.post("", status_code=201, response_model=NewToken, responses=errors(422))
def create_token(
    body: TokenRequest, request: Request, principal: PrincipalDep, response: Response
) -> NewToken:
    """Make a token; the answer is the only time its value is shown."""
    scopes = parse_scopes([s.value for s in body.scopes])
    if Scope.WORKER in scopes and len(scopes) > 1:
        raise InvalidRequest("a worker token carries the worker scope alone")
    expires = (
        datetime.now(UTC) + timedelta(days=body.expires_in_days)
        if body.expires_in_days is not None
        else None
    )
    info, token = _tokens(request).create(
        body.name, scopes, created_by=principal.name, expires_at=expires
    )
    response.headers["Location"] = f"/api/v1/tokens/{info.id}"
    return NewToken(**TokenOut.of(info).model_dump(), token=token)


@router.get("", response_model=list[TokenOut])
def list_tokens(request: Request) -> list[TokenOut]:
    """Every token, newest first."""
    return [TokenOut.of(t) for t in _tokens(request).list()]


@router.delete("/{token_id}", response_model=TokenOut, responses=errors(404))
def revoke_token(token_id: Annotated[int, Path(ge=1, le=MAX_ID)], request: Request) -> TokenOut:
    """Revoke a token (it stops working within FARM_TOKEN_CACHE_SECONDS)."""
    return TokenOut.of(_tokens(request).revoke(token_id))
