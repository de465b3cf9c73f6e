"""Critical-path-first ranking."""

from __future__ import annotations

from farm.domain.schedule_rank import order_ready, remaining_path


def test_longest_remaining_path_first() -> None:
    names = ["a", "b", "c", "d"]
    upstream = {"c": ["a"], "d": ["c"]}
    rank = remaining_path(names, upstream, {"a": 1, "b": 5, "c": 3, "d": 4})
    assert rank == {"a": 8, "b": 5, "c": 7, "d": 4}
    assert order_ready(["b", "a"], rank) == ["a", "b"]


def test_deep_chain_needs_no_recursion() -> None:
    names = [f"j{i}" for i in range(5000)]
    upstream = {f"j{i}": [f"j{i - 1}"] for i in range(1, 5000)}
    rank = remaining_path(names, upstream, {}, default=1.0)
    assert rank["j0"] == 5000 and rank["j4999"] == 1
