"""pack/unpack: GitLab artifacts:paths globbing, reproducibility and refusal of escapes."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest

from farm.errors import UnsafeArchive
from farm.registry.archive import compression_level, match_path, pack, unpack
from farm.registry.store.digests import hash_file


def make_tree(root: Path) -> None:
    files = {
        "README.md": "readme",
        "build/app": "binary",
        "build/lib/a.o": "obj-a",
        "build/lib/deep/b.o": "obj-b",
        "build/lib/keep.txt": "keep",
        "dist/pkg-1.0.tar": "tar",
        "dist/pkg-1.0.whl": "whl",
        "src/main.c": "int main;",
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "build/app").chmod(0o755)
    os.utime(root / "README.md", (1_600_000_000, 1_600_000_000))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "job"
    make_tree(root)
    return root


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("build/*.o", "build/a.o", True),
        ("build/*.o", "build/lib/a.o", False),
        ("build/**/*.o", "build/a.o", True),
        ("build/**/*.o", "build/lib/deep/b.o", True),
        ("**/*.o", "x.o", True),
        ("dist/pkg-?.?.whl", "dist/pkg-1.0.whl", True),
        ("dist/pkg-[0-9]*", "dist/pkg-1.0.tar", True),
        ("./dist/", "dist", True),
        ("build/**", "build/lib/a.o", True),
    ],
)
def test_match_path(pattern: str, path: str, expected: bool) -> None:
    assert match_path(pattern, path) is expected


def test_pack_globs_dirs_and_exclude(tree: Path, tmp_path: Path) -> None:
    dest = tmp_path / "a.tar.gz"
    packed = pack(tree, ["build", "dist/*.whl", "**/*.md"], exclude=["**/*.o"], dest=dest).files
    assert packed == [
        "README.md",
        "build",
        "build/app",
        "build/lib",
        "build/lib/deep",
        "build/lib/keep.txt",
        "dist/pkg-1.0.whl",
    ]
    with tarfile.open(dest) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert list(members) == packed  # sorted
    assert all(m.uid == 0 and m.gid == 0 and m.uname == m.gname == "root" for m in members.values())
    assert members["build/app"].mode == 0o755
    assert members["README.md"].mtime == 1_600_000_000
    assert members["build"].isdir()


def test_pack_excludes_a_directory_with_its_content(tree: Path, tmp_path: Path) -> None:
    packed = pack(tree, ["build/**"], exclude=["build/lib"], dest=tmp_path / "a.tgz").files
    assert packed == ["build/app"]


def test_pack_is_reproducible_and_hashed_while_written(tree: Path, tmp_path: Path) -> None:
    one = pack(tree, ["."], dest=tmp_path / "one.tgz")
    two = pack(tree, ["."], dest=tmp_path / "two.tgz")
    assert (tmp_path / "one.tgz").read_bytes() == (tmp_path / "two.tgz").read_bytes()
    assert one.blob == two.blob == hash_file(tmp_path / "one.tgz")


@pytest.mark.parametrize(
    ("word", "level", "warned"),
    [
        (None, 6, False),
        ("fastest", 1, False),
        ("FAST", 3, False),
        ("default", 6, False),
        ("slowest", 9, False),
        ("0", 0, False),
        ("turbo", 6, True),
        ("12", 6, True),
    ],
)
def test_compression_level_words(word: str | None, level: int, warned: bool) -> None:
    assert compression_level(word)[0] == level
    assert (compression_level(word)[1] is not None) is warned


def test_pack_honours_the_compression_level(tree: Path, tmp_path: Path) -> None:
    (tree / "build/big.txt").write_text("farm " * 200_000)
    stored = pack(tree, ["build"], dest=tmp_path / "0.tgz", level=0)
    packed = pack(tree, ["build"], dest=tmp_path / "6.tgz", level=6)
    assert stored.files == packed.files
    assert packed.blob.size * 20 < stored.blob.size
    assert unpack(tmp_path / "0.tgz", tmp_path / "out") == stored.files


def test_pack_roundtrip_with_inside_symlink(tree: Path, tmp_path: Path) -> None:
    (tree / "build/current").symlink_to("app")
    packed = pack(tree, ["build/"], dest=tmp_path / "a.tgz").files
    assert "build/current" in packed
    out = tmp_path / "out"
    names = unpack(tmp_path / "a.tgz", out)
    assert sorted(names) == packed
    assert (out / "build/current").is_symlink()
    assert (out / "build/current").read_text() == "binary"
    assert os.access(out / "build/app", os.X_OK)


@pytest.mark.parametrize("pattern", ["../x", "build/../../x", "/etc", "/etc/passwd", "~/x"])
def test_pack_refuses_patterns_escaping_root(tree: Path, tmp_path: Path, pattern: str) -> None:
    with pytest.raises(UnsafeArchive):
        pack(tree, [pattern], dest=tmp_path / "a.tgz")
    assert not (tmp_path / "a.tgz").exists()


@pytest.mark.parametrize("target", ["/etc/passwd", "../../outside", "../.."])
def test_pack_refuses_symlinks_out(tree: Path, tmp_path: Path, target: str) -> None:
    (tree / "build/evil").symlink_to(target)
    with pytest.raises(UnsafeArchive, match="build/evil"):
        pack(tree, ["build"], dest=tmp_path / "a.tgz")
    assert not (tmp_path / "a.tgz").exists()


def test_pack_does_not_walk_through_symlinked_directory(tree: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "key").write_text("s3cret")
    (tree / "link").symlink_to(outside)
    packed = pack(tree, ["link/key", "link/*"], dest=tmp_path / "a.tgz").files
    assert packed == []


def _tar_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]], gz: bool = True) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    raw = buf.getvalue()
    return gzip.compress(raw) if gz else raw


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


def _special(name: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    return info, None


@pytest.fixture(params=["filters", "no filters"])
def tar_filters(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run on this Python's tarfile, and as on Python < 3.11.4 (Debian 12's worker
    image), which has no extraction filters."""
    if request.param == "no filters":
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    return str(request.param)


@pytest.mark.parametrize(
    ("evil", "message"),
    [
        (_file("../escape"), "'..'"),
        (_file("ok/../../escape"), "'..'"),
        (_file("/abs/path"), "absolute"),
        (_link("link", "/etc/passwd"), "outside"),
        (_link("sub/link", "../../x"), "outside"),
        (_link("hard", "../x", tarfile.LNKTYPE), "outside"),
        (_link("hard", "/etc/passwd", tarfile.LNKTYPE), "outside"),
        (_special("dev", tarfile.CHRTYPE), "device"),
        (_special("blk", tarfile.BLKTYPE), "device"),
        (_special("fifo", tarfile.FIFOTYPE), "fifo"),
    ],
)
@pytest.mark.usefixtures("tar_filters")
def test_unpack_refuses_malicious_members_and_extracts_nothing(
    tmp_path: Path, evil: tuple[tarfile.TarInfo, bytes | None], message: str
) -> None:
    archive = tmp_path / "evil.tgz"
    archive.write_bytes(_tar_bytes([_file("first.txt"), evil, _file("last.txt")]))
    dest = tmp_path / "dest" / "inner"
    with pytest.raises(UnsafeArchive, match=message):
        unpack(archive, dest)
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "dest" / "escape").exists() and not (tmp_path / "escape").exists()


@pytest.mark.usefixtures("tar_filters")
def test_unpack_drops_setuid_bits(tmp_path: Path) -> None:
    info, data = _file("tool")
    info.mode = 0o4755
    info.uid, info.uname = 4321, "someone"
    archive = tmp_path / "a.tgz"
    archive.write_bytes(_tar_bytes([(info, data)]))
    assert unpack(archive, tmp_path / "out") == ["tool"]
    st = (tmp_path / "out" / "tool").stat()
    assert st.st_mode & 0o7777 == 0o755
    assert st.st_uid == os.getuid()


def test_unpack_plain_tar_and_file_objects(tmp_path: Path) -> None:
    plain = _tar_bytes([_file("a/b.txt", b"hello"), _link("a/c", "b.txt")], gz=False)
    names = unpack(io.BytesIO(plain), tmp_path / "one")
    assert names == ["a/b.txt", "a/c"]
    assert (tmp_path / "one/a/c").read_text() == "hello"

    class Pipe(io.RawIOBase):  # a non-seekable stream, like a socket
        def __init__(self, data: bytes) -> None:
            self._buf = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, b: bytearray) -> int:  # type: ignore[override]
            return self._buf.readinto(b)

    gz = _tar_bytes([_file("x.txt", b"piped")])
    assert unpack(Pipe(gz), tmp_path / "two") == ["x.txt"]  # type: ignore[arg-type]
    assert (tmp_path / "two/x.txt").read_text() == "piped"


def test_unpack_refuses_garbage(tmp_path: Path) -> None:
    with pytest.raises(UnsafeArchive, match="not a tar"):
        unpack(io.BytesIO(b"definitely not a tarball" * 50), tmp_path / "d")


def test_unpack_through_preexisting_symlink_is_refused(tmp_path: Path) -> None:
    # dest already holds a symlink leading out; tarfile's data filter backs us up.
    dest = tmp_path / "dest"
    dest.mkdir()
    (tmp_path / "outside").mkdir()
    (dest / "out").symlink_to(tmp_path / "outside")
    archive = _tar_bytes([_file("new.txt"), _file("out/pwned.txt")])
    with pytest.raises(UnsafeArchive):
        unpack(io.BytesIO(archive), dest)
    assert not (tmp_path / "outside/pwned.txt").exists()
    assert not (dest / "new.txt").exists()  # partial extraction removed
    assert (dest / "out").is_symlink()  # what was there before is kept
