"""The store's per-project secret variables, bound repository and protected refs.

Each value is stored as its own Fernet token under the farm's secrets key
(:meth:`farm.db.secrets.SecretBox.seal_value`), bound to its row's project, name and
flags; the plain value exists only in memory, in the :class:`ProjectSecret` that
:meth:`ProjectSecretsMixin.project_secrets` hands to the claim.  Listing returns
:class:`SecretInfo` (no value): nothing the API serves can carry one.

A project keeps secrets only once it is bound to its repository
(:meth:`ProjectSecretsMixin.bind_project_repo`; see :mod:`farm.domain.secrets`): a
secret stored for an unbound project would reach no build, so storing it is refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Select, String, Table, delete, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from farm.db.secrets import SecretBox
from farm.db.session import aware
from farm.db.tables import ProjectSecretRow, ProjectSettingsRow
from farm.domain.secrets import (
    DEFAULT_PROTECTED_REFS,
    ProjectSecret,
    ProjectSecrets,
    SecretInfo,
    check_patterns,
    check_repo,
    check_secret,
    normalize_repo,
)
from farm.errors import Conflict, InvalidRequest

__all__ = ["ProjectSecretsMixin"]

SECRETS = cast(Table, ProjectSecretRow.__table__)
SETTINGS = cast(Table, ProjectSettingsRow.__table__)


def _claim_read(project: str) -> Select[Any]:
    """The project's settings and secrets in one statement (one snapshot, and one round
    trip in every claim): a row per secret, or one row of NULL secret columns."""
    asked = select(literal(project, String).label("project")).subquery("asked")
    st, ps = SETTINGS.c, SECRETS.c
    return (
        select(
            st.repo,
            st.protected_refs,
            ps.name,
            ps.value,
            ps.protected,
            ps.masked,
            ps.created_at,
            ps.updated_at,
        )
        .select_from(asked)
        .outerjoin(SETTINGS, st.project == asked.c.project)
        .outerjoin(SECRETS, ps.project == asked.c.project)
        .order_by(ps.name)
    )


def _bound(project: str, name: str, protected: bool, masked: bool) -> dict[str, object]:
    """What a value's token is bound to: the row it may be read from."""
    return {"project": project, "name": name, "protected": protected, "masked": masked}


def _settings(s: Session, project: str, now: datetime) -> ProjectSettingsRow:
    """The project's settings row, added (all defaults) if it has none yet."""
    row = s.get(ProjectSettingsRow, project)
    if row is None:
        row = ProjectSettingsRow(project=project, repo=None, protected_refs=None, updated_at=now)
        s.add(row)
    return row


def _patterns(row: ProjectSettingsRow | None) -> tuple[str, ...] | None:
    return None if row is None or row.protected_refs is None else tuple(row.protected_refs)


def _unbound(project: str) -> InvalidRequest:
    return InvalidRequest(
        f"project {project!r} is bound to no repository, so no build would get its secrets: "
        f"bind the project to its repository first: farm secret repo {project} URL "
        "(or give --repo URL)"
    )


def _info(row: ProjectSecretRow) -> SecretInfo:
    return SecretInfo(
        project=row.project,
        name=row.name,
        protected=row.protected,
        masked=row.masked,
        created_at=aware(row.created_at),
        updated_at=aware(row.updated_at),
    )


class ProjectSecretsMixin:
    """Project secret methods of :class:`farm.db.repository.Store` (kept apart, like caches)."""

    _box: SecretBox  # provided by Store
    _sessions: sessionmaker[Session]  # provided by Store

    def _tx(self) -> AbstractContextManager[Session]:  # provided by Store
        raise NotImplementedError

    def put_project_secret(
        self,
        project: str,
        name: str,
        value: str,
        *,
        protected: bool,
        masked: bool,
        repo: str | None = None,
    ) -> tuple[SecretInfo, bool]:
        """Create or replace a secret; (what is stored, without the value; whether it is new).

        ``repo``: bind the project to this repository if it is bound to none yet (in the
        same transaction).  InvalidRequest (422) for a name that is no variable name, a
        value that cannot be masked (:func:`farm.domain.secrets.check_secret`) or a
        project bound to no repository (and no ``repo``); Conflict (409) when ``repo`` is
        not the repository the project is bound to.
        """
        check_secret(name, value, masked)
        if repo is not None:
            check_repo(repo)
        token = self._box.seal_value(value, _bound(project, name, protected, masked))
        now = datetime.now(UTC)
        where = (ProjectSecretRow.project == project, ProjectSecretRow.name == name)
        for _ in range(2):  # a racing first insert makes ours an update
            try:
                with self._tx() as s:
                    settings = s.get(ProjectSettingsRow, project)
                    bound = None if settings is None else settings.repo
                    if bound is None and repo is None:
                        raise _unbound(project)
                    if bound is None:
                        settings = _settings(s, project, now)
                        settings.repo, settings.updated_at = repo, now
                    elif repo is not None and normalize_repo(repo) != normalize_repo(bound):
                        raise Conflict(
                            f"project {project!r} is bound to {bound[:200]!r}, not "
                            f"{repo[:200]!r}: change it with farm secret repo {project} URL"
                        )
                    res = s.execute(
                        update(ProjectSecretRow)
                        .where(*where)
                        .values(value=token, protected=protected, masked=masked, updated_at=now)
                    )
                    created = not res.rowcount  # type: ignore[attr-defined]
                    if created:
                        s.add(
                            ProjectSecretRow(
                                project=project,
                                name=name,
                                value=token,
                                protected=protected,
                                masked=masked,
                                created_at=now,
                                updated_at=now,
                            )
                        )
                        s.flush()
                    row = s.scalars(select(ProjectSecretRow).where(*where)).one()
                    return _info(row), created
            except IntegrityError:
                continue
        raise AssertionError("unreachable: the second try finds the row")  # pragma: no cover

    def project_secret_infos(self, project: str) -> list[SecretInfo]:
        """The project's secrets by name, without their values."""
        with self._tx() as s:
            rows = s.scalars(
                select(ProjectSecretRow)
                .where(ProjectSecretRow.project == project)
                .order_by(ProjectSecretRow.name)
            ).all()
            return [_info(r) for r in rows]

    def delete_project_secret(self, project: str, name: str) -> bool:
        """Remove a secret; False when there was none."""
        with self._tx() as s:
            res = s.execute(
                delete(ProjectSecretRow).where(
                    ProjectSecretRow.project == project, ProjectSecretRow.name == name
                )
            )
            return bool(res.rowcount)  # type: ignore[attr-defined]

    def project_secrets(self, project: str) -> ProjectSecrets:
        """The project's secrets, decrypted, its bound repository and protected refs (what
        a claim needs).

        ConfigError when a value cannot be decrypted with the farm's key or its token
        does not belong to its row (the claim then fails rather than run without it).
        """
        with self._sessions() as s:
            rows = s.execute(_claim_read(project)).all()
        first = rows[0]  # the outer joins give one row even for an unknown project
        patterns = None if first.protected_refs is None else tuple(first.protected_refs)
        secrets = tuple(
            ProjectSecret(
                project=project,
                name=r.name,
                protected=r.protected,
                masked=r.masked,
                created_at=aware(r.created_at),
                updated_at=aware(r.updated_at),
                value=self._box.open_value(
                    r.value,
                    _bound(project, r.name, r.protected, r.masked),
                    f"secret {r.name} of project {project}",
                ),
            )
            for r in rows
            if r.name is not None
        )
        return ProjectSecrets(
            secrets=secrets,
            protected_refs=DEFAULT_PROTECTED_REFS if patterns is None else patterns,
            repo=first.repo,
        )

    def project_repo(self, project: str) -> str | None:
        """The repository the project is bound to, as it was given (None: none)."""
        with self._tx() as s:
            row = s.get(ProjectSettingsRow, project)
            return None if row is None else row.repo

    def bind_project_repo(self, project: str, repo: str) -> str:
        """Bind (or re-bind) the project to ``repo``; the repo as stored.

        InvalidRequest (422) for an address that can match no build
        (:func:`farm.domain.secrets.check_repo`).
        """
        check_repo(repo)
        now = datetime.now(UTC)
        for _ in range(2):  # a racing first insert makes ours an update
            try:
                with self._tx() as s:
                    row = _settings(s, project, now)
                    row.repo, row.updated_at = repo, now
                return repo
            except IntegrityError:
                continue
        raise AssertionError("unreachable: the second try finds the row")  # pragma: no cover

    def protected_refs(self, project: str) -> tuple[tuple[str, ...], bool]:
        """(the project's protected ref patterns, whether it configured them itself)."""
        with self._tx() as s:
            patterns = _patterns(s.get(ProjectSettingsRow, project))
            if patterns is None:
                return DEFAULT_PROTECTED_REFS, False
            return patterns, True

    def set_protected_refs(self, project: str, patterns: Iterable[str] | None) -> None:
        """Replace the project's patterns; None goes back to the default (main, master)."""
        now = datetime.now(UTC)
        checked = None if patterns is None else list(check_patterns(patterns))
        for _ in range(2):  # a racing first insert makes ours an update
            try:
                with self._tx() as s:
                    if checked is None and s.get(ProjectSettingsRow, project) is None:
                        return  # the default already
                    row = _settings(s, project, now)
                    row.protected_refs, row.updated_at = checked, now
                return
            except IntegrityError:
                continue
