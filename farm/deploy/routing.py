"""Which client gets which version: the compiled routing table of every project.

For a project, the newest rollout that started decides: addresses in its live scopes get
its version, everyone else its ``previous_version`` (an aborted rollout has no live
scope; a succeeded one has ``all``). A project without rollouts serves its latest
release to everyone. Tables are compiled once per rollout revision into a
:class:`~farm.rollout.resolver.Resolver` (sorted intervals, bisect) and cached; every
transition this process applies invalidates its project at once, and a short TTL bounds
how stale a table can be when another API process applied the change.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from farm.db.releases import RegistryDb
from farm.db.rollouts import RolloutDb
from farm.deploy.plans import PlanCache
from farm.domain.statuses import ArtifactKind
from farm.errors import InvalidRequest, NotFound
from farm.rollout import state as rules
from farm.rollout.model import Plan
from farm.rollout.nginx import geo_block
from farm.rollout.resolver import Resolver

_SERVED = (ArtifactKind.ARCHIVE, ArtifactKind.DELIVERABLE, ArtifactKind.DOTENV)


@dataclass(frozen=True)
class Route:
    """One project's compiled routing state."""

    project: str
    rollout: int | None
    version: str | None  # what live scopes get
    previous_version: str | None  # what everyone else gets
    resolver: Resolver
    plan: Plan | None
    live: tuple[str, ...]


class Routing:
    """The deliver endpoint's brain: cached per-project routes, resolved in microseconds.

    A cached route is trusted for ``ttl`` seconds; after that one cheap query asks
    whether the project's routing rollout or its revision changed, and only then is the
    table compiled again — by one request at a time per project, while the others keep
    answering from the table they have.
    """

    def __init__(self, rollouts: RolloutDb, registry: RegistryDb, ttl: float = 1.0) -> None:
        self._rollouts = rollouts
        self._registry = registry
        self._ttl = ttl
        # project -> (trusted until, (rollout id, revision) or None, route)
        self._routes: dict[str, tuple[float, tuple[int, int] | None, Route]] = {}
        self.plans = PlanCache()  # shared with the engine: one validation per rollout
        self._artifacts: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._building: dict[str, threading.Lock] = {}

    def invalidate(self, project: str) -> None:
        """Forget ``project``'s table (a transition changed it)."""
        with self._lock:
            self._routes.pop(project, None)

    def route(self, project: str) -> Route:
        """The current route of ``project``; NotFound when it has no release at all."""
        with self._lock:
            hit = self._routes.get(project)
            building = self._building.setdefault(project, threading.Lock())
        if hit is not None and hit[0] > time.monotonic():
            return hit[2]
        key = self._rollouts.routing_key(project)
        if hit is not None and hit[1] == key and key is not None:
            self._store(project, key, hit[2])  # unchanged: trust it for another ttl
            return hit[2]
        if hit is not None and not building.acquire(blocking=False):
            return hit[2]  # someone is compiling the new table; answer from the old one
        if hit is None:
            building.acquire()
        try:
            with self._lock:
                fresh = self._routes.get(project)
            if fresh is not None and fresh is not hit and fresh[1] == key:
                return fresh[2]  # compiled by the request we waited for
            route = self._compile(project)
            self._store(project, key, route)
            return route
        finally:
            building.release()

    def _store(self, project: str, key: tuple[int, int] | None, route: Route) -> None:
        with self._lock:
            self._routes[project] = (time.monotonic() + self._ttl, key, route)

    def _compile(self, project: str) -> Route:
        rec = self._rollouts.routing(project)
        if rec is None:
            latest = self._registry.list_releases(project, limit=1)
            if not latest:
                raise NotFound(f"project {project!r} has no release to deliver")
            everyone = Resolver.compile({}, ["all"])
            return Route(project, None, latest[0].version, latest[0].version, everyone, None, ())
        plan = self.plans.of(rec)
        live = tuple(rules.live_scopes(rec.snapshot, plan))
        resolver = Resolver.compile(plan.scopes, live)
        snap = rec.snapshot
        return Route(project, rec.id, snap.version, snap.previous_version, resolver, plan, live)

    def deliver(self, project: str, address: str) -> dict[str, Any]:
        """What ``address`` gets of ``project``: version, scope, rollout, artifacts."""
        route = self.route(project)
        scope = route.resolver.resolve(address)
        version = route.version if scope is not None else route.previous_version
        return {
            "project": project,
            "address": address,
            "version": version,
            "scope": scope,
            "rollout": route.rollout,
            "artifacts": self._artifacts_of(project, version) if version else [],
        }

    def _artifacts_of(self, project: str, version: str) -> list[dict[str, Any]]:
        key = (project, version)
        with self._lock:
            cached = self._artifacts.get(key)
        if cached is not None:
            return cached  # a release is immutable: its artifacts never change
        release = self._registry.get_release(project, version)
        found = self._registry.search_artifacts(build=release.build_id, limit=1000)
        arts = [
            {
                "name": a.name,
                "kind": a.kind,
                "digest": a.digest,
                "size": a.size,
                "url": f"/api/v1/artifacts/{a.digest}",
            }
            for a in found
            if a.kind in _SERVED
        ]
        with self._lock:
            self._artifacts[key] = arts
        return arts

    def nginx_geo(self, project: str, trusted_proxies: Sequence[str]) -> str:
        """An nginx ``geo`` block routing ``project``'s clients as :meth:`deliver` does."""
        route = self.route(project)
        scopes = dict(route.plan.scopes) if route.plan else {}
        return geo_block(
            project,
            scopes,
            route.live or (("all",) if route.plan is None else ()),
            route.version or "",
            route.previous_version,
            trusted_proxies,
        )


def client_address(peer: str | None, forwarded_for: str | None, trusted: Sequence[str]) -> str:
    """The client's address as nginx's realip module finds it with ``real_ip_recursive``.

    ``X-Forwarded-For`` counts only when the peer is a trusted proxy; then the rightmost
    address that is not itself a trusted proxy is the client.
    """
    if peer is None:
        raise InvalidRequest("the client address is unknown: pass ?ip=ADDRESS")
    if not forwarded_for or not _trusted(peer, trusted):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer


def _trusted(address: str, trusted: Sequence[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(net, strict=False) for net in trusted)
