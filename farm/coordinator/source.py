"""Reading a commit: resolve repo/ref/commit, read files, snapshot the tree.

This is an I/O edge around git. A repo is a local path (a work tree, a bare
repo, or a directory inside a work tree — then that subdirectory is the project)
or a URL git can fetch, mirrored under the data dir.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from farm.errors import SourceError

_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C"}


def _run(repo: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            ["git", "-c", "safe.directory=*", "-C", str(repo), *args],
            capture_output=True,
            timeout=120,
            env={**os.environ, **_GIT_ENV},
            check=False,
        )
    except FileNotFoundError as exc:
        raise SourceError("git is not installed on the coordinator host") from exc
    except subprocess.TimeoutExpired as exc:
        raise SourceError(f"git {args[0]} timed out in {repo}") from exc


def _failed(repo: Path, proc: subprocess.CompletedProcess[bytes], what: str) -> SourceError:
    msg = proc.stderr.decode(errors="replace").strip().splitlines()
    return SourceError(msg[-1] if msg else f"git {what} failed in {repo}")


def _git(repo: Path, *args: str, binary: bool = False) -> str:
    proc = _run(repo, *args)
    if proc.returncode != 0:
        raise _failed(repo, proc, args[0])
    return proc.stdout.decode(errors="replace")


def _is_ancestor(repo: Path, commit: str, tip: str) -> bool:
    """Whether ``commit`` is ``tip`` or one of its ancestors (both full shas)."""
    proc = _run(repo, "merge-base", "--is-ancestor", commit, tip)
    if proc.returncode not in (0, 1):
        raise _failed(repo, proc, "merge-base")
    return proc.returncode == 0


@dataclass(frozen=True)
class Source:
    """A resolved commit: where its git objects are and which subtree is the project."""

    repo: str  # as the user gave it
    git_dir: Path  # a repository git can read
    ref: str
    commit: str
    subdir: str  # "" for the repository root
    project: str
    commit_time: int
    # GitLab's two kinds of ref (a build is for a branch or for a tag); "commit" when the
    # ref is neither (a bare sha, a detached HEAD). ``ref`` is then the short name.
    ref_kind: str = "branch"
    default_branch: str = "main"  # the repository's HEAD branch (CI_DEFAULT_BRANCH)

    @property
    def treeish(self) -> str:
        """The tree of the project at the commit."""
        return f"{self.commit}:{self.subdir}" if self.subdir else f"{self.commit}^{{tree}}"

    def read(self, path: str) -> str | None:
        """Text of ``path`` (relative to the project) at the commit, or None."""
        full = f"{self.subdir}/{path}" if self.subdir else path
        try:
            return _git(self.git_dir, "show", f"{self.commit}:{full}")
        except SourceError:
            return None

    def files(self) -> tuple[str, ...]:
        """Every file path of the project at the commit."""
        out = _git(self.git_dir, "ls-tree", "-r", "--name-only", "-z", self.treeish)
        return tuple(p for p in out.split("\0") if p)

    def changed(self) -> tuple[str, ...] | None:
        """Paths changed against the first parent (None for a root commit)."""
        try:
            out = _git(self.git_dir, "diff", "--name-only", "-z", f"{self.commit}^", self.commit)
        except SourceError:
            return None
        prefix = f"{self.subdir}/" if self.subdir else ""
        return tuple(p[len(prefix) :] for p in out.split("\0") if p and p.startswith(prefix))

    def snapshot(self) -> Iterator[bytes]:
        """A deterministic tar of the project tree: same tree, same bytes, same digest.

        ``git archive`` of a tree stamps members with the current time, so the
        stream is rewritten with the commit time and without the pax comment.
        """
        proc = subprocess.Popen(
            [
                "git",
                "-c",
                "safe.directory=*",
                "-C",
                str(self.git_dir),
                "archive",
                "--format=tar",
                self.treeish,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **_GIT_ENV},
        )
        assert proc.stdout is not None
        buf = _ChunkSink()
        try:
            with (
                tarfile.open(fileobj=proc.stdout, mode="r|") as src,
                tarfile.open(fileobj=buf, mode="w|", format=tarfile.PAX_FORMAT) as dst,
            ):
                for member in src:
                    member.mtime = self.commit_time
                    member.uid = member.gid = 0
                    member.uname = member.gname = "root"
                    member.pax_headers = {}
                    fobj = src.extractfile(member) if member.isfile() else None
                    dst.addfile(member, fobj)
                    yield from buf.drain()
            yield from buf.drain()
        finally:
            proc.stdout.close()
            if proc.wait(timeout=60) not in (0, -13):
                raise SourceError(f"git archive failed for {self.treeish}")


class _ChunkSink(io.RawIOBase):
    """A write-only file whose bytes are handed out in chunks as they come."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self._parts.append(bytes(b))
        return len(b)

    def drain(self) -> Iterator[bytes]:
        parts, self._parts = self._parts, []
        if parts:
            yield b"".join(parts)


def _mirror(url: str, cache: Path) -> Path:
    """Fetch a remote repository into a bare mirror under ``cache``."""
    dest = cache / hashlib.sha256(url.encode()).hexdigest()[:16]
    if (dest / "HEAD").exists():
        _git(dest, "fetch", "--prune", "--tags", "origin", "+refs/heads/*:refs/heads/*")
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        _git(dest.parent, "clone", "--bare", "--quiet", url, str(dest))
    return dest


# gitrevisions(7): the order git tries a short ref name in (a tag before a branch).
_REF_RULES = ("refs/{}", "refs/tags/{}", "refs/heads/{}", "refs/remotes/{}", "refs/remotes/{}/HEAD")


def _exists(git_dir: Path, full: str) -> bool:
    return _run(git_dir, "show-ref", "--verify", "--quiet", full).returncode == 0


def resolve_ref(git_dir: Path, ref: str) -> tuple[str, str]:
    """``ref`` as builds name it and its kind: ("main", "branch"), ("v1", "tag").

    Resolved as git does (``refs/heads/x`` and ``refs/tags/x`` are taken as given; a
    short name tries a tag before a branch). A branch a tag of the same name would
    shadow keeps its full name, so resolving the stored ref again finds the branch.
    Neither (a sha, a detached HEAD): the ref unchanged, kind "commit".
    """
    if ref == "HEAD":
        proc = _run(git_dir, "symbolic-ref", "--quiet", "HEAD")
        head = proc.stdout.decode(errors="replace").strip()
        if proc.returncode != 0 or not head:
            return ref, "commit"
        ref = head
    rules = ("{}",) if ref.startswith("refs/") else _REF_RULES
    full = next((r.format(ref) for r in rules if _exists(git_dir, r.format(ref))), None)
    if full is None:
        return ref, "commit"
    if full.startswith("refs/tags/"):
        return full.removeprefix("refs/tags/"), "tag"
    if full.startswith("refs/heads/"):
        name = full.removeprefix("refs/heads/")
        return (full if _exists(git_dir, f"refs/tags/{name}") else name), "branch"
    if full.startswith("refs/remotes/"):
        return full.removeprefix("refs/remotes/").removesuffix("/HEAD"), "branch"
    return ref, "commit"


def default_branch(git_dir: Path) -> str:
    """The repository's default branch: its origin's HEAD (a clone), else its own HEAD
    (a bare repository or a mirror: the remote's default); "main" if HEAD is detached."""
    for target in ("refs/remotes/origin/HEAD", "HEAD"):
        proc = _run(git_dir, "symbolic-ref", "--quiet", "--short", target)
        name = proc.stdout.decode(errors="replace").strip()
        if proc.returncode == 0 and name:
            return name.removeprefix("origin/") if target != "HEAD" else name
    return "main"


def resolve(repo: str, ref: str | None, commit: str | None, mirror_dir: Path) -> Source:
    """Find the repository, the ref and the exact commit; SourceError naming what is wrong.

    A ``commit`` must be on the build's ref (given, or the repository's default branch):
    its tip or an ancestor of it.  A build "of main" is then code that is on main, which
    is what a protected ref (and its protected secrets) stands for.
    """
    if not repo or not repo.strip():
        raise SourceError("repo is empty: give a git URL or a local path")
    path = Path(repo).expanduser()
    subdir = ""
    if path.exists():
        if not path.is_dir():
            raise SourceError(f"repository {repo!r} is not a directory")
        try:
            inside = _git(path, "rev-parse", "--is-bare-repository").strip()
        except SourceError as exc:
            raise SourceError(f"{repo!r} is not a git repository") from exc
        if inside == "true":
            git_dir = path
        else:
            top = Path(_git(path, "rev-parse", "--show-toplevel").strip())
            git_dir = top
            rel = os.path.relpath(path.resolve(), top.resolve())
            subdir = "" if rel == "." else rel.replace(os.sep, "/")
        project = path.resolve().name.removesuffix(".git")
    elif "://" in repo or repo.startswith("git@"):
        try:
            git_dir = _mirror(repo, mirror_dir)
        except SourceError as exc:
            raise SourceError(f"cannot fetch repository {repo!r}: {exc}") from exc
        project = repo.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
    else:
        raise SourceError(f"repository {repo!r} does not exist")
    if not ref:
        try:
            ref = _git(git_dir, "symbolic-ref", "--short", "-q", "HEAD").strip()
        except SourceError:
            ref = "HEAD"
    if commit:
        try:
            sha = _git(git_dir, "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}").strip()
        except SourceError as exc:
            raise SourceError(f"commit {commit!r} does not exist in {repo!r}") from exc
        try:
            tip = _git(git_dir, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").strip()
        except SourceError as exc:
            raise SourceError(f"ref {ref!r} does not exist in {repo!r}") from exc
        if not _is_ancestor(git_dir, sha, tip):
            raise SourceError(
                f"commit {commit!r} is not on ref {ref!r} of {repo!r}: give a commit that "
                "is the ref's tip or one of its ancestors (or the ref it is on)"
            )
    else:
        try:
            sha = _git(git_dir, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").strip()
        except SourceError as exc:
            raise SourceError(f"ref {ref!r} does not exist in {repo!r}") from exc
    when = int(_git(git_dir, "show", "-s", "--format=%ct", sha).strip() or 0)
    name, kind = resolve_ref(git_dir, ref)
    return Source(repo, git_dir, name, sha, subdir, project, when, kind, default_branch(git_dir))
