"""Project secrets in the store: one Fernet token per value, bound to its row; kept only
for a project bound to its repository."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import inspect, update

from farm.db.repository import Store
from farm.db.secrets import SecretBox
from farm.db.session import MIGRATIONS, make_engine, make_sessionmaker, migrate, transaction
from farm.db.tables import ProjectSecretRow
from farm.domain.secrets import DEFAULT_PROTECTED_REFS
from farm.errors import ConfigError, Conflict, InvalidRequest

VALUE = "pr0ject-s3cret-value"
OTHER = "an0ther-pr0tected-value"
REPO = "https://git.example.com/group/shop.git"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "farm.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()
    yield path


@pytest.fixture
def box() -> SecretBox:
    return SecretBox.ephemeral()


def store_on(path: Path, box: SecretBox) -> Store:
    store = Store(make_sessionmaker(make_engine(f"sqlite:///{path}")), box)
    for project in ("shop", "group/shop", "elsewhere"):
        if store.project_repo(project) is None:
            store.bind_project_repo(project, f"https://git.example.com/{project}.git")
    return store


def test_put_list_read_delete(db: Path, box: SecretBox) -> None:
    store = store_on(db, box)
    info, created = store.put_project_secret(
        "group/shop", "TOKEN", VALUE, protected=False, masked=True
    )
    assert created and (info.project, info.name, info.masked) == ("group/shop", "TOKEN", True)
    again, created = store.put_project_secret(
        "group/shop", "TOKEN", OTHER, protected=True, masked=True
    )
    assert not created and again.protected and again.created_at == info.created_at
    assert again.updated_at >= info.updated_at
    store.put_project_secret("group/shop", "A_FIRST", "short", protected=False, masked=False)
    store.put_project_secret("elsewhere", "TOKEN", VALUE, protected=False, masked=True)
    assert [i.name for i in store.project_secret_infos("group/shop")] == ["A_FIRST", "TOKEN"]
    loaded = store.project_secrets("group/shop")
    assert {s.name: s.value for s in loaded.secrets} == {"A_FIRST": "short", "TOKEN": OTHER}
    assert loaded.protected_refs == DEFAULT_PROTECTED_REFS
    assert store.delete_project_secret("group/shop", "TOKEN")
    assert not store.delete_project_secret("group/shop", "TOKEN")
    assert [i.name for i in store.project_secret_infos("group/shop")] == ["A_FIRST"]
    assert store.project_secrets("nobody").secrets == ()
    assert store.project_secrets("group/shop").repo == "https://git.example.com/group/shop.git"
    assert store.project_secrets("nobody").repo is None


def test_secrets_need_a_bound_repository(db: Path, box: SecretBox) -> None:
    store = store_on(db, box)
    with pytest.raises(InvalidRequest) as err:
        store.put_project_secret("free", "TOKEN", VALUE, protected=False, masked=True)
    assert "bind the project to its repository first: farm secret repo free URL" in str(err.value)
    assert store.project_secret_infos("free") == [] and store.project_repo("free") is None
    # ``repo`` binds an unbound project along with its first secret...
    store.put_project_secret("free", "TOKEN", VALUE, protected=False, masked=True, repo=REPO)
    assert store.project_repo("free") == REPO
    # ... is accepted when it names the bound repository, however spelt ...
    again = "HTTPS://git.example.com/group/shop/"
    store.put_project_secret("free", "TOKEN", OTHER, protected=False, masked=True, repo=again)
    assert store.project_repo("free") == REPO
    # ... and refused (nothing stored) when it names another.
    with pytest.raises(Conflict) as clash:
        store.put_project_secret(
            "free", "TOKEN", VALUE, protected=False, masked=True, repo="https://evil.example/shop"
        )
    assert f"bound to {REPO!r}, not 'https://evil.example/shop'" in str(clash.value)
    assert {s.name: s.value for s in store.project_secrets("free").secrets} == {"TOKEN": OTHER}


def test_binding_a_repository_and_keeping_the_protected_refs(db: Path, box: SecretBox) -> None:
    store = store_on(db, box)
    store.set_protected_refs("bound", ["release/*"])
    assert store.project_repo("bound") is None
    assert store.bind_project_repo("bound", "git@git.example.com:g/bound.git") == (
        "git@git.example.com:g/bound.git"
    )
    assert store.protected_refs("bound") == (("release/*",), True)
    store.bind_project_repo("bound", "/srv/git/bound")  # re-binding replaces it
    loaded = store.project_secrets("bound")
    assert (loaded.repo, loaded.protected_refs) == ("/srv/git/bound", ("release/*",))
    store.set_protected_refs("bound", None)
    assert store.protected_refs("bound") == (DEFAULT_PROTECTED_REFS, False)
    assert store.project_repo("bound") == "/srv/git/bound"  # the default refs keep the repo
    for bad in ("relative/path", "https://u:pw@git.example.com/g/bound.git", "/srv/../x"):
        with pytest.raises(InvalidRequest):
            store.bind_project_repo("bound", bad)
    assert store.project_repo("bound") == "/srv/git/bound"


def test_values_are_encrypted_at_rest_one_token_each(db: Path, box: SecretBox) -> None:
    store = store_on(db, box)
    store.put_project_secret("shop", "TOKEN", VALUE, protected=True, masked=True)
    store.put_project_secret("shop", "SAME", VALUE, protected=True, masked=True)
    raw = b"".join(p.read_bytes() for p in db.parent.iterdir() if p.name.startswith("farm.db"))
    assert VALUE.encode() not in raw  # not in the file, the WAL or the shm
    with transaction(store._sessions) as s:
        tokens = [r.value for r in s.query(ProjectSecretRow).all()]
    assert len(set(tokens)) == 2 and all(t.startswith("gAAAA") for t in tokens)


def test_a_token_moved_to_another_row_or_a_flipped_flag_is_refused(
    db: Path, box: SecretBox
) -> None:
    store = store_on(db, box)
    store.put_project_secret("shop", "GUARDED", VALUE, protected=True, masked=True)
    store.put_project_secret("shop", "OPEN", "open-value-1", protected=False, masked=True)
    with transaction(store._sessions) as s:
        token = s.query(ProjectSecretRow).filter_by(name="GUARDED").one().value
        s.execute(
            update(ProjectSecretRow).where(ProjectSecretRow.name == "OPEN").values(value=token)
        )
    with pytest.raises(ConfigError, match="secret OPEN of project shop was altered"):
        store.project_secrets("shop")
    store.put_project_secret("shop", "OPEN", "open-value-1", protected=False, masked=True)
    with transaction(store._sessions) as s:
        s.execute(
            update(ProjectSecretRow)
            .where(ProjectSecretRow.name == "GUARDED")
            .values(protected=False)
        )
    with pytest.raises(ConfigError, match="GUARDED") as err:
        store.project_secrets("shop")
    assert VALUE not in str(err.value)


def test_another_key_cannot_read_them_and_says_so_in_one_line(db: Path, box: SecretBox) -> None:
    store_on(db, box).put_project_secret("shop", "TOKEN", VALUE, protected=False, masked=True)
    with pytest.raises(ConfigError) as err:
        store_on(db, SecretBox.ephemeral()).project_secrets("shop")
    assert "cannot be decrypted" in str(err.value) and "\n" not in str(err.value)
    # Listing needs no key: names and flags are not secret.
    assert [i.name for i in store_on(db, SecretBox.ephemeral()).project_secret_infos("shop")]


def test_invalid_names_and_short_masked_values_are_refused(db: Path, box: SecretBox) -> None:
    store = store_on(db, box)
    with pytest.raises(InvalidRequest, match="variable name"):
        store.put_project_secret("shop", "NOT-A-NAME", VALUE, protected=False, masked=True)
    with pytest.raises(InvalidRequest, match="cannot be masked"):
        store.put_project_secret("shop", "SHORT", "1234567", protected=False, masked=True)
    assert store.project_secret_infos("shop") == []


def test_protected_refs_default_set_empty_and_reset(db: Path, box: SecretBox) -> None:
    store = store_on(db, box)
    assert store.protected_refs("shop") == (DEFAULT_PROTECTED_REFS, False)
    store.set_protected_refs("shop", ["release/*", "main", "main"])
    assert store.protected_refs("shop") == (("release/*", "main"), True)
    assert store.project_secrets("shop").protected_refs == ("release/*", "main")
    store.set_protected_refs("shop", [])
    assert store.protected_refs("shop") == ((), True)  # nothing protected, on purpose
    store.set_protected_refs("shop", None)
    assert store.protected_refs("shop") == (DEFAULT_PROTECTED_REFS, False)
    assert store.protected_refs("other") == (DEFAULT_PROTECTED_REFS, False)


def test_migration_0009_goes_up_and_down(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))

    def to(verb: str, revision: str) -> set[str]:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            getattr(command, verb)(config, revision)
        return set(inspect(engine).get_table_names())

    assert "project_secrets" not in to("upgrade", "0008")
    assert {"project_secrets", "project_settings"} <= to("upgrade", "0009")
    columns = {c["name"]: c["nullable"] for c in inspect(engine).get_columns("project_settings")}
    assert columns == {
        "project": False,
        "repo": True,
        "protected_refs": True,
        "updated_at": False,
    }
    assert not {"project_secrets", "project_settings"} & to("downgrade", "0008")
    engine.dispose()
