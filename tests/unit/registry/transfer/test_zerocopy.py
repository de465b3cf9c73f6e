"""FileHasher on real files: hashing behind a writer, ahead of a sender, and stopping."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import xxhash

from farm.registry.store.digests import at_rest_hasher
from farm.registry.transfer import zerocopy

WINDOW = zerocopy.WINDOW


@pytest.mark.parametrize("mapped", [True, False])
@pytest.mark.parametrize("size", [0, 1, WINDOW, WINDOW + 4097, 3 * WINDOW])
def test_hash_ahead_matches_hashlib(tmp_path: Path, size: int, mapped: bool) -> None:
    data = os.urandom(size)
    (tmp_path / "f").write_bytes(data)
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        hasher = zerocopy.FileHasher(fd, end=size, mapped=mapped)
        assert hasher.finish() == hashlib.sha256(data).hexdigest()
    finally:
        os.close(fd)


def test_hash_behind_a_writer_in_uneven_steps(tmp_path: Path) -> None:
    data = os.urandom(2 * zerocopy.WINDOW + 12345)
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        sha = zerocopy.FileHasher(fd)
        b3 = zerocopy.FileHasher(fd, hasher=at_rest_hasher())
        offset = 0
        for step in (1, 4095, 3 * 1024 * 1024, 7 * 1024 * 1024, len(data)):
            end = min(len(data), offset + step)
            os.pwrite(fd, data[offset:end], offset)
            offset = end
            sha.advance(end)
            b3.advance(end)
        assert zerocopy.finish_all(sha, b3) == [
            hashlib.sha256(data).hexdigest(),
            xxhash.xxh3_128(data).hexdigest(),
        ]
    finally:
        os.close(fd)


def test_cancel_stops_hashing_ahead(tmp_path: Path) -> None:
    size = 64 * zerocopy.WINDOW  # 512 MiB that are never hashed: a sparse file
    with open(tmp_path / "f", "wb") as f:
        f.truncate(size)
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        hasher = zerocopy.FileHasher(fd, end=size, mapped=False)
        hasher.cancel()  # a client that hung up: the thread must not read 512 MiB first
        assert hasher.hashed < size
    finally:
        os.close(fd)


def test_a_file_shorter_than_promised_is_an_error_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x" * 1000)
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        with pytest.raises(OSError, match="file ended at byte 1000"):
            zerocopy.FileHasher(fd, end=5000, mapped=False).finish()
    finally:
        os.close(fd)
