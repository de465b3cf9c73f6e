"""The worker's blob cache: one download per blob, each job its own name for it, least
recently used blobs evicted past the limit, nothing half-downloaded ever served."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from farm.errors import UploadError
from farm.worker.blob_cache import BlobCache

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
C = "sha256:" + "c" * 64


class Origin:
    """Stands in for the API's blob store: counts downloads, writes ``size`` bytes."""

    def __init__(self, size: int = 100, fail: bool = False) -> None:
        self.size = size
        self.fail = fail
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, digest: str, dest: Path) -> None:
        with self._lock:
            self.calls.append(digest)
        dest.write_bytes(digest[-1].encode() * (self.size // 2))
        if self.fail:
            raise OSError("connection reset halfway")
        time.sleep(0.01)  # long enough for concurrent callers to overlap
        dest.write_bytes(digest[-1].encode() * self.size)


def test_a_blob_is_downloaded_once_and_each_use_gets_its_own_file(tmp_path: Path) -> None:
    origin = Origin()
    cache = BlobCache(tmp_path / "blobs", 10_000, origin)
    for i in range(3):
        with cache.open(A, tmp_path / f"job{i}.tar") as blob:
            f = blob.path
            assert f == tmp_path / f"job{i}.tar" and f.read_bytes() == b"a" * 100
            assert blob.cached == (i > 0)
            f.unlink()  # a job's use of its copy does not touch the cache
        assert not (tmp_path / f"job{i}.tar").exists()
    assert origin.calls == [A] and (cache.hits, cache.misses) == (2, 1)
    assert (tmp_path / "blobs" / ("a" * 64)).read_bytes() == b"a" * 100


def test_concurrent_jobs_share_one_download(tmp_path: Path) -> None:
    origin = Origin()
    cache = BlobCache(tmp_path / "blobs", 10_000, origin)
    seen: list[bytes] = []

    def job(i: int) -> None:
        with cache.open(A, tmp_path / f"j{i}") as blob:
            seen.append(blob.path.read_bytes())

    threads = [threading.Thread(target=job, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert origin.calls == [A] and seen == [b"a" * 100] * 8


def test_least_recently_used_blobs_go_past_the_limit(tmp_path: Path) -> None:
    origin = Origin(size=100)
    cache = BlobCache(tmp_path / "blobs", 250, origin)
    for digest in (A, B):
        with cache.open(digest, tmp_path / "x"):
            pass
    old = time.time() - 60
    os.utime(tmp_path / "blobs" / ("b" * 64), (old, old))  # B used long ago
    os.utime(tmp_path / "blobs" / ("a" * 64))
    with cache.open(C, tmp_path / "x"):
        pass
    assert sorted(p.name[0] for p in (tmp_path / "blobs").iterdir()) == ["a", "c"]
    with cache.open(B, tmp_path / "x") as blob:  # evicted: fetched again
        assert blob.path.read_bytes() == b"b" * 100 and not blob.cached
    assert origin.calls == [A, B, C, B]


def test_a_failed_download_leaves_nothing_to_serve(tmp_path: Path) -> None:
    origin = Origin(fail=True)
    cache = BlobCache(tmp_path / "blobs", 10_000, origin)
    with pytest.raises(OSError), cache.open(A, tmp_path / "x"):
        pass
    assert list((tmp_path / "blobs").iterdir()) == [] and not (tmp_path / "x").exists()
    origin.fail = False
    with cache.open(A, tmp_path / "x") as blob:
        assert blob.path.read_bytes() == b"a" * 100
    assert origin.calls == [A, A]


def test_off_downloads_every_time_and_keeps_nothing(tmp_path: Path) -> None:
    origin = Origin()
    cache = BlobCache(tmp_path / "blobs", 0, origin)
    for _ in range(2):
        with cache.open(A, tmp_path / "x") as blob:
            assert blob.path.read_bytes() == b"a" * 100 and not blob.cached
    assert origin.calls == [A, A] and not (tmp_path / "blobs").exists()
    assert not (tmp_path / "x").exists()


def test_a_malformed_digest_names_no_path_and_downloads_nothing(tmp_path: Path) -> None:
    """Digests come from the claim's answer: one that is not sha256:<64 hex> (a path,
    say) is refused before anything is fetched or written."""
    origin = Origin()
    cache = BlobCache(tmp_path / "blobs", 10_000, origin)
    for bad in ("sha256:../../etc/passwd", "sha256:" + "A" * 64, "md5:" + "a" * 32, ""):
        with pytest.raises(UploadError), cache.open(bad, tmp_path / "x"):
            pass
    assert origin.calls == [] and not (tmp_path / "blobs").exists()


class Counting(BlobCache):
    """Counts the passes over the cache directory."""

    scans = 0

    def _evict(self, keep: Path) -> None:
        self.scans += 1
        super()._evict(keep)


def test_a_hit_does_not_count_the_cache_again(tmp_path: Path) -> None:
    origin = Origin(size=100)
    cache = Counting(tmp_path / "blobs", 250, origin)
    for _ in range(5):
        with cache.open(A, tmp_path / "x"):
            pass
    assert cache.scans == 1  # the first use counts what is there; hits add nothing
    with cache.open(B, tmp_path / "x"):  # 200 of 250: still fits, by the estimate
        pass
    assert cache.scans == 1
    with cache.open(C, tmp_path / "x"):  # 300 of 250: counted, and the oldest goes
        pass
    assert cache.scans == 2 and len(list((tmp_path / "blobs").iterdir())) == 2
    cache._counted_at -= 3600  # an hour later another process may have added blobs
    with cache.open(C, tmp_path / "x"):
        pass
    assert cache.scans == 3
