"""Safe tar archives of job artifacts: GitLab ``artifacts:paths`` in, checked members out.

:func:`pack` selects files with GitLab's doublestar globs and writes a
reproducible gzip tar (sorted members, owner 0/root, mode and mtime kept).
:func:`unpack` validates every member before extracting any: nothing may land
outside the destination, whoever built the archive.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

from farm.errors import UnsafeArchive
from farm.registry.store.digests import BlobInfo

_GLOB_CHARS = re.compile(r"[*?\[]")


def _normalize_pattern(pattern: str) -> str:
    """A root-relative pattern; UnsafeArchive for one that escapes the root."""
    if pattern.startswith("/") or pattern.startswith("~"):
        raise UnsafeArchive(f"artifact path {pattern!r} is absolute; paths are relative to the job")
    parts = [p for p in pattern.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive(f"artifact path {pattern!r} leaves the job directory")
    return "/".join(parts)


@lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
    """Doublestar glob to regex: ``**`` spans directories, ``*``/``?`` stay in one."""
    out: list[str] = []
    segments = pattern.split("/")
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == "**":
            out.append(".*" if last else "(?:[^/]+/)*")
            continue
        seg = ""
        j = 0
        while j < len(segment):
            c = segment[j]
            if c == "*":
                seg += "[^/]*"
            elif c == "?":
                seg += "[^/]"
            elif c == "[" and "]" in segment[j + 1 :]:
                end = segment.index("]", j + 1)
                body = segment[j + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                seg += "[" + body.replace("\\", "\\\\") + "]"
                j = end
            else:
                seg += re.escape(c)
            j += 1
        out.append(seg if last else seg + "/")
    return re.compile("".join(out))


def match_path(pattern: str, path: str) -> bool:
    """Whether a root-relative ``path`` matches a doublestar glob ``pattern``."""
    return _compile(_normalize_pattern(pattern)).fullmatch(path) is not None


def _walk(root: Path, top: str) -> Iterator[tuple[str, os.stat_result]]:
    """``top`` and everything below it, relative to root, never following symlinks."""
    stack = [top]
    while stack:
        rel = stack.pop()
        try:
            st = os.lstat(root / rel) if rel else os.lstat(root)
        except FileNotFoundError:
            continue
        if rel:
            yield rel, st
        if stat.S_ISDIR(st.st_mode):
            for name in os.listdir(root / rel if rel else root):
                stack.append(f"{rel}/{name}" if rel else name)


def _walk_start(root: Path, pattern: str) -> str:
    """The deepest real directory (no symlink) named by the pattern's literal prefix."""
    start = ""
    for part in pattern.split("/")[:-1]:
        if _GLOB_CHARS.search(part) or part == "**":
            break
        candidate = f"{start}/{part}" if start else part
        try:
            if not stat.S_ISDIR(os.lstat(root / candidate).st_mode):
                break
        except FileNotFoundError:
            break
        start = candidate
    return start


def select(
    root: Path, paths: Sequence[str], exclude: Sequence[str] = ()
) -> dict[str, os.stat_result]:
    """Root-relative paths (and their lstat) that ``paths`` select minus ``exclude``."""
    selected: dict[str, os.stat_result] = {}
    for raw in paths:
        pattern = _normalize_pattern(raw)
        if not pattern:  # "." or "./": the whole directory
            selected.update(_walk(root, ""))
            continue
        regex = _compile(pattern)
        start = _walk_start(root, pattern)
        if not _GLOB_CHARS.search(pattern) and posixpath.dirname(pattern) == start:
            # A literal path below real directories: look at it, not at its siblings.
            try:
                st = os.lstat(root / pattern)
            except FileNotFoundError:
                continue
            selected[pattern] = st
            if stat.S_ISDIR(st.st_mode):
                selected.update(_walk(root, pattern))
            continue
        for rel, st in _walk(root, start):
            if rel in selected or not regex.fullmatch(rel):
                continue
            selected[rel] = st
            if stat.S_ISDIR(st.st_mode):  # a directory means all of its content
                selected.update(_walk(root, rel))
    excluders = [_compile(_normalize_pattern(p)) for p in exclude]
    return {
        rel: st
        for rel, st in selected.items()
        if not any(rx.fullmatch(anc) for rx in excluders for anc in _ancestors(rel))
    }


def _ancestors(rel: str) -> Iterator[str]:
    parts = rel.split("/")
    for i in range(1, len(parts) + 1):
        yield "/".join(parts[:i])


def _link_escapes(member: str, target: str) -> bool:
    """Whether a symlink at ``member`` pointing to ``target`` leaves its root."""
    if target.startswith("/") or not target:
        return True
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(member), target))
    return resolved == ".." or resolved.startswith("../")


# GitLab's ARTIFACT_COMPRESSION_LEVEL / CACHE_COMPRESSION_LEVEL words, as gzip levels.
COMPRESSION_LEVELS = {"fastest": 1, "fast": 3, "default": 6, "slow": 7, "slowest": 9}


def compression_level(word: str | None) -> tuple[int, str | None]:
    """The gzip level for a GitLab compression word (or a digit 0-9), and a warning.

    Level 9 packs about 5x slower than 6 here for 1 % less size; GitLab's
    ``default`` is the default.  An unknown word falls back to it, with a warning
    for the job log.
    """
    if word is None or not word.strip():
        return 6, None
    value = word.strip().lower()
    if value in COMPRESSION_LEVELS:
        return COMPRESSION_LEVELS[value], None
    if value.isdigit() and 0 <= int(value) <= 9:
        return int(value), None
    choices = ", ".join(COMPRESSION_LEVELS)
    return 6, f"unknown compression level {word!r} (use {choices}, or 0-9): using default"


@dataclass(frozen=True)
class Packed:
    """What :func:`pack` wrote: the member paths and the archive's digest and size."""

    files: list[str]
    blob: BlobInfo


class _Hashing(io.RawIOBase):
    """A write-only file that hashes what passes through: the digest comes for free."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self._sha.update(data)
        self._raw.write(data)
        n = memoryview(data).nbytes
        self.size += n
        return n

    def blob(self) -> BlobInfo:
        return BlobInfo(f"sha256:{self._sha.hexdigest()}", self.size)


def pack(
    root: Path,
    paths: Sequence[str],
    exclude: Sequence[str] = (),
    *,
    dest: Path,
    level: int = 6,
) -> Packed:
    """Write the files ``paths`` select under ``root`` to a gzip tar at ``dest``.

    Returns the packed root-relative paths (sorted) and the archive's digest,
    hashed while it was written (no second pass before uploading it).  Symlinks
    are stored as links and must stay inside root; sockets and device files are
    skipped, as they cannot be artifacts.  UnsafeArchive is raised before
    ``dest`` is written.
    """
    root = Path(root)
    members: list[tarfile.TarInfo] = []
    for rel, st in sorted(select(root, paths, exclude).items()):
        info = tarfile.TarInfo(rel)
        info.mode = stat.S_IMODE(st.st_mode)
        info.mtime = int(st.st_mtime)
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(root / rel)
            if _link_escapes(rel, target):
                raise UnsafeArchive(f"symlink {rel} -> {target} points outside the job directory")
            info.type, info.linkname = tarfile.SYMTYPE, target
        elif stat.S_ISDIR(st.st_mode):
            info.type = tarfile.DIRTYPE
        elif stat.S_ISREG(st.st_mode):
            info.size = st.st_size
        else:
            continue
        members.append(info)
    # Fixed owner and gzip timestamp: the same inputs give the same bytes.
    with open(dest, "wb") as raw:
        hashing = _Hashing(raw)
        with (
            gzip.GzipFile(
                filename="", fileobj=hashing, mode="wb", mtime=0, compresslevel=level
            ) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for info in members:
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                if info.isreg():
                    with open(root / info.name, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
    return Packed([info.name for info in members], hashing.blob())


def _check_member(member: tarfile.TarInfo) -> str:
    """The member's clean relative name; UnsafeArchive if it could escape."""
    name = member.name
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise UnsafeArchive(f"archive member {name!r} has an absolute path")
    if ".." in parts:
        raise UnsafeArchive(f"archive member {name!r} contains '..'")
    clean = "/".join(parts)
    if member.issym() and _link_escapes(clean or ".", member.linkname):
        raise UnsafeArchive(f"symlink {name!r} -> {member.linkname!r} points outside the archive")
    if member.islnk():
        target = posixpath.normpath(member.linkname)
        if member.linkname.startswith("/") or target == ".." or target.startswith("../"):
            raise UnsafeArchive(
                f"hardlink {name!r} -> {member.linkname!r} points outside the archive"
            )
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        raise UnsafeArchive(f"archive member {name!r} is a device, fifo or other special file")
    return clean


def unpack(archive: Path | BinaryIO, dest: Path) -> list[str]:
    """Extract a gzip or plain tar into ``dest``; returns the extracted member names.

    Every member is checked before the first is written; if extraction still
    fails (e.g. tarfile's ``data`` filter objects), what it created is removed.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if isinstance(archive, Path | str):
        with open(archive, "rb") as f:
            return _unpack_seekable(f, dest)
    if archive.seekable():
        return _unpack_seekable(archive, dest)
    # Checking everything first needs two passes; spool a pipe to disk, not memory.
    with tempfile.TemporaryFile() as spool:
        shutil.copyfileobj(archive, spool)
        spool.seek(0)
        return _unpack_seekable(spool, dest)


def _unpack_seekable(fileobj: BinaryIO, dest: Path) -> list[str]:
    try:
        tar = tarfile.open(fileobj=fileobj, mode="r:*")  # noqa: SIM115 - with below
    except tarfile.TarError as exc:
        raise UnsafeArchive(f"not a tar archive: {exc}") from None
    with tar:
        members = tar.getmembers()
        names = [_check_member(m) for m in members]
        created: list[Path] = []

        def track(items: list[tarfile.TarInfo]) -> Iterator[tarfile.TarInfo]:
            # Remember the topmost path each member creates, parents included,
            # so a failure can remove exactly what this archive added.
            for member, name in zip(items, names, strict=True):
                parts = name.split("/") if name else []
                for i in range(1, len(parts) + 1):
                    path = dest.joinpath(*parts[:i])
                    if not os.path.lexists(path):
                        created.append(path)
                        break
                yield member

        try:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, members=track(members), filter="data")
            else:
                # Python < 3.11.4 (Debian 12's 3.11.2) has no extraction filters.
                # _check_member already refused what "data" refuses; do the rest of
                # it: no setuid/setgid/sticky bits, no ownership taken from the archive.
                for member in members:
                    member.mode &= 0o777
                    member.uid, member.gid = os.getuid(), os.getgid()
                    member.uname = member.gname = ""
                tar.extractall(dest, members=track(members), numeric_owner=True)
        except (tarfile.TarError, OSError) as exc:
            for path in reversed(created):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
            raise UnsafeArchive(f"archive refused while extracting: {exc}") from None
    return [n for n in names if n]


# --- reading one file (GET /api/v1/jobs/{id}/artifacts/{path}) --------------------------

_READ_CHUNK = 64 * 1024


def member_path(path: str) -> str:
    """``path`` as an archive member name ("./a//b" -> "a/b"); UnsafeArchive for an
    absolute path or one with ``..``, which no member of a checked archive has."""
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if path.startswith("/") or ".." in parts or not parts:
        raise UnsafeArchive(
            f"{path[:200]!r} is not a relative path inside the archive (no '..', no leading '/')"
        )
    return "/".join(parts)


def open_member(fileobj: BinaryIO, path: str) -> tuple[int, Iterator[bytes]] | None:
    """Size and chunks of the regular file ``path`` in a seekable (gzip) tar, or None if
    the archive has no such file. The chunks close the archive when exhausted."""
    wanted = member_path(path)
    try:
        tar = tarfile.open(fileobj=fileobj, mode="r:*")  # noqa: SIM115 - closed by chunks()
    except tarfile.TarError as exc:
        raise UnsafeArchive(f"not a tar archive: {exc}") from None
    found = next(
        (
            m
            for m in tar
            if m.isreg() and "/".join(p for p in m.name.split("/") if p not in ("", ".")) == wanted
        ),
        None,
    )
    reader = tar.extractfile(found) if found is not None else None
    if found is None or reader is None:
        tar.close()
        return None

    def chunks() -> Iterator[bytes]:
        with tar, reader:
            while data := reader.read(_READ_CHUNK):
                yield data

    return found.size, chunks()
