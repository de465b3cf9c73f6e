"""The worker's work directory: job dirs nobody else can reach, and their cleanup.

**Isolation of job-writable host paths** (issue 16, item 7). A job runs as root in its
container (no user namespace) and its workspace is a bind mount of a host directory,
so a job can leave a set-uid-root program in it (``cp /bin/bash rootsh; chmod 4755
rootsh``); a host user who can reach that file gets euid 0. The work directory is the
parent of every job-writable host path (workspaces, the read-only ``/farm`` scripts,
inputs, caches being packed, the report spool), and the worker makes it owned by
itself with mode 0700 at start (:meth:`WorkDir.prepare`), whatever existed before and
whatever the umask: nobody else can traverse it, so nobody else can execute, open or
hard-link anything a job planted below it. Chosen over a ``nosuid,nodev`` mount
(needs CAP_SYS_ADMIN and a mount per worker, breaks in a containerised worker and
is undone by a later ``mount --bind``) and user-namespaced jobs (dockerd-wide
``userns-remap``, which changes file ownership of every workspace and cache). The
containers are unaffected: a bind mount's root is reached through the container's
own mount namespace, never through the host's parent directories. Archives farm makes
keep no set-uid bits on extraction (``farm.registry.archive``), so nothing planted
leaves through artifacts or caches either.

**Cleanup.** Every job dir is made under a temporary name, locked (``flock``) and only
then renamed to ``job-<id>-<attempt>-<rand>``; its attempt holds the lock until the
dir is removed. A job dir whose lock can be taken belongs to no live attempt on any
worker sharing this work directory — its worker was killed — and :meth:`WorkDir.sweep`
(at worker start and on every reaper pass) removes it.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
import stat
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from farm.errors import ConfigError

log = logging.getLogger("farm.worker")

JOB_PREFIX = "job-"
NEW_PREFIX = ".new-"  # a job dir being made (not locked yet for a few microseconds)
NEW_GRACE = 60.0  # seconds before an abandoned .new-* dir is swept
SPOOL = "spool"
SCRIPTS = "scripts"


class WorkDir:
    """``FARM_WORK_DIR``: private to the worker's user, one locked dir per live attempt."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._prepared = False

    @property
    def scripts_dir(self) -> Path:
        """Where the job wrapper script is kept once, to be linked into each job dir."""
        return self.root / SCRIPTS

    @property
    def spool_dir(self) -> Path:
        """Where attempts spool their reports (see ``farm.worker.spool``)."""
        return self.root / SPOOL

    def prepare(self) -> None:
        """Create the work dir if needed and make it 0700, owned by this process's user.

        Raises :class:`ConfigError` when it belongs to someone else (a worker must not
        lay out jobs where another user can reach them), ``NotADirectoryError`` when it
        is not a directory.
        """
        if self.root.exists() and not self.root.is_dir():
            raise NotADirectoryError(
                errno.ENOTDIR, "FARM_WORK_DIR is not a directory", str(self.root)
            )
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.stat(self.root)  # a symlink to the real work dir is fine: that dir counts
        if st.st_uid != os.geteuid():
            raise ConfigError(
                f"FARM_WORK_DIR {self.root} belongs to uid {st.st_uid}, not to this worker "
                f"(uid {os.geteuid()}): job workspaces must be private to the worker"
            )
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.chmod(self.root, 0o700)
            log.info("made the work dir %s private (mode 0700)", self.root)
        self._prepared = True

    @contextmanager
    def job_dir(self, job_id: int, attempt: int) -> Iterator[Path]:
        """A fresh, locked job dir for one attempt; removed (then unlocked) at exit."""
        if not self._prepared:
            self.prepare()
        tmp = self.root / f"{NEW_PREFIX}{uuid.uuid4().hex}"
        os.mkdir(tmp, 0o700)
        fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # new: nobody else can hold it
            path = self.root / f"{JOB_PREFIX}{job_id}-{attempt}-{uuid.uuid4().hex[:8]}"
            os.rename(tmp, path)
            try:
                yield path
            finally:
                _remove_tree(path)
        finally:
            os.close(fd)

    def sweep(self) -> list[Path]:
        """Remove the job dirs no live attempt holds (killed workers' leftovers)."""
        if not self.root.is_dir():
            return []
        removed: list[Path] = []
        for entry in sorted(self.root.iterdir()):
            name = entry.name
            if name.startswith(NEW_PREFIX):
                if _age(entry) < NEW_GRACE:
                    continue
            elif not name.startswith(JOB_PREFIX):
                continue
            if _remove_if_unlocked(entry):
                removed.append(entry)
        if removed:
            log.warning("removed %d job dir(s) left by dead attempts", len(removed))
        return removed


def _age(path: Path) -> float:
    try:
        return time.time() - os.lstat(path).st_mtime
    except FileNotFoundError:
        return 0.0


def _remove_if_unlocked(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:  # a symlink (ELOOP) or something odd: not ours to follow
        log.warning("not sweeping %s: %s", path, exc)
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live attempt holds it
        st, now = os.fstat(fd), os.lstat(path) if path.exists() else None
        if now is None or (st.st_dev, st.st_ino) != (now.st_dev, now.st_ino):
            return False  # removed or replaced meanwhile
        _remove_tree(path)
        return True
    finally:
        os.close(fd)


def _remove_tree(path: Path) -> None:
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("could not remove job dir %s: %s", path, exc)
        shutil.rmtree(path, ignore_errors=True)
