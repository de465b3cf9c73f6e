"""Secrets reach the job that claims them and nowhere else: not the API's documents,
the deliverable, the provenance, the Celery message or the database in plain text."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from fastapi import FastAPI
from fastapi.testclient import TestClient

from farm.api.app import create_app
from farm.db.secrets import KEY_FILE
from farm.domain.records import BuildRecord
from farm.errors import ConfigError
from farm.worker.app import RUN_JOB, CeleryDispatcher
from tests.unit.api.conftest import RecordingCelery, Submit, WorkerWire, farm_settings, job_id

VALUE = "s3cr3t-t0ken-value"
SECRETS = {"DEPLOY_TOKEN": VALUE}


def test_secrets_reach_the_claim_and_nothing_else(
    client: TestClient, worker: WorkerWire, submit: Submit, tmp_path: Path
) -> None:
    build = submit(secrets=SECRETS)
    assert VALUE not in str(build)
    compile_id = job_id(build, "compile")
    claim = worker.claim(compile_id).json()
    assert claim["variables"]["DEPLOY_TOKEN"] == VALUE  # the job gets it as env
    assert VALUE in claim["masks"]  # and the worker masks it
    worker.finish(compile_id, 1, 0)
    worker.run(job_id(build, "unit"), log="testing\n")
    bid = build["id"]
    texts: dict[str, str] = {}
    for path in (
        f"/api/v1/builds/{bid}",
        "/api/v1/builds?limit=10",
        f"/api/v1/jobs/{compile_id}",
        f"/api/v1/builds/{bid}/deliverable",
        f"/api/v1/builds/{bid}/provenance",
    ):
        resp = client.get(path)
        assert resp.status_code == 200, (path, resp.text)
        texts[path] = resp.text
    assert client.get(f"/api/v1/builds/{bid}").json()["status"] == "success"
    for path, text in texts.items():
        assert VALUE not in text, path
    # At rest: the row holds a Fernet token, never the value.
    with sqlite3.connect(tmp_path / "farm" / "farm.db") as conn:
        row = conn.execute("SELECT * FROM builds WHERE id = ?", (bid,)).fetchone()
    assert VALUE not in " ".join(map(str, row))
    key = tmp_path / "farm" / "keys" / KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_a_restart_with_another_key_stops_with_one_line(
    client: TestClient, submit: Submit, tmp_path: Path
) -> None:
    submit(secrets=SECRETS)
    other = Fernet.generate_key().decode()
    with pytest.raises(ConfigError) as err:
        create_app(farm_settings(tmp_path / "farm", secret_key=other))
    assert "cannot be decrypted" in str(err.value) and "\n" not in str(err.value)


def test_the_farm_secret_key_setting_is_used(tmp_path: Path) -> None:
    key = Fernet.generate_key().decode()
    app = create_app(farm_settings(tmp_path / "farm", secret_key=key))
    assert app is not None
    assert not (tmp_path / "farm" / "keys" / KEY_FILE).exists()


def test_the_celery_message_carries_job_id_and_attempt_only(
    client: TestClient, submit: Submit, app: FastAPI
) -> None:
    build = submit(secrets=SECRETS)
    record: BuildRecord = app.state.store.get_build(build["id"])
    job = record.jobs[0]
    assert record.secrets == SECRETS  # the record the dispatcher gets does hold them
    fake = RecordingCelery()
    CeleryDispatcher(fake).dispatch(job, record)
    ((name, kwargs),) = fake.sent
    assert name == RUN_JOB
    assert kwargs["args"] == (job.id, job.attempt)
    assert VALUE not in repr(kwargs)  # args, shadow name (Flower), queue
