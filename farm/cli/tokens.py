"""``farm token``: make, list and revoke API tokens.

On the coordinator's own host (its database is here: the SQLite file under
``FARM_DATA_DIR``, or ``FARM_DATABASE_URL``) the commands work on the database directly
and need no token: the operator's break-glass when every admin token is lost.  Anywhere
else they call ``/api/v1/tokens`` with an admin token.  ``create`` prints the token
alone on stdout, so ``FARM_TOKEN=$(farm token create …)`` works.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from farm.cli.client import ApiClient
from farm.domain.auth import Scope, TokenInfo, parse_scopes
from farm.errors import InvalidRequest
from farm.settings import Settings, get_settings

if TYPE_CHECKING:
    from farm.db.tokens import TokenDb

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mhdw]?)\s*$")
_UNIT_DAYS = {"m": 1 / 1440, "h": 1 / 24, "d": 1.0, "w": 7.0, "": 1.0}


def parse_lifetime(text: str | None) -> float | None:
    """Days from ``90m``, ``12h``, ``30d``, ``2w`` or a plain number of days; None: forever."""
    if text is None or text.strip().lower() in ("", "never"):
        return None
    match = _DURATION.match(text.lower())
    if match is None or float(match[1]) <= 0:
        raise InvalidRequest(f"--expires {text!r}: give e.g. 90m, 12h, 30d, 2w or never")
    return float(match[1]) * _UNIT_DAYS[match[2]]


def _local_db(settings: Settings) -> bool:
    """Whether this host holds the farm's database (the break-glass path)."""
    if settings.database_url:
        return True
    return (settings.data_dir / "farm.db").is_file()


def _token_db(settings: Settings) -> TokenDb:
    # Imported here: only the break-glass path needs SQLAlchemy and the migrations.
    from farm.db.session import make_engine, make_sessionmaker, migrate
    from farm.db.tokens import TokenDb

    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    return TokenDb(make_sessionmaker(engine))


def _row(info: TokenInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "name": info.name,
        "prefix": info.prefix,
        "scopes": [s.value for s in info.scopes],
        "state": info.state(datetime.now(UTC)),
        "created_at": info.created_at.isoformat(),
        "created_by": info.created_by,
        "expires_at": info.expires_at.isoformat() if info.expires_at else None,
        "last_used_at": info.last_used_at.isoformat() if info.last_used_at else None,
    }


@click.group("token")
def token() -> None:
    """API tokens: create, ls, revoke (scopes: read, submit, deploy, admin, worker)."""


@token.command("create")
@click.option("--name", default=None, help="what the token is for (default: its scopes)")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    help="read, submit, deploy, admin or worker (repeat or comma-separate)",
)
@click.option("--expires", default=None, help="lifetime: 90m, 12h, 30d, 2w (default: never)")
@click.pass_context
def create(
    ctx: click.Context, name: str | None, scopes: tuple[str, ...], expires: str | None
) -> None:
    """Make a token and print it (only it, on stdout: it is never shown again)."""
    granted = parse_scopes(",".join(scopes))
    if Scope.WORKER in granted and len(granted) > 1:
        raise InvalidRequest("a worker token carries the worker scope alone")
    days = parse_lifetime(expires)
    label = name or "+".join(s.value for s in granted)
    settings = get_settings()
    if _local_db(settings):
        expires_at = datetime.now(UTC) + timedelta(days=days) if days is not None else None
        _, value = _token_db(settings).create(
            label, granted, created_by="farm token create (local)", expires_at=expires_at
        )
    else:
        body = {"name": label, "scopes": [s.value for s in granted], "expires_in_days": days}
        value = ApiClient(ctx.obj).json("POST", "/api/v1/tokens", json=body)["token"]
    click.echo(value)


@token.command("ls")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_context
def ls(ctx: click.Context, as_json: bool) -> None:
    """List tokens (never their values)."""
    settings = get_settings()
    if _local_db(settings):
        rows = [_row(t) for t in _token_db(settings).list()]
    else:
        rows = list(ApiClient(ctx.obj).json("GET", "/api/v1/tokens"))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'ID':>4}  {'PREFIX':<13} {'STATE':<8} {'SCOPES':<22} {'EXPIRES':<20} NAME")
    for r in rows:
        expires = (r.get("expires_at") or "never")[:19]
        scopes = ",".join(r["scopes"])
        click.echo(
            f"{r['id']:>4}  {r['prefix'] + '…':<13} {r['state']:<8} {scopes:<22} "
            f"{expires:<20} {r['name']}"
        )


@token.command("revoke")
@click.argument("token_id", type=int)
@click.pass_context
def revoke(ctx: click.Context, token_id: int) -> None:
    """Revoke token TOKEN_ID (see `farm token ls`)."""
    settings = get_settings()
    if _local_db(settings):
        _token_db(settings).revoke(token_id)
    else:
        ApiClient(ctx.obj).request("DELETE", f"/api/v1/tokens/{token_id}")
    click.echo(f"token {token_id} revoked", err=True)
