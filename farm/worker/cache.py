"""GitLab ``cache:`` on a worker: compute the key, restore before the script, save after.

Archives are content-addressed blobs moved with the :class:`RegistryClient`; the
coordinator only keeps ``(project, key) → digest`` (``/api/v1/worker/caches``), so
workers share caches without a shared filesystem. As on GitLab, a cache is a best
effort: a missing, corrupt or unreachable cache is a warning in the log, never a
failed job.

Key semantics (ambiguities resolved here):

* ``key: <string>`` — already expanded by the loader; variables only known at run time
  (``$CI_JOB_ID`` …) are expanded here with the job's environment. Default ``default``.
* ``key: {files: [...], prefix: P}`` — the sha256 of the listed files' *content* in the
  laid-out workspace (GitLab hashes the files' last commit; content is our documented
  choice: it needs no git history and is job-independent). The key is ``P-<40 hex>``
  (or just the hex); when none of the files exist it is ``P-default`` / ``default``.
* ``fallback_keys`` are tried in order when the key has no cache yet.
* ``policy``: ``pull`` restores only, ``push`` saves only, ``pull-push`` both.
* ``when``: the job result on which the cache is saved (on_success, on_failure, always).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from urllib.parse import quote

from farm.domain.messages import CacheEntry
from farm.errors import FarmError, NotFound
from farm.http import HttpClient, HttpConfig, RetryPolicy
from farm.pipeline.variables import expand_text
from farm.registry.archive import compression_level, pack, unpack
from farm.registry.client import RegistryClient

Say = Callable[[str], None]


def literal_pattern(path: str) -> str:
    """A doublestar pattern for ``path``: ``*`` and ``?`` escaped as one-character classes.

    ``[`` cannot be put in a class by archive's glob compiler, so it becomes ``?``: such
    a name may also match siblings that differ only in that character (rare; accepted).
    """
    return "".join("?" if c == "[" else f"[{c}]" if c in "*?" else c for c in path)


def untracked_files(workspace: Path, tracked: Iterable[str]) -> list[str]:
    """Files in the workspace that the commit snapshot did not contain (GitLab's untracked).

    Upstream artifacts and restored caches count as untracked, as they would in a git
    checkout. Symlinks are listed, never followed.
    """
    known = set(tracked)
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(workspace):
        rel_dir = os.path.relpath(dirpath, workspace)
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if rel not in known:
                out.append(rel)
    return sorted(out)


def _or_empty(env: Mapping[str, str]) -> Callable[[str], str]:
    return lambda name: env.get(name, "")


def cache_key(entry: CacheEntry, workspace: Path, env: Mapping[str, str]) -> str:
    """The final key of one ``cache:`` entry (see the module docstring)."""
    files = entry.key_files
    prefix = entry.key_prefix
    if prefix:
        prefix = expand_text(str(prefix), _or_empty(env))
    if files:
        digest = hashlib.sha256()
        found = False
        for rel in sorted(files):
            path = workspace / rel
            if not path.is_file() or not path.resolve().is_relative_to(workspace.resolve()):
                continue
            found = True
            digest.update(rel.encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).hexdigest().encode() + b"\n")
        body = digest.hexdigest()[:40] if found else "default"
        key = f"{prefix}-{body}" if prefix else body
    else:
        # As on GitLab, a variable that is not set expands to nothing.
        key = expand_text(entry.key or "default", _or_empty(env)) or "default"
    return key.replace("/", "-")  # a key is one URL segment and one name


class CacheIndex:
    """HTTP client of the coordinator's cache index (``/api/v1/worker/caches``).

    farm's one HTTP core: GET and PUT are idempotent, so failures to connect and
    retryable 5xx answers are tried ``tries`` times; other answers raise their FarmError.
    """

    PREFIX = "/api/v1/worker/caches"

    def __init__(
        self, base_url: str, timeout: float = 30.0, tries: int = 4, token: str | None = None
    ) -> None:
        retry = RetryPolicy(attempts=tries, backoff=0.2)
        self._http = HttpClient(HttpConfig(base_url, timeout=timeout, retry=retry, token=token))

    def close(self) -> None:
        """Release the connection pool."""
        self._http.close()

    @classmethod
    def _url(cls, project: str, key: str) -> str:
        return f"{cls.PREFIX}/{quote(project, safe='/')}/{quote(key, safe='')}"

    def get(self, project: str, key: str) -> str | None:
        """The digest saved under ``key``, or None."""
        try:
            body = self._http.json("GET", self._url(project, key))
        except NotFound:
            return None
        return str(body["digest"])

    def put(self, project: str, key: str, digest: str, size: int) -> None:
        """Point ``key`` at an uploaded archive."""
        self._http.request("PUT", self._url(project, key), json={"digest": digest, "size": size})


class JobCaches:
    """The caches of one job attempt: keys fixed once the workspace is laid out."""

    def __init__(
        self,
        entries: Sequence[CacheEntry],
        *,
        project: str,
        workspace: Path,
        scratch: Path,
        env: Mapping[str, str],
        index: CacheIndex,
        registry: RegistryClient,
        say: Say,
    ) -> None:
        self.entries = list(entries)
        self.keys = [cache_key(e, workspace, env) for e in self.entries]
        self.project, self.workspace, self.scratch = project, workspace, scratch
        self.env, self.index, self.registry, self.say = env, index, registry, say

    def restore(self) -> None:
        """Pull every cache whose policy pulls: its key, else its fallback keys in order."""
        for i, (entry, key) in enumerate(zip(self.entries, self.keys, strict=True)):
            if entry.policy == "push":
                continue
            fallbacks = [expand_text(k, self.env.get) for k in entry.fallback_keys]
            try:
                self._restore_one(i, key, fallbacks)
            except (FarmError, OSError) as exc:
                self.say(f"WARNING: cache {key!r} not restored: {exc}")

    def _restore_one(self, i: int, key: str, fallbacks: list[str]) -> None:
        for candidate in [key, *fallbacks]:
            digest = self.index.get(self.project, candidate)
            if digest is None:
                continue
            dest = self.scratch / f"cache-in-{i}.tar.gz"
            self.registry.download_to(digest, dest)
            files = unpack(dest, self.workspace)
            dest.unlink()
            self.say(f"Restored cache {candidate!r} ({len(files)} entries, {digest[:19]})")
            return
        self.say(f"No cache for key {key!r} yet")

    def save(self, succeeded: bool, tracked: Iterable[str]) -> None:
        """Push every cache whose policy pushes and whose ``when`` matches the result."""
        tracked = list(tracked)
        for i, (entry, key) in enumerate(zip(self.entries, self.keys, strict=True)):
            when = entry.when
            if entry.policy == "pull":
                continue
            if not (when == "always" or (when == "on_success") == succeeded):
                continue
            try:
                self._save_one(i, key, entry, tracked)
            except (FarmError, OSError) as exc:
                self.say(f"WARNING: cache {key!r} not saved: {exc}")

    def _save_one(self, i: int, key: str, entry: CacheEntry, tracked: list[str]) -> None:
        paths = [expand_text(p, self.env.get) for p in entry.paths]
        if entry.untracked:
            paths += [literal_pattern(p) for p in untracked_files(self.workspace, tracked)]
        if not paths:
            return
        dest = self.scratch / f"cache-out-{i}.tar.gz"
        level, warning = compression_level(self.env.get("CACHE_COMPRESSION_LEVEL"))
        if warning:
            self.say(f"WARNING: CACHE_COMPRESSION_LEVEL: {warning}")
        packed = pack(self.workspace, paths, dest=dest, level=level)
        files = packed.files
        if not files:
            self.say(f"WARNING: no files matched cache {key!r}; nothing saved")
            return
        info = self.registry.upload_file(dest, packed.blob)
        self.index.put(self.project, key, info.digest, info.size)
        dest.unlink()
        self.say(f"Saved cache {key!r} ({len(files)} entries, {info.size} bytes)")
