"""The resource-group and cache-index rows on a real SQLite store: races have one winner."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from farm.coordinator.groups import ResourceGroups
from farm.db.repository import Store
from farm.db.session import make_engine, make_sessionmaker, migrate


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    engine = make_engine(f"sqlite:///{tmp_path / 'farm.db'}")
    migrate(engine)
    yield Store(make_sessionmaker(engine))
    engine.dispose()


def test_concurrent_takes_have_exactly_one_winner(store: Store) -> None:
    wins: list[int] = []
    gate = threading.Barrier(8)

    def take(job_id: int) -> None:
        gate.wait()
        if store.take_resource_group("prod", job_id):
            wins.append(job_id)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert store.resource_group_holder("prod") == wins[0]
    assert store.take_resource_group("prod", wins[0])  # re-taking one's own group is a no-op


def test_only_the_holder_releases(store: Store) -> None:
    assert store.take_resource_group("g", 1)
    assert not store.release_resource_group("g", 2)
    assert store.release_resource_group("g", 1)
    assert store.resource_group_holder("g") is None
    assert store.take_resource_group("g", 2)


def test_a_vanished_holder_is_taken_over_once(store: Store) -> None:
    assert store.take_resource_group("g", 999)  # job 999 does not exist
    groups = ResourceGroups(store)
    assert groups.take("g", 5)
    assert store.resource_group_holder("g") == 5
    # A second takeover that still expects the old holder loses the CAS.
    assert not store.take_resource_group("g", 6, stale=999)
    assert store.resource_group_holder("g") == 5


def test_cache_index_last_writer_wins(store: Store) -> None:
    assert store.get_cache("p", "k") is None
    store.put_cache("p", "k", "sha256:" + "a" * 64, 10)
    store.put_cache("p", "k", "sha256:" + "b" * 64, 20)
    entry = store.get_cache("p", "k")
    assert entry is not None and (entry.digest[-1], entry.size) == ("b", 20)
    assert store.get_cache("other", "k") is None
