"""The store's promises on SQLite (embedded default) and PostgreSQL (multi-host)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from farm.db.repository import Store
from farm.db.session import make_engine, make_sessionmaker, migrate
from farm.domain.records import NewBuild
from farm.domain.specs import ArtifactSpec, JobSpec, Need


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'farm.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    migrate(engine)
    migrate(engine)  # idempotent
    yield Store(make_sessionmaker(engine))
    if request.param == "postgres":
        from sqlalchemy import text

        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()


def _new_build() -> NewBuild:
    build = JobSpec(
        name="build", stage="build", script=("make",), artifacts=ArtifactSpec(paths=("out/",))
    )
    test = JobSpec(
        name="test: [3.11]",
        stage="test",
        script=("make test",),
        needs=(Need("build"),),
        matrix={"PY": "3.11"},
        resource_group="prod",
    )
    return NewBuild(
        project="app",
        repo="/src/app",
        ref="main",
        commit="a" * 40,
        pipeline_file=".gitlab-ci.yml",
        pipeline_digest="sha256:" + "b" * 64,
        snapshot_digest="sha256:" + "c" * 64,
        stages=(".pre", "build", "test", ".post"),
        variables={"K": "v"},
        jobs=((build, "farm"), (test, "farm")),
        secrets={"TOKEN": "hidden"},
    )


def test_build_and_jobs_round_trip(store: Store) -> None:
    build = store.get_build(store.create_build(_new_build(), status="pending"))
    assert [j.name for j in build.jobs] == ["build", "test: [3.11]"]
    assert build.jobs[1].spec.needs == (Need("build"),)
    assert build.jobs[1].spec.matrix == {"PY": "3.11"}
    assert build.secrets == {"TOKEN": "hidden"} and build.variables == {"K": "v"}
    assert build.created_at.tzinfo is not None
    assert all(j.status == "created" and j.attempt == 1 for j in build.jobs)


def test_only_one_concurrent_claim_wins(store: Store) -> None:
    build = store.get_build(store.create_build(_new_build(), status="pending"))
    job = build.jobs[0]
    assert store.cas_job(job.id, ["created"], status="pending")
    wins: list[bool] = []
    barrier = threading.Barrier(8)

    def claim() -> None:
        barrier.wait()
        wins.append(store.cas_job(job.id, ["pending"], expect_attempt=1, status="running"))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1
    assert not store.cas_job(job.id, ["running"], expect_attempt=2, status="success")
    assert store.get_job(job.id).status == "running"


def test_log_is_capped_with_marker_and_read_by_cursor(store: Store) -> None:
    build = store.get_build(store.create_build(_new_build(), status="pending"))
    job = build.jobs[0]
    assert store.append_log(job.id, 1, "hello\n", cap=50)
    text, cursor = store.read_log(job.id, 1)
    assert text == "hello\n"
    assert not store.append_log(job.id, 1, "x" * 100, cap=50)
    more, cursor2 = store.read_log(job.id, 1, after=cursor)
    assert more.startswith("x") and "log truncated" in more and cursor2 > cursor
    assert not store.append_log(job.id, 2, "stale attempt", cap=50)


def test_artifacts_keep_their_files(store: Store) -> None:
    build = store.get_build(store.create_build(_new_build(), status="pending"))
    store.add_artifact(
        build_id=build.id,
        job_id=build.jobs[0].id,
        name="build",
        kind="archive",
        digest="sha256:" + "d" * 64,
        size=10,
        files=["out/a", "out/b"],
    )
    (art,) = store.get_build(build.id).jobs[0].artifacts
    assert art.files == ("out/a", "out/b")
    assert store.find_artifacts("sha256:" + "d" * 64)[0].build_id == build.id
