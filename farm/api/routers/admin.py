"""``/api/v1/admin``: operator actions — garbage collection of unreferenced blobs.

``POST /api/v1/admin/gc?dry_run=true&grace=SECONDS`` runs one pass of
:func:`farm.registry.gc.collect_garbage` (the rules are in :mod:`farm.domain.gc`).
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request

from farm.api.auth import requires
from farm.api.deps import BlobsDep, SettingsDep
from farm.api.routers.registry import registry_db
from farm.domain.auth import Scope
from farm.registry.gc import collect_garbage

router = APIRouter(prefix="/api/v1/admin", tags=["admin"], dependencies=[requires(Scope.ADMIN)])


@router.post("/gc")
def gc(
    request: Request,
    blobs: BlobsDep,
    settings: SettingsDep,
    dry_run: bool = False,
    grace: float | None = Query(
        None,
        ge=0,
        allow_inf_nan=False,  # "inf" would keep everything and be answered as null
        description="seconds; default FARM_GC_GRACE_SECONDS",
    ),
) -> dict[str, object]:
    """Delete unreferenced blobs older than the grace window (``dry_run``: only report)."""
    window = settings.gc_grace_seconds if grace is None else grace
    return collect_garbage(registry_db(request), blobs, window, dry_run).to_dict()
