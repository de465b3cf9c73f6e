"""The resolver: most specific CIDR wins, both families, mapped IPv4, and a brute-force oracle."""

from __future__ import annotations

import ipaddress
import random

import pytest

from farm.errors import InvalidRequest
from farm.rollout import Resolver, bench, load_plan

SCOPES = {
    "canada": ["198.51.100.0/24", "2001:db8:ca::/48"],
    "usa": ["203.0.113.0/24", "2001:db8:1::/48"],
}


def test_live_scopes_get_the_new_version_and_the_rest_the_previous() -> None:
    r = Resolver.compile(SCOPES, ["canada"])
    assert r.resolve("198.51.100.1") == "canada"
    assert r.resolve("198.51.100.255") == "canada"
    assert r.resolve("198.51.101.0") is None
    assert r.resolve("203.0.113.9") is None  # usa, not live yet
    assert r.resolve("2001:db8:ca:ffff::1") == "canada"
    assert r.resolve("2001:db8:cb::1") is None
    assert r.resolve("8.8.8.8") is None


def test_all_covers_every_address_except_scopes_that_are_not_live() -> None:
    r = Resolver.compile(SCOPES, ["canada", "all"])
    assert r.resolve("8.8.8.8") == "all"
    assert r.resolve("0.0.0.0") == "all" and r.resolve("255.255.255.255") == "all"
    assert (
        r.resolve("::") == "all" and r.resolve("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff") == "all"
    )
    assert r.resolve("198.51.100.7") == "canada"
    assert r.resolve("203.0.113.7") is None  # the most specific network owns it
    everyone = Resolver.compile(SCOPES, ["canada", "usa", "all"])
    assert everyone.resolve("203.0.113.7") == "usa"


def test_the_most_specific_network_wins() -> None:
    nested = {
        "wide": ["10.0.0.0/8"],
        "mid": ["10.1.0.0/16"],
        "narrow": ["10.1.2.0/24", "10.1.2.128/25"],
        "host": ["10.1.2.200/32"],
    }
    r = Resolver.compile(nested, ["wide", "narrow", "host"])
    assert r.resolve("10.9.9.9") == "wide"
    assert r.resolve("10.1.9.9") is None  # mid is not live
    assert r.resolve("10.1.2.3") == "narrow"
    assert r.resolve("10.1.2.129") == "narrow"
    assert r.resolve("10.1.2.200") == "host"
    assert r.resolve("10.1.2.201") == "narrow"
    assert r.resolve("10.1.3.0") is None
    assert r.resolve("10.2.0.0") == "wide"
    assert r.resolve("11.0.0.0") is None


def test_ipv4_mapped_ipv6_addresses_resolve_as_ipv4() -> None:
    r = Resolver.compile(SCOPES, ["canada"])
    assert r.resolve("::ffff:198.51.100.3") == "canada"
    assert r.resolve("::FFFF:c633:6403") == "canada"
    assert r.resolve("0:0:0:0:0:ffff:203.0.113.1") is None
    # a mapped network in the scopes is an IPv4 network too
    mapped = Resolver.compile({"x": [ipaddress.ip_network("::ffff:192.0.2.0/120")]}, ["x"])
    assert mapped.resolve("192.0.2.77") == "x" and mapped.resolve("::ffff:192.0.2.77") == "x"


def test_network_objects_and_edges_of_the_address_space() -> None:
    r = Resolver.compile(
        {"lo": [ipaddress.ip_network("0.0.0.0/32")], "hi": ["255.255.255.255/32", "ffff::/16"]},
        ["lo", "hi"],
    )
    assert r.resolve("0.0.0.0") == "lo" and r.resolve("0.0.0.1") is None
    assert r.resolve("255.255.255.255") == "hi" and r.resolve("255.255.255.254") is None
    assert r.resolve("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff") == "hi"


def test_neighbouring_intervals_of_one_value_are_merged() -> None:
    r = Resolver.compile({"a": ["10.0.0.0/25", "10.0.0.128/25"], "b": ["10.0.1.0/24"]}, ["a"])
    assert r.intervals(4) == [(0, None), (167772160, "a"), (167772416, None)]


@pytest.mark.parametrize(
    "addr",
    ["", "1.2.3", "1.2.3.256", "01.2.3.4", " 1.2.3.4", "1.2.3.4/32", "::g", "fe80::1%eth0", "x"],
)
def test_invalid_addresses_are_refused(addr: str) -> None:
    with pytest.raises(InvalidRequest, match="is not an IPv4 or IPv6 address"):
        Resolver.compile(SCOPES, ["canada"]).resolve(addr)


def test_non_strings_are_refused() -> None:
    with pytest.raises(InvalidRequest):
        Resolver.compile(SCOPES, []).resolve(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("scopes", "live", "message"),
    [
        ({"a": ["10.0.0.1/8"]}, [], "host bits set"),
        ({"a": ["nope"]}, [], "scope 'a'"),
        ({"a": ["10.0.0.0/8"], "b": ["10.0.0.0/8"]}, [], "the same network is in scope 'a' and"),
        ({"a": ["10.0.0.0/8"]}, ["b"], "live scope(s) b are not defined"),
    ],
)
def test_tables_that_cannot_be_built(
    scopes: dict[str, list[str]], live: list[str], message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message.replace("(", r"\(").replace(")", r"\)")):
        Resolver.compile(scopes, live)


def test_the_same_network_twice_in_one_scope_is_fine() -> None:
    r = Resolver.compile({"a": ["10.0.0.0/8", "10.0.0.0/8"]}, ["a"])
    assert r.resolve("10.1.1.1") == "a"


def test_a_plans_scopes_compile_directly() -> None:
    plan = load_plan(
        "scopes: {canada: [198.51.100.0/24], usa: [203.0.113.0/24]}\n"
        "steps: [{scope: canada}, {scope: usa}, {scope: all}]\n"
    )
    r = Resolver.compile(plan.scopes, ["canada", "usa"])
    assert [r.resolve(a) for a in ("198.51.100.1", "203.0.113.1", "192.0.2.1")] == [
        "canada",
        "usa",
        None,
    ]


def _random_network(rng: random.Random, v6: bool) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if v6:
        prefix = rng.choice([16, 32, 48, 56, 64, 96, 120, 128])
        base = (
            rng.getrandbits(128)
            if rng.random() < 0.5
            else (0x2001_0DB8 << 96) | rng.getrandbits(96)
        )
        return ipaddress.IPv6Network((base >> (128 - prefix) << (128 - prefix), prefix))
    prefix = rng.choice([0, 4, 8, 12, 16, 20, 24, 26, 28, 30, 31, 32])
    base = rng.getrandbits(32) if rng.random() < 0.3 else (10 << 24) | rng.getrandbits(24)
    return ipaddress.IPv4Network((base >> (32 - prefix) << (32 - prefix) if prefix else 0, prefix))


def _oracle(
    nets: dict[ipaddress.IPv4Network | ipaddress.IPv6Network, str], live: set[str], addr: str
) -> str | None:
    ip = ipaddress.ip_address(addr)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    best: tuple[int, str] | None = None
    for net, scope in nets.items():
        if net.version == ip.version and ip in net and (best is None or net.prefixlen > best[0]):
            best = (net.prefixlen, scope)
    if best is None:
        return "all" if "all" in live else None
    return best[1] if best[1] in live else None


@pytest.mark.parametrize("seed", range(12))
def test_agrees_with_a_brute_force_scan(seed: int) -> None:
    rng = random.Random(seed)
    names = ["a", "b", "c", "d", "e"]
    nets: dict[ipaddress.IPv4Network | ipaddress.IPv6Network, str] = {}
    for _ in range(rng.randint(1, 60)):
        nets.setdefault(_random_network(rng, rng.random() < 0.4), rng.choice(names))
    scopes: dict[str, list[str]] = {n: [] for n in names}
    for net, scope in nets.items():
        scopes[scope].append(str(net))
    live = set(rng.sample([*names, "all"], rng.randint(0, 6)))
    r = Resolver.compile(scopes, live)

    probes: list[str] = []
    for net in nets:  # the edges of every network and their neighbours
        first, last = int(net.network_address), int(net.broadcast_address)
        top = (1 << net.max_prefixlen) - 1
        for value in {first, last, max(first - 1, 0), min(last + 1, top)}:
            probes.append(
                str(
                    ipaddress.ip_address(value)
                    if net.version == 6
                    else ipaddress.IPv4Address(value)
                )
            )
    probes += [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(200)]
    probes += [str(ipaddress.IPv6Address(rng.getrandbits(128))) for _ in range(100)]
    probes += [f"::ffff:{ipaddress.IPv4Address(rng.getrandbits(32))}" for _ in range(50)]
    for addr in probes:
        assert r.resolve(addr) == _oracle(nets, live, addr), addr


def test_bench_measures_lookups_per_second() -> None:
    assert bench(n_cidrs=500, lookups=20_000) > 50_000
