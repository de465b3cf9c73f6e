"""Critical-path-first ranking (issue 11, step 3): which ready job to start first.

When more jobs are ready than there are slots, starting the one with the longest
remaining path (its own expected duration plus the longest chain of jobs waiting on
it) first is classic list scheduling (HLFET); its makespan is within a small factor of
the optimum and usually near the lower bound max(critical path, work / slots).
Durations come from earlier builds of the same job (project + job name); a job never
seen counts as ``default``. Pure: the coordinator orders its messages by these ranks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def remaining_path(
    names: Sequence[str],
    upstream: Mapping[str, Sequence[str]],
    durations: Mapping[str, float],
    default: float = 1.0,
) -> dict[str, float]:
    """For each job: its expected duration plus the longest chain of jobs below it."""
    children: dict[str, list[str]] = {n: [] for n in names}
    for name in names:
        for up in upstream.get(name, ()):
            if up in children:
                children[up].append(name)
    rank: dict[str, float] = {}
    # Iterative post-order (no recursion limit on deep chains).
    for root in names:
        stack: list[tuple[str, bool]] = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if node in rank:
                continue
            if not expanded:
                stack.append((node, True))
                stack.extend((c, False) for c in children[node] if c not in rank)
                continue
            below = max((rank[c] for c in children[node]), default=0.0)
            rank[node] = durations.get(node, default) + below
    return rank


def order_ready(ready: Sequence[str], rank: Mapping[str, float]) -> list[str]:
    """``ready`` with the longest remaining path first (stable for ties)."""
    return sorted(ready, key=lambda n: -rank.get(n, 0.0))
