"""The store's promises on SQLite (embedded default) and PostgreSQL (multi-host)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from farm.db.repository import Store
from farm.db.session import make_engine, make_sessionmaker, migrate
from farm.domain.clock import utcnow
from farm.domain.logs import Tail
from farm.domain.records import JobRecord, NewBuild
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


def test_a_claim_returns_the_job_it_took_and_only_one_claim_takes_it(store: Store) -> None:
    build = store.get_build(store.create_build(_new_build(), status="pending"))
    job = build.jobs[1]
    assert store.claim_job(job.id, 1, status="running", worker="w0") is None  # not pending
    assert store.cas_job(job.id, ["created"], status="pending")
    rev_before = store.job_changes(build.id, -1)[0]
    won: list[object] = []
    barrier = threading.Barrier(6)

    def claim(n: int) -> None:
        barrier.wait()
        won.append(store.claim_job(job.id, 1, status="running", worker=f"w{n}"))

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (claimed,) = [c for c in won if c is not None]
    assert isinstance(claimed, JobRecord)
    assert (claimed.id, claimed.status, claimed.attempt) == (job.id, "running", 1)
    assert claimed.spec == job.spec and claimed.worker == store.get_job(job.id).worker
    # the claim is a change of state: a coordinator catching up sees it
    rev, changed = store.job_changes(build.id, rev_before)
    assert rev > rev_before and [c.id for c in changed] == [job.id]
    assert store.claim_job(job.id, 2, status="running") is None  # another attempt


def test_timelines_are_written_in_one_batch_for_their_attempt_only(store: Store) -> None:
    build = store.get_build(store.create_build(_new_build(), status="pending"))
    one, two = build.jobs
    store.set_timelines([(one.id, 1, {"reported": 1.5}), (two.id, 2, {"reported": 2.5})])
    assert store.get_job(one.id).timeline == {"reported": 1.5}
    assert store.get_job(two.id).timeline is None  # job two is at attempt 1


def test_job_timings_name_the_started_jobs_only(store: Store) -> None:
    build = store.get_build(store.create_build(_new_build(), status="pending"))
    one, _ = build.jobs
    start = utcnow()
    assert store.cas_job(
        one.id, ["created"], status="failed", queued_at=start, started_at=start, finished_at=start
    )
    (timing,) = store.job_timings(build.id)
    assert (timing.queue, timing.status) == ("farm", "failed")
    assert timing.started_at == start and timing.started_at.tzinfo is not None


def test_a_claim_reads_a_projects_secrets_and_refs_in_one_go(store: Store) -> None:
    empty = store.project_secrets("nobody")  # no settings row, no secret
    assert (empty.secrets, empty.repo) == ((), None)
    store.bind_project_repo("shop", "https://git.example.com/shop.git")
    bound = store.project_secrets("shop")  # a settings row, no secret
    assert bound.secrets == () and bound.repo == "https://git.example.com/shop.git"
    store.set_protected_refs("shop", ["release/*", "main"])
    store.put_project_secret("shop", "ZED", "zed-value-1", protected=True, masked=True)
    store.put_project_secret("shop", "ALPHA", "a", protected=False, masked=False)
    store.bind_project_repo("other", "/srv/git/other")
    store.put_project_secret("other", "ALPHA", "not-shops", protected=False, masked=False)
    loaded = store.project_secrets("shop")
    assert [(x.name, x.value, x.protected) for x in loaded.secrets] == [
        ("ALPHA", "a", False),
        ("ZED", "zed-value-1", True),
    ]
    assert loaded.protected_refs == ("release/*", "main")
    assert all(x.project == "shop" and x.created_at.tzinfo for x in loaded.secrets)


def test_log_is_capped_with_marker_and_read_by_cursor(store: Store) -> None:
    build = store.get_build(store.create_build(_new_build(), status="pending"))
    job = build.jobs[0]
    assert store.beat_and_log(job.id, 1, utcnow(), "hello\n", 50, None)[1]
    text, cursor = store.read_log(job.id, 1)
    assert text == "hello\n"
    assert not store.beat_and_log(job.id, 1, utcnow(), "x" * 100, 50, None)[1]
    more, cursor2 = store.read_log(job.id, 1, after=cursor)
    assert more.startswith("x") and "log truncated" in more and cursor2 > cursor
    assert not store.beat_and_log(job.id, 2, utcnow(), "stale attempt", 50, None)[1]


def test_a_finish_stores_its_log_tail_with_it_or_not_at_all(store: Store) -> None:
    build = store.get_build(store.create_build(_new_build(), status="pending"))
    job = build.jobs[0]
    assert store.cas_job(job.id, ["created"], status="running")
    assert store.beat_and_log(job.id, 1, utcnow(), "start\n", 1000, 0)[1]
    # a stale attempt's report changes nothing, its tail included
    assert not store.finish_attempt(job.id, 2, [], Tail("stale\n", 0, 1000), status="success")
    # the tail's first bytes were already taken (a resend after a lost answer): once
    assert store.finish_attempt(job.id, 1, [], Tail("start\nend\n", 0, 1000), status="success")
    assert store.read_log(job.id, 1)[0] == "start\nend\n"
    assert store.get_job(job.id).status == "success"
    assert not store.finish_attempt(job.id, 1, [], Tail("again\n", 10, 1000), status="failed")
    assert store.read_log(job.id, 1)[0] == "start\nend\n"


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


def test_job_changes_reads_what_changed_since_a_change_number(store: Store) -> None:
    """A coordinator catches up with only the jobs whose state changed (issue 10); other
    columns (heartbeats, the outbox) are not changes of state."""
    build_id = store.create_build(_new_build(), status="pending")
    other = store.create_build(_new_build(), status="pending")
    rev, every = store.job_changes(build_id, -1)
    assert [s.status for s in every] == ["created", "created"]
    first, second = (s.id for s in every)
    assert store.job_changes(build_id, rev) == (rev, [])
    assert store.cas_jobs([first, second], ["created"], status="pending") == [first, second]
    rev2, changed = store.job_changes(build_id, rev)
    assert rev2 > rev and [(s.id, s.status) for s in changed] == [
        (first, "pending"),
        (second, "pending"),
    ]
    assert store.cas_job(first, ["pending"], expect_attempt=1, status="running")
    store.cas_job(first, ["running"], heartbeat_at=None)  # not a change of state
    assert not store.cas_job(second, ["running"], status="success")  # refused: no row
    rev3, changed = store.job_changes(build_id, rev2)
    assert [(s.id, s.status) for s in changed] == [(first, "running")]
    assert store.cas_jobs_of_build(build_id, ["pending", "running"], status="canceled")
    rev4, changed = store.job_changes(build_id, rev3)
    assert rev4 > rev3
    assert {s.status for s in changed} == {"canceled"} and len(changed) == 2
    assert store.job_changes(other, 0)[1] == []  # another build's counter is its own


def test_concurrent_changes_are_never_missed_by_a_reader(store: Store) -> None:
    """Writers on many threads, a reader catching up meanwhile: every final state seen."""
    build_id = store.create_build(_new_build(), status="pending")
    ids = [s.id for s in store.job_changes(build_id, -1)[1]]
    seen: dict[int, str] = {}
    rev = -1
    stop = threading.Event()

    def write(job_id: int) -> None:
        for status in ("pending", "running", "failed", "created") * 5 + ("success",):
            store.cas_jobs([job_id], ["created", "pending", "running", "failed"], status=status)

    def read() -> None:
        nonlocal rev
        while not stop.is_set():
            rev, changed = store.job_changes(build_id, rev)
            seen.update((s.id, s.status) for s in changed)

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=write, args=(j,)) for j in ids]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    reader.join()
    rev, changed = store.job_changes(build_id, rev)
    seen.update((s.id, s.status) for s in changed)
    assert seen == dict.fromkeys(ids, "success")
