"""``Store.last_durations`` on the real store (issue 11: critical-path-first dispatch)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from farm.db.repository import Store
from farm.db.session import make_engine, make_sessionmaker, migrate
from farm.domain.clock import utcnow
from farm.domain.records import NewBuild
from farm.domain.specs import JobSpec

pytestmark = pytest.mark.integration


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    engine = make_engine(f"sqlite:///{tmp_path / 'farm.db'}")
    migrate(engine)
    yield Store(make_sessionmaker(engine))
    engine.dispose()


def _build(project: str) -> NewBuild:
    specs = [JobSpec(name=n, stage="test", script=("t",), needs=()) for n in ("a", "b", "c")]
    return NewBuild(
        project=project,
        repo=f"/src/{project}",
        ref="main",
        commit="a" * 40,
        pipeline_file=".gitlab-ci.yml",
        pipeline_digest="sha256:" + "b" * 64,
        snapshot_digest="sha256:" + "c" * 64,
        stages=("test",),
        variables={},
        jobs=tuple((s, "farm") for s in specs),
    )


def _finish(store: Store, build_id: int, name: str, seconds: float, **fields: Any) -> None:
    job = next(s for s in store.jobs_of_build(build_id) if s.name == name)
    end = utcnow()
    store.cas_job(
        job.id,
        [job.status],
        status=fields.pop("status", "success"),
        started_at=end - timedelta(seconds=seconds),
        finished_at=end,
        **fields,
    )


def test_the_latest_successful_run_of_each_name_counts(store: Store) -> None:
    one = store.create_build(_build("app"), "pending")
    _finish(store, one, "a", 4.0)
    _finish(store, one, "b", 2.0)
    _finish(store, one, "c", 9.0, status="failed")
    two = store.create_build(_build("app"), "pending")
    _finish(store, two, "a", 1.0)  # the latest
    _finish(store, two, "b", 7.0, cached_from=1)  # reused, not run: not a duration
    other = store.create_build(_build("other"), "pending")
    _finish(store, other, "c", 3.0)
    got = store.last_durations("app", ["a", "b", "c", "d"])
    assert got == pytest.approx({"a": 1.0, "b": 2.0}, abs=0.01)
    assert store.last_durations("app", []) == {}
