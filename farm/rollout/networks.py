"""CIDR parsing, scope names and the overlap sweep shared by the plan, nginx and geoip code.

Networks are held as integer intervals ``[first, last]`` per address family so that sorting
and containment are plain integer comparisons. CIDRs form a *laminar* family: two of them
are either disjoint or one contains the other, never partially overlapping. That is what
lets :func:`find_overlaps` find every cross-scope nesting with one sort and a stack, in
``O(n log n)`` for the 100,000 CIDRs a GeoIP import can produce.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

ALL = "all"
"""The built-in scope every client belongs to (``0.0.0.0/0`` and ``::/0``)."""

ALL_CIDRS = ("0.0.0.0/0", "::/0")
SCOPE_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
"""Scope names: lower case, digits, ``_`` and ``-``; they become nginx comments and URL values."""

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def scope_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a scope, or None when it can."""
    if not SCOPE_NAME_RE.fullmatch(name):
        return (
            f"scope name {name!r} is not allowed: use lower-case letters, digits, '_' and '-', "
            "starting with a letter or digit (at most 63 characters)"
        )
    return None


def parse_cidr(text: str) -> Network:
    """One network, strictly: host bits set is an error that names the intended network.

    A bare address is a one-address network (``/32`` or ``/128``). IPv4-mapped IPv6
    networks are refused because :class:`~farm.rollout.resolver.Resolver` answers mapped
    client addresses as IPv4, so such a CIDR could never match anyone.
    Raises :class:`ValueError` with a readable one-line message.
    """
    text = text.strip()
    try:
        net: Network = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        if "has host bits set" in str(exc):
            loose = ipaddress.ip_network(text, strict=False)
            raise ValueError(f"{text} has host bits set; did you mean {loose}?") from None
        raise ValueError(
            f"{text!r} is not a CIDR (write networks like 198.51.100.0/24 or 2001:db8::/32)"
        ) from None
    if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96 and net.subnet_of(_MAPPED):
        v4 = ipaddress.IPv4Network((int(net.network_address) & 0xFFFFFFFF, net.prefixlen - 96))
        raise ValueError(f"{text} is an IPv4-mapped IPv6 network; write it as {v4}")
    return net


@dataclass(frozen=True, slots=True)
class Span:
    """One CIDR as an integer interval, with the scope it belongs to and a caller's tag."""

    family: int  # 4 or 6
    first: int
    last: int
    scope: str
    cidr: str
    tag: Any = None  # e.g. the YAML position the CIDR was written at

    @classmethod
    def of(cls, net: Network, scope: str, tag: Any = None) -> Span:
        """The span of ``net`` in ``scope``."""
        first = int(net.network_address)
        return cls(net.version, first, first + net.num_addresses - 1, scope, str(net), tag)


def find_overlaps(spans: Iterable[Span]) -> list[tuple[Span, Span]]:
    """Every ``(outer, inner)`` pair of CIDRs of *different* scopes where outer contains inner.

    Sorting by ``(family, first, -last)`` puts each network right after the networks
    containing it; a stack then holds the chain of networks still open at the current
    address, and the top of the stack is the most specific one containing the next
    network. Comparing each network with that one parent is enough: any other container
    further down the chain of another scope is itself reported against its own parent.
    Identical CIDRs in two scopes are reported; within one scope they are harmless.
    """
    ordered = sorted(spans, key=lambda s: (s.family, s.first, -s.last))
    stack: list[Span] = []
    pairs: list[tuple[Span, Span]] = []
    for span in ordered:
        while stack and (stack[-1].family != span.family or stack[-1].last < span.first):
            stack.pop()
        if stack and stack[-1].scope != span.scope:
            pairs.append((stack[-1], span))
        stack.append(span)
    return pairs


def overlap_message(outer: Span, inner: Span) -> str:
    """How an overlap between two scopes is reported."""
    if outer.first == inner.first and outer.last == inner.last:
        return (
            f"{inner.cidr} is in both scope '{outer.scope}' and scope '{inner.scope}'; "
            "a client must belong to exactly one scope"
        )
    return (
        f"{inner.cidr} of scope '{inner.scope}' overlaps {outer.cidr} of scope "
        f"'{outer.scope}'; a client must belong to exactly one scope"
    )
