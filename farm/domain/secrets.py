"""Per-project secret variables and protected refs: the rules, no storage.

A project's secrets are given to every job of its builds, like GitLab's CI/CD variables,
but only to builds **of the project's own repository**.  A build's project is just its
repository's base name, so ``https://evil.example/x/shop.git`` builds project ``shop``
too: a project is therefore *bound* to one repository (:func:`check_repo`), and a build
receives its project's secrets only when its ``repo`` is that repository
(:func:`same_repo`).  A project bound to no repository gives its secrets to no build
(and the store refuses to keep secrets for it).  Two addresses are the same repository
when their :func:`normalize_repo` forms are equal:

- a URL: scheme and host lower-cased, the scheme's default port dropped, the password
  dropped (and for ``http``/``https``/``git`` the whole ``user@``: it picks credentials,
  not a repository), one trailing ``/`` run and then one ``.git`` stripped from the path;
  ``git@host:path`` (scp-like) is ``ssh://git@host/path``; the path keeps its case;
- a local path (``/...`` or ``file://``): absolute only, ``//``, ``/./`` and trailing
  ``/`` collapsed, ``.git`` kept (``/srv/shop.git`` and ``/srv/shop`` are two
  directories).  This is pure string work: symlinks are not followed (the CLI resolves
  a local path before it sends one, for ``farm submit`` and ``farm secret repo`` alike)
  and a path with ``..`` matches nothing (``link/..`` need not be the parent);
- anything else (a relative path, a URL with a query) matches nothing.

The rule fails closed: two spellings it cannot prove equal are different repositories,
and the build merely runs without the project's secrets.

Within the bound repository:

- a **protected** secret only reaches builds of a *protected ref*: a branch or tag name
  matching one of the project's fnmatch patterns (GitLab's protected branches and tags).
  A project that configured no patterns protects ``main`` and ``master``
  (:data:`DEFAULT_PROTECTED_REFS`), as GitLab protects the default branch; configuring
  an empty list protects nothing;
- a **masked** secret (the default) is replaced by ``[MASKED]`` in job logs; its value
  must be at least :data:`MIN_MASKED_LENGTH` characters (GitLab's rule: a shorter one
  would mask ordinary words all over the log) and at most :data:`MAX_MASKED_LENGTH`
  (the worker holds back that much output to catch a value split across chunks).

Precedence of a job's environment, lowest first (GitLab's order, kept short):
predefined ``CI_*`` < pipeline and job ``variables:`` < project secrets < the build's
submitted ``variables`` < the build's submitted ``secrets``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatchcase
from urllib.parse import urlsplit

from farm.errors import InvalidRequest

__all__ = [
    "DEFAULT_PROTECTED_REFS",
    "MAX_MASKED_LENGTH",
    "MAX_PATTERNS",
    "MAX_REPO_LENGTH",
    "MAX_VALUE_LENGTH",
    "MIN_MASKED_LENGTH",
    "NAME_PATTERN",
    "ProjectSecret",
    "ProjectSecrets",
    "SecretInfo",
    "applicable",
    "check_name",
    "check_patterns",
    "check_repo",
    "check_secret",
    "is_protected_ref",
    "masked_values",
    "normalize_repo",
    "ref_name",
    "same_repo",
]

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"  # an environment variable's name, as GitLab's
MAX_NAME_LENGTH = 255
MIN_MASKED_LENGTH = 8
MAX_MASKED_LENGTH = 1024
MAX_VALUE_LENGTH = 64 * 1024  # an environment, not a file store
MAX_PATTERNS = 100
MAX_PATTERN_LENGTH = 255
DEFAULT_PROTECTED_REFS: tuple[str, ...] = ("main", "master")
MAX_REPO_LENGTH = 4096  # PATH_MAX, as a build's repo

_NAME = re.compile(NAME_PATTERN)
# scp-like ``[user@]host:path``: no slash before the first colon (git's own rule).
_SCP = re.compile(r"^(?:(?P<user>[^@/:]+)@)?(?P<host>[^@/:\[\]]+):(?P<path>.*)$")
_DEFAULT_PORTS = {"http": 80, "https": 443, "ssh": 22, "git": 9418}
_NO_USER = frozenset({"http", "https", "git"})


@dataclass(frozen=True)
class SecretInfo:
    """What may be shown of a project secret: everything but its value."""

    project: str
    name: str
    protected: bool
    masked: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ProjectSecret(SecretInfo):
    """A project secret with its plain value (in memory only; never in a repr)."""

    value: str = field(default="", repr=False)

    def info(self) -> SecretInfo:
        """The secret without its value."""
        return SecretInfo(
            self.project, self.name, self.protected, self.masked, self.created_at, self.updated_at
        )


@dataclass(frozen=True)
class ProjectSecrets:
    """What a job's assignment needs of its project: secrets and protected-ref patterns."""

    secrets: tuple[ProjectSecret, ...] = ()
    protected_refs: tuple[str, ...] = DEFAULT_PROTECTED_REFS
    repo: str | None = None  # the repository the project is bound to (None: none)

    def trusts(self, repo: str) -> bool:
        """Whether a build of ``repo`` is a build of this project's bound repository."""
        return same_repo(self.repo, repo)


def _local_path(path: str) -> str | None:
    """An absolute path with ``//``, ``/./`` and trailing ``/`` collapsed; None for others."""
    if not path.startswith("/"):
        return None
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        return None
    return "/" + "/".join(parts)


def normalize_repo(repo: str) -> str | None:
    """The form in which two repository addresses are compared (see the module doc);
    None for an address that matches nothing."""
    if not repo or len(repo) > MAX_REPO_LENGTH or repo != repo.strip():
        return None
    if any(ord(c) < 32 or ord(c) == 127 for c in repo):
        return None
    if repo.startswith("/"):
        return _local_path(repo)
    if "://" not in repo:
        scp = _SCP.match(repo)
        if scp is None:
            return None  # a relative path: relative to what?
        user = f"{scp['user']}@" if scp["user"] else ""
        repo = f"ssh://{user}{scp['host']}/{scp['path'].lstrip('/')}"
    try:
        url = urlsplit(repo)
        port = url.port
    except ValueError:
        return None
    scheme = url.scheme.lower()
    if url.query or url.fragment or not scheme:
        return None
    if scheme == "file":
        return _local_path(url.path) if url.netloc.lower() in ("", "localhost") else None
    host = url.hostname  # lower-cased, without the brackets of an IPv6 address
    if not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    if url.username and scheme not in _NO_USER:
        host = f"{url.username}@{host}"
    path = url.path.rstrip("/").removesuffix(".git")
    if not path.strip("/"):
        return None  # a host is not a repository
    return f"{scheme}://{host}{path}"


def same_repo(bound: str | None, repo: str) -> bool:
    """Whether a build of ``repo`` is a build of the repository a project is bound to."""
    if bound is None:
        return False
    mine = normalize_repo(bound)
    return mine is not None and mine == normalize_repo(repo)


def check_repo(repo: str) -> str:
    """``repo`` (as given) if a project can be bound to it, else InvalidRequest."""
    if normalize_repo(repo) is None:
        raise InvalidRequest(
            f"repository {repo[:200]!r} cannot be bound: give a git URL (https://host/group/"
            "name.git, ssh://git@host/group/name, git@host:group/name) or an absolute local "
            "path without '..'"
        )
    if "://" in repo and urlsplit(repo).password is not None:
        raise InvalidRequest("give the repository URL without a password (it would be shown)")
    return repo


def ref_name(ref: str) -> str:
    """A build's ref as a branch or tag name (``refs/heads/x`` and ``refs/tags/x`` are ``x``)."""
    return ref.removeprefix("refs/heads/").removeprefix("refs/tags/")


def is_protected_ref(ref: str, patterns: Iterable[str]) -> bool:
    """Whether ``ref`` matches one of the protected patterns (fnmatch, case-sensitive)."""
    name = ref_name(ref)
    return any(fnmatchcase(name, p) for p in patterns)


def applicable(project: ProjectSecrets, ref: str, *, repo: str) -> dict[str, ProjectSecret]:
    """The project's secrets a build of ``repo`` at ``ref`` receives, by name.

    None unless ``repo`` is the project's bound repository (:func:`same_repo`); then
    unprotected secrets always apply, protected ones only on a protected ref.  A secret
    that does not apply is left out entirely: neither the job's environment nor the
    worker's mask list (which leaves the API) may carry it.
    """
    if not project.trusts(repo):
        return {}
    protected = is_protected_ref(ref, project.protected_refs)
    return {s.name: s for s in project.secrets if protected or not s.protected}


def check_name(name: str) -> str:
    """``name`` if it can be an environment variable's name, else InvalidRequest."""
    if len(name) > MAX_NAME_LENGTH or not _NAME.match(name):
        raise InvalidRequest(
            f"secret name {name[:80]!r} is not a variable name: letters, digits and '_', "
            f"not starting with a digit, at most {MAX_NAME_LENGTH} characters"
        )
    return name


def check_secret(name: str, value: str, masked: bool) -> None:
    """InvalidRequest when ``value`` cannot be stored (or masked) as ``name``.

    The message names the secret but never quotes its value.
    """
    check_name(name)
    if len(value) > MAX_VALUE_LENGTH:
        raise InvalidRequest(f"secret {name}: the value is over {MAX_VALUE_LENGTH} characters")
    if "\0" in value:
        raise InvalidRequest(f"secret {name}: the value contains a NUL character")
    if masked and len(value) < MIN_MASKED_LENGTH:
        raise InvalidRequest(
            f"secret {name} cannot be masked: the value must be at least "
            f"{MIN_MASKED_LENGTH} characters long (or store it unmasked)"
        )
    if masked and len(value) > MAX_MASKED_LENGTH:
        raise InvalidRequest(
            f"secret {name} cannot be masked: the value is over {MAX_MASKED_LENGTH} "
            "characters (store it unmasked)"
        )


def check_patterns(patterns: Iterable[str]) -> tuple[str, ...]:
    """Protected-ref patterns, de-duplicated in order; InvalidRequest for an unusable one."""
    out: list[str] = []
    for p in patterns:
        if not p or p != p.strip() or len(p) > MAX_PATTERN_LENGTH:
            raise InvalidRequest(
                f"protected ref pattern {p[:80]!r} must be 1 to {MAX_PATTERN_LENGTH} "
                "characters without surrounding whitespace"
            )
        if any(ord(c) < 32 or ord(c) == 127 for c in p):
            raise InvalidRequest(f"protected ref pattern {p[:80]!r} contains a control character")
        if p not in out:
            out.append(p)
    if len(out) > MAX_PATTERNS:
        raise InvalidRequest(f"at most {MAX_PATTERNS} protected ref patterns per project")
    return tuple(out)


def masked_values(applied: Mapping[str, ProjectSecret], env: Mapping[str, str]) -> set[str]:
    """Values of the applied masked secrets that the job's environment really carries."""
    return {s.value for s in applied.values() if s.masked and env.get(s.name) == s.value}
