"""Build secrets are encrypted in the database and decrypted only into records."""

from __future__ import annotations

import json
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import update

from farm.db.repository import Store
from farm.db.secrets import (
    KEY_FILE,
    SecretBox,
    is_envelope,
    load_or_create_secret_key,
    secret_box,
)
from farm.db.session import make_engine, make_sessionmaker, migrate
from farm.db.tables import BuildRow
from farm.domain.records import NewBuild
from farm.domain.specs import JobSpec
from farm.domain.statuses import BuildStatus
from farm.errors import ConfigError

SECRETS = {"DEPLOY_TOKEN": "s3cr3t-t0ken-value", "DB_PASSWORD": "hunter2-hunter2"}


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "farm.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()
    yield path


def store_on(path: Path, box: SecretBox | None) -> Store:
    return Store(make_sessionmaker(make_engine(f"sqlite:///{path}")), box)


def new_build(secrets: dict[str, str]) -> NewBuild:
    job = JobSpec(name="build", stage="build", script=("make",))
    return NewBuild(
        project="shop",
        repo="/src/shop",
        ref="main",
        commit="a" * 40,
        pipeline_file=".farm-ci.yml",
        pipeline_digest="sha256:" + "0" * 64,
        snapshot_digest="sha256:" + "1" * 64,
        stages=("build",),
        variables={"PLAIN": "visible"},
        jobs=((job, "default"),),
        secrets=secrets,
    )


def raw_row(path: Path, build_id: int) -> str:
    """The whole builds row as SQLite stores it, every column as text."""
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT * FROM builds WHERE id = ?", (build_id,)).fetchone()
    return " ".join(str(v) for v in row)


def raw_secrets(path: Path, build_id: int) -> object:
    with sqlite3.connect(path) as conn:
        (value,) = conn.execute("SELECT secrets FROM builds WHERE id = ?", (build_id,)).fetchone()
    return json.loads(value) if value is not None else None


def test_secrets_are_encrypted_in_the_row_and_plain_in_the_record(db: Path) -> None:
    store = store_on(db, SecretBox.ephemeral())
    build_id = store.create_build(new_build(SECRETS), BuildStatus.PENDING)
    row = raw_row(db, build_id)
    for name, value in SECRETS.items():
        assert value not in row
        assert name not in row  # one token for the dict: names are hidden too
    stored = raw_secrets(db, build_id)
    assert isinstance(stored, dict) and is_envelope(stored) and stored["v"] == 1
    assert "visible" in row  # plain variables are not secrets
    assert store.get_build(build_id).secrets == SECRETS
    assert store.get_build(build_id, with_jobs=False).secrets == SECRETS
    assert store.job_lines(build_id)[0].secrets == SECRETS
    assert [b.secrets for b in store.list_builds()] == [SECRETS]
    store.check_secret_key()


def test_a_build_without_secrets_stores_null(db: Path) -> None:
    store = store_on(db, SecretBox.ephemeral())
    build_id = store.create_build(new_build({}), BuildStatus.PENDING)
    assert raw_secrets(db, build_id) is None
    assert store.get_build(build_id).secrets == {}


def test_rows_written_before_encryption_still_read(db: Path) -> None:
    store = store_on(db, SecretBox.ephemeral())
    build_id = store.create_build(new_build({}), BuildStatus.PENDING)
    engine = make_engine(f"sqlite:///{db}")
    with engine.begin() as conn:  # what the store wrote before secrets were encrypted
        conn.execute(update(BuildRow).where(BuildRow.id == build_id).values(secrets=SECRETS))
    engine.dispose()
    assert store.get_build(build_id).secrets == SECRETS
    store.check_secret_key()  # a plain row needs no key


def test_a_wrong_key_is_one_clear_line(db: Path) -> None:
    build_id = store_on(db, SecretBox.ephemeral()).create_build(
        new_build(SECRETS), BuildStatus.PENDING
    )
    other = store_on(db, SecretBox.from_keys(Fernet.generate_key().decode()))
    with pytest.raises(ConfigError) as err:
        other.get_build(build_id)
    message = str(err.value)
    assert "\n" not in message
    assert f"build {build_id}" in message and "FARM_SECRET_KEY" in message
    assert err.value.__cause__ is None and err.value.__suppress_context__
    with pytest.raises(ConfigError, match="cannot be decrypted"):
        other.check_secret_key()


def test_keys_rotate_the_first_encrypts_all_decrypt(db: Path) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    build_id = store_on(db, SecretBox.from_keys(old)).create_build(
        new_build(SECRETS), BuildStatus.PENDING
    )
    rotated = store_on(db, SecretBox.from_keys(f"{new}, {old}"))
    assert rotated.get_build(build_id).secrets == SECRETS
    second = rotated.create_build(new_build(SECRETS), BuildStatus.PENDING)
    assert store_on(db, SecretBox.from_keys(new)).get_build(second).secrets == SECRETS


@pytest.mark.parametrize("bad", ["not-a-key", "", "  ,  ", Fernet.generate_key().decode()[:-4]])
def test_a_malformed_key_is_one_clear_line(bad: str) -> None:
    with pytest.raises(ConfigError) as err:
        SecretBox.from_keys(bad)
    assert "\n" not in str(err.value) and "FARM_SECRET_KEY" in str(err.value)


def test_the_key_file_is_made_once_mode_0600(tmp_path: Path, db: Path) -> None:
    key_dir = tmp_path / "keys"
    box = load_or_create_secret_key(key_dir)
    path = key_dir / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = path.read_bytes()
    Fernet(key.strip())  # a real Fernet key
    build_id = store_on(db, box).create_build(new_build(SECRETS), BuildStatus.PENDING)
    again = load_or_create_secret_key(key_dir)  # the next start reads the same key
    assert path.read_bytes() == key
    assert store_on(db, again).get_build(build_id).secrets == SECRETS


def test_the_setting_wins_over_the_key_file(tmp_path: Path) -> None:
    key = Fernet.generate_key().decode()
    box = secret_box(key, tmp_path / "keys")
    assert not (tmp_path / "keys").exists()
    sealed = box.seal({"A": "b"})
    assert SecretBox.from_keys(key).open(sealed) == {"A": "b"}
    secret_box(None, tmp_path / "keys")
    assert (tmp_path / "keys" / KEY_FILE).exists()


def test_a_corrupt_key_file_is_one_clear_line(tmp_path: Path) -> None:
    key_dir = tmp_path / "keys"
    key_dir.mkdir()
    (key_dir / KEY_FILE).write_text("garbage\n")
    with pytest.raises(ConfigError, match=r"secrets\.key is not a Fernet key"):
        load_or_create_secret_key(key_dir)
