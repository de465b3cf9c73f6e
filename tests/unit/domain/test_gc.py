"""GC mark and plan: every reference kind keeps its blobs; grace protects young blobs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from farm.domain.gc import (
    ArtifactRef,
    BlobEntry,
    BuildRef,
    References,
    latest_green,
    mark,
    plan,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)
PAST = NOW - timedelta(days=1)
FUTURE = NOW + timedelta(days=1)


def d(name: str) -> str:
    return f"sha256:{name * 64}"[:71]


def build(i: int, status: str = "success", ref: str = "main", project: str = "p") -> BuildRef:
    return BuildRef(i, project, ref, status, snapshot_digest=d(f"{i}"), deliverable_digest=None)


def test_latest_green_per_project_and_ref() -> None:
    builds = [
        build(1),
        build(2),
        build(3, "failed"),
        build(4, ref="dev"),
        build(5, "failed", ref="dev"),
        build(6, project="q"),
    ]
    assert latest_green(builds) == {2, 4, 6}


def test_mark_keeps_live_artifacts_snapshots_releases_and_extras() -> None:
    refs = References(
        artifacts=(
            ArtifactRef(1, d("a"), None),  # never expires
            ArtifactRef(1, d("b"), FUTURE),  # not yet expired
            ArtifactRef(1, d("c"), PAST),  # expired, build 1 not protected
            ArtifactRef(2, d("e"), PAST),  # expired but build 2 is the latest green
            ArtifactRef(3, d("f"), PAST),  # expired but build 3 is released
        ),
        builds=(
            BuildRef(1, "p", "main", "success", d("1"), d("9")),
            BuildRef(2, "p", "main", "success", d("2"), None),
            BuildRef(3, "p", "old", "failed", d("3"), None),
        ),
        released_build_ids=frozenset({3}),
        release_digests=frozenset({d("7")}),
        extra_digests=frozenset({d("8")}),
    )
    marked = mark(refs, NOW)
    assert d("c") not in marked
    assert {d(x) for x in "abef123789"} <= marked


def test_expired_artifact_shared_with_a_live_one_is_kept() -> None:
    refs = References(
        artifacts=(ArtifactRef(1, d("a"), PAST), ArtifactRef(2, d("a"), FUTURE)),
        builds=(build(1, "failed"), build(2, "failed")),
    )
    assert d("a") in mark(refs, NOW)


def test_plan_sweeps_only_old_unreferenced_blobs() -> None:
    now = NOW.timestamp()
    entries = [
        BlobEntry(d("a"), 10, now - 10_000),  # referenced
        BlobEntry(d("b"), 20, now - 10),  # unreferenced but young
        BlobEntry(d("c"), 30, now - 10_000),  # swept
    ]
    result = plan(entries, {d("a")}, now, grace=3600)
    assert [e.digest for e in result.referenced] == [d("a")]
    assert [e.digest for e in result.young] == [d("b")]
    assert [e.digest for e in result.sweep] == [d("c")]
    assert [e.digest for e in plan(entries, set(), now, grace=0).sweep] == [d(x) for x in "abc"]
