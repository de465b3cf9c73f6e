"""Rollout benchmark: who gets which version, in-process and over HTTP.

In-process: :meth:`farm.rollout.resolver.Resolver.resolve` over a table of 10,000 CIDRs
(``farm.rollout.resolver.bench``: nested networks, hits and misses; and a table of random
IPv4 /24s and IPv6 /48s in 50 scopes, queried with uniformly random IPv4 + IPv6 addresses
and with addresses inside the table). Target: >= 1,000,000 lookups/s.

Over HTTP: a real ``farm api`` process on 127.0.0.1 (with redis-server and one worker, to
build the release), a release whose ``.farm/rollout.yml`` has the same 10,000 CIDRs, a
rollout of it with half the scopes live, then ``GET /api/v1/deliver/{project}?ip=`` over
one keep-alive httpx client and over 4 concurrent clients (each bounded in requests):
p50/p99 latency and requests/s, with ``GET /healthz`` on the same client as the floor
the HTTP stack sets.

    python -m bench.rollout_bench [--requests 5000] [--clients 4] [--no-report]
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import random
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from farm.rollout.model import Plan
from farm.rollout.plan import load_plan
from farm.rollout.resolver import Resolver
from farm.rollout.resolver import bench as resolver_bench

N_CIDRS = 10_000
N_SCOPES = 50
LIVE_STEPS = 25  # the rollout is promoted this many times: steps 0..25 are live
TARGET = 1_000_000
SEED = 11

PIPELINE = """\
image: farm/busybox:latest
build:
  script: [echo ok]
"""


# --- the table ------------------------------------------------------------------------------


def make_scopes(n_cidrs: int = N_CIDRS, seed: int = SEED) -> dict[str, list[str]]:
    """``n_cidrs`` distinct networks, 80 % IPv4 /24 and 20 % IPv6 /48, in 50 scopes."""
    rng = random.Random(seed)
    v4: set[int] = set()
    v6: set[int] = set()
    while len(v4) + len(v6) < n_cidrs:
        if rng.random() < 0.8:
            v4.add(rng.getrandbits(24) << 8)
        else:
            v6.add(rng.getrandbits(48) << 80)
    names = [f"s{i:02d}" for i in range(N_SCOPES)]
    scopes: dict[str, list[str]] = {n: [] for n in names}
    for net in sorted(v4):
        scopes[rng.choice(names)].append(f"{ipaddress.IPv4Address(net)}/24")
    for net in sorted(v6):
        scopes[rng.choice(names)].append(f"{ipaddress.IPv6Address(net)}/48")
    return scopes


def plan_yaml(scopes: dict[str, list[str]]) -> str:
    """A rollout plan over ``scopes``: one step per scope (bake an hour), then ``all``."""
    lines = ["scopes:"]
    for name, cidrs in scopes.items():
        lines.append(f"  {name}: [{', '.join(repr(c) for c in cidrs)}]")
    lines.append("steps:")
    lines += [f"  - {{scope: {name}, bake: 3600}}" for name in scopes]
    lines.append("  - {scope: all, bake: 3600}")
    return "\n".join(lines) + "\n"


def addresses(scopes: dict[str, list[str]], n: int, hits: float, seed: int = SEED) -> list[str]:
    """``n`` addresses, half IPv4 and half IPv6; a share ``hits`` inside the table's networks,
    the rest uniformly random (which almost always misses a 10,000-network table)."""
    rng = random.Random(seed)
    nets = [ipaddress.ip_network(c) for cidrs in scopes.values() for c in cidrs]
    v4 = [n for n in nets if n.version == 4]
    v6 = [n for n in nets if n.version == 6]
    out: list[str] = []
    for i in range(n):
        six = i % 2 == 1
        if rng.random() < hits:
            net = rng.choice(v6 if six else v4)
            host = rng.getrandbits(net.max_prefixlen - net.prefixlen)
            out.append(str(net.network_address + host))
        elif six:
            out.append(str(ipaddress.IPv6Address(rng.getrandbits(128))))
        else:
            out.append(str(ipaddress.IPv4Address(rng.getrandbits(32))))
    return out


# --- in-process -----------------------------------------------------------------------------


def best_rate(resolve: Callable[[str], object], queries: list[str], rounds: int = 5) -> float:
    """Lookups per second of the best of ``rounds`` passes over ``queries``."""
    best = 0.0
    for _ in range(rounds):
        began = time.perf_counter()
        for addr in queries:
            resolve(addr)
        best = max(best, len(queries) / (time.perf_counter() - began))
    return best


def in_process() -> dict[str, Any]:
    """Resolver figures: load, compile, lookups/s for three query mixes."""
    scopes = make_scopes()
    text = plan_yaml(scopes)
    began = time.perf_counter()
    plan = load_plan(text)
    load_s = time.perf_counter() - began
    began = time.perf_counter()
    Plan.from_dict(plan.to_dict(), "bench")
    from_dict_s = time.perf_counter() - began
    live = [s.scope for s in plan.steps[: LIVE_STEPS + 1]]
    began = time.perf_counter()
    resolver = Resolver.compile(plan.scopes, live)
    compile_s = time.perf_counter() - began
    resolve = resolver.resolve
    random_q = addresses(scopes, 200_000, hits=0.0)
    hit_q = addresses(scopes, 200_000, hits=1.0, seed=SEED + 1)
    hit_scopes = [resolve(a) for a in hit_q[:2000]]
    return {
        "plan_bytes": len(text.encode()),
        "cidrs": sum(len(c) for c in scopes.values()),
        "load_s": load_s,
        "from_dict_s": from_dict_s,
        "compile_s": compile_s,
        "intervals": len(resolver.intervals(4)) + len(resolver.intervals(6)),
        "builtin": resolver_bench(N_CIDRS, 1_000_000),
        "random": best_rate(resolve, random_q),
        "hits": best_rate(resolve, hit_q),
        "hit_live_share": sum(1 for s in hit_scopes if s is not None) / len(hit_scopes),
        "v6_share": sum(1 for a in random_q if ":" in a) / len(random_q),
    }


# --- over HTTP ------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of ``values`` (seconds)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))]


def timed(
    client: httpx.Client, paths: list[tuple[str, dict[str, str]]], deadline: float
) -> list[float]:
    """Latency of each GET in ``paths`` (each must answer 200); stops at ``deadline``."""
    out: list[float] = []
    for path, params in paths:
        if time.monotonic() > deadline:
            break
        began = time.perf_counter()
        resp = client.get(path, params=params)
        out.append(time.perf_counter() - began)
        if resp.status_code != 200:
            raise RuntimeError(f"GET {path} {params}: {resp.status_code} {resp.text[:200]}")
    return out


def figures(latencies: list[float], wall: float) -> dict[str, float]:
    return {
        "n": float(len(latencies)),
        "rps": len(latencies) / wall,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "p999_ms": percentile(latencies, 99.9) * 1000,
        "max_ms": max(latencies) * 1000,
        "slow": float(sum(1 for x in latencies if x > SLOW)),
    }


SLOW = 0.05  # seconds: a request slower than this is counted


def measure(
    url: str, paths: list[tuple[str, dict[str, str]]], clients: int, budget: float
) -> dict[str, float]:
    """``paths`` split over ``clients`` keep-alive clients released together; at most
    ``budget`` seconds (a client stops starting requests after that)."""
    share = len(paths) // clients
    results: list[list[float]] = [[] for _ in range(clients)]
    barrier = threading.Barrier(clients)
    errors: list[BaseException] = []
    deadline = [0.0]

    def run(i: int) -> None:
        try:
            with httpx.Client(base_url=url, timeout=60) as client:
                client.get("/healthz")  # connected before the clock starts
                if barrier.wait(30) == 0:
                    deadline[0] = time.monotonic() + budget
                barrier.wait(30)
                results[i] = timed(client, paths[i * share : (i + 1) * share], deadline[0])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    began = time.perf_counter()
    for t in threads:
        t.join(budget + 120)
    wall = time.perf_counter() - began
    if errors or any(t.is_alive() for t in threads):
        raise RuntimeError(f"a client failed: {errors[:1]!r}")
    out = figures([x for r in results for x in r], wall)
    out["clients"] = float(clients)
    out["cut"] = float(out["n"] < share * clients)
    return out


def roll_out(farm: Any, root: Path, project: str, plan: str, promotes: int) -> dict[str, Any]:
    """Build ``project`` with ``plan``, release it as 1.0.0 and 1.1.0, roll 1.1.0 out and
    promote it ``promotes`` times; the rollout document (plus how long the start took)."""
    from tests.farmtest import make_repo

    repo = make_repo(root / project, {".farm-ci.yml": PIPELINE, ".farm/rollout.yml": plan})
    with httpx.Client(base_url=farm.url, timeout=60) as http:
        build = farm.wait(farm.submit(repo)["id"], timeout=300)
        if build["status"] != "success":
            raise RuntimeError(f"the release build failed: {build}")
        for version in ("1.0.0", "1.1.0"):
            resp = http.post("/api/v1/releases", json={"build": build["id"], "version": version})
            if resp.status_code not in (200, 201):
                raise RuntimeError(resp.text)
        began = time.perf_counter()
        resp = http.post("/api/v1/rollouts", json={"project": project, "version": "1.1.0"})
        start_s = time.perf_counter() - began
        for _ in range(promotes):
            if resp.status_code not in (200, 201):
                raise RuntimeError(resp.text)
            rid = resp.json()["id"]
            resp = http.post(f"/api/v1/rollouts/{rid}/promote", json={"actor": "bench"})
        if resp.status_code not in (200, 201):
            raise RuntimeError(resp.text)
        doc: dict[str, Any] = resp.json()
        doc["start_s"] = start_s
        return doc


def over_http(requests: int, clients: int, budget: float) -> dict[str, Any]:
    """Start a farm on 127.0.0.1, roll the 10,000-CIDR plan out halfway, time /deliver."""
    from bench.core_bench import start_farm

    scopes = make_scopes()
    small = {"canada": ["198.51.100.0/24", "2001:db8:ca::/48"], "usa": ["203.0.113.0/24"]}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        farm, redis = start_farm(root / "farm", 1)
        try:
            big = roll_out(farm, root, "geo-shop", plan_yaml(scopes), LIVE_STEPS)
            little = roll_out(farm, root, "small-shop", plan_yaml(small), 0)
            pool = addresses(scopes, 4096, hits=0.5, seed=SEED + 2)
            small_pool = addresses(small, 4096, hits=0.5, seed=SEED + 3)

            def paths(project: str, ips: list[str], n: int) -> list[tuple[str, dict[str, str]]]:
                return [(f"/api/v1/deliver/{project}", {"ip": ips[i % len(ips)]}) for i in range(n)]

            with httpx.Client(base_url=farm.url, timeout=60) as c:
                answers = {
                    c.get(p, params=q).json()["version"] for p, q in paths("geo-shop", pool, 200)
                }
                if answers != {"1.0.0", "1.1.0"}:
                    raise RuntimeError(
                        f"deliver answers only {answers}: the table is not half live"
                    )
                far = time.monotonic() + budget
                timed(c, paths("geo-shop", pool, 300), far)  # warm: route compiled
                timed(c, paths("small-shop", small_pool, 300), far)
            rows = {
                "healthz": measure(farm.url, [("/healthz", {})] * requests, 1, budget),
                "big-1": measure(farm.url, paths("geo-shop", pool, requests), 1, budget),
                "big-n": measure(farm.url, paths("geo-shop", pool, requests), clients, budget),
                "small-1": measure(farm.url, paths("small-shop", small_pool, requests), 1, budget),
                "small-n": measure(
                    farm.url, paths("small-shop", small_pool, requests), clients, budget
                ),
            }
            return {
                "rows": rows,
                "clients": clients,
                "budget": budget,
                "start_s": big["start_s"],
                "state": f"{big['state']} at step {big['step'] + 1} of {len(big['steps'])}",
                "small_state": f"{little['state']} at step {little['step'] + 1}",
            }
        finally:
            for proc in reversed(farm.procs):
                proc.stop()
            redis.terminate()
            redis.wait(10)


# --- the report -----------------------------------------------------------------------------


def markdown(p: dict[str, Any], h: dict[str, Any] | None) -> str:
    """The report section."""

    def rate(x: float) -> str:
        ok = "meets target" if x >= TARGET else "**below target**"
        return f"{x:,.0f} /s ({ok}: ≥ 1,000,000)"

    text = (
        "## Rollouts: who gets which version\n\n"
        "`python -m bench.rollout_bench`. The table: "
        f"{p['cidrs']:,} CIDRs (80 % IPv4 /24, 20 % IPv6 /48, random) in {N_SCOPES} scopes, "
        f"a plan of {p['plan_bytes'] / 1024:,.0f} KiB with one step per scope then `all`, "
        f"{LIVE_STEPS + 1} scopes live ({p['intervals']:,} intervals once flattened). "
        "In-process rates are the best of 5 passes.\n\n"
        "| in-process | figure |\n|---|---:|\n"
        f"| `resolve`, uniformly random IPv4 + IPv6 addresses ({p['v6_share']:.0%} IPv6; "
        f"almost all miss) | {rate(p['random'])} |\n"
        f"| `resolve`, addresses inside the table's networks (half IPv6; "
        f"{p['hit_live_share']:.0%} in live scopes) | {rate(p['hits'])} |\n"
        "| `farm.rollout.resolver.bench` (its own 10,000-CIDR table with nested /16s, "
        f"IPv4-mapped IPv6, hits and misses) | {rate(p['builtin'])} |\n"
        f"| `load_plan` of the plan file (parse + validate + overlap check) | "
        f"{p['load_s'] * 1000:,.0f} ms |\n"
        f"| `Plan.from_dict` (the stored plan validated again) | "
        f"{p['from_dict_s'] * 1000:,.0f} ms |\n"
        f"| `Resolver.compile` of the table | {p['compile_s'] * 1000:,.0f} ms |\n"
    )
    if h is None:
        return text + "\nHTTP: not measured in this run (`--no-http`).\n"

    def row(name: str, f: dict[str, float]) -> str:
        cut = f" (stopped at the {h['budget']:.0f} s budget)" if f["cut"] else ""
        return (
            f"| {name} | {f['n']:,.0f}{cut} | {f['rps']:,.0f} | {f['p50_ms']:.2f} ms | "
            f"{f['p99_ms']:.2f} ms | {f['p999_ms']:.1f} ms | {f['max_ms']:.1f} ms | "
            f"{f['slow']:,.0f} |\n"
        )

    c = h["clients"]
    r = h["rows"]
    rebuild_ms = (p["from_dict_s"] + p["compile_s"]) * 1000
    text += (
        "\nOver HTTP: a real `farm api` process (uvicorn, SQLite) on 127.0.0.1, started with "
        "redis-server and one worker to build the releases. `geo-shop`: a release of the plan "
        f"above rolled out to step {LIVE_STEPS + 1} ({h['state']}; starting it, which reads "
        f"and validates the plan from the source snapshot, took {h['start_s'] * 1000:,.0f} ms). "
        "`small-shop`: the same with a 3-CIDR plan (canada, usa, all; "
        f"{h['small_state']}). `GET /api/v1/deliver/{{project}}?ip=` for addresses half inside "
        "the table and half random, over keep-alive httpx clients released together on the "
        "same 2-core host (the clients' own time is in the figures); `/healthz` is the floor "
        f"the HTTP stack sets. Slow = over {SLOW * 1000:.0f} ms.\n\n"
        "| HTTP | requests | requests/s | p50 | p99 | p99.9 | max | slow |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|\n"
        + row("`/healthz`, 1 client (floor)", r["healthz"])
        + row("`/deliver` geo-shop (10,000 CIDRs), 1 client", r["big-1"])
        + row(f"`/deliver` geo-shop (10,000 CIDRs), {c} concurrent clients", r["big-n"])
        + row("`/deliver` small-shop (3 CIDRs), 1 client", r["small-1"])
        + row(f"`/deliver` small-shop (3 CIDRs), {c} concurrent clients", r["small-n"])
        + "\nThe lookup is about a microsecond (in-process, above): a request costs what "
        "uvicorn, FastAPI and httpx cost (compare the floor). `Routing` "
        "(farm/deploy/routing.py) compiles a project's table only when its rollout or the "
        "rollout's revision changed (a cheap query after each 1 s of trust), one request at a "
        "time while the others answer from the table they have; a rebuild costs "
        f"≈ {rebuild_ms:,.0f} ms of CPU for 10,000 CIDRs (figures above)."
    )
    if r["big-n"]["rps"] < 0.5 * r["big-1"]["rps"]:
        text += (
            f" With {c} concurrent clients the 10,000-CIDR project fell to "
            f"{r['big-n']['rps']:,.0f} requests/s (vs {r['big-1']['rps']:,.0f} with one): "
            "look at the routing cache first."
        )
    return text + "\n"


def main() -> None:
    """Run once, print and record the figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000, help="per measurement")
    parser.add_argument("--clients", type=int, default=4, help="concurrent HTTP clients")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per HTTP row")
    parser.add_argument("--no-http", action="store_true", help="in-process figures only")
    parser.add_argument("--no-report", action="store_true", help="print only")
    args = parser.parse_args()
    requests = max(100, min(args.requests, 100_000))  # bounded, whatever is asked
    clients = max(1, min(args.clients, 16))
    p = in_process()
    print(
        f"in-process: random {p['random']:,.0f}/s, hits {p['hits']:,.0f}/s, "
        f"resolver.bench {p['builtin']:,.0f}/s"
    )
    budget = max(5.0, min(args.budget, 300.0))
    h = None if args.no_http else over_http(requests, clients, budget)
    text = markdown(p, h)
    print(text)
    if not args.no_report:
        from bench.report import update_section

        update_section("rollout", text)


if __name__ == "__main__":
    main()
