"""Provenance: statement shape, DSSE PAE and signatures, subject checks, key files."""

from __future__ import annotations

import base64
import json
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from farm.domain.records import ArtifactRecord, BuildRecord, JobRecord
from farm.domain.specs import JobSpec
from farm.errors import SignatureError
from farm.registry import provenance as p

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
HEX = {c: c * 64 for c in "abcdef"}


def art(name: str, hexchar: str, kind: str = "archive") -> ArtifactRecord:
    return ArtifactRecord(1, 7, 3, name, kind, f"sha256:{HEX[hexchar]}", 10, T0)


def green_build() -> BuildRecord:
    spec = JobSpec.from_dict({"name": "package", "stage": "build", "image": "farm/busybox:latest"})
    job = JobRecord(
        id=3,
        build_id=7,
        name="package",
        stage="build",
        position=0,
        spec=spec,
        status="success",
        attempt=1,
        queue="farm",
        exit_code=0,
        worker="w1@host",
        started_at=T0,
        finished_at=T0,
        artifacts=(art("artifacts", "a"), art("build.env", "b", "dotenv")),
    )
    return BuildRecord(
        id=7,
        project="demo",
        repo="/srv/git/demo",
        ref="main",
        commit="c" * 40,
        status="success",
        created_at=T0,
        pipeline_file=".farm-ci.yml",
        pipeline_digest=f"sha256:{HEX['d']}",
        snapshot_digest=f"sha256:{HEX['e']}",
        stages=("build",),
        variables={"MODE": "release"},
        started_at=T0,
        finished_at=T0,
        deliverable_digest=f"sha256:{HEX['f']}",
        secrets={"TOKEN": "s3cret"},
        jobs=(job,),
    )


def test_statement_has_subjects_and_slsa_predicate() -> None:
    st = p.build_statement(green_build(), "https://farm.test/builder")
    assert st["_type"] == "https://in-toto.io/Statement/v1"
    assert st["predicateType"] == "https://slsa.dev/provenance/v1"
    assert st["subject"] == [
        {"name": "deliverable.json", "digest": {"sha256": HEX["f"]}},
        {"name": "package/artifacts", "digest": {"sha256": HEX["a"]}},
        {"name": "package/build.env", "digest": {"sha256": HEX["b"]}},
    ]
    bd = st["predicate"]["buildDefinition"]
    assert bd["buildType"].startswith("urn:farm:")
    ext = bd["externalParameters"]
    assert (ext["repo"], ext["ref"], ext["commit"]) == ("/srv/git/demo", "main", "c" * 40)
    assert ext["pipeline"] == {"file": ".farm-ci.yml", "digest": {"sha256": HEX["d"]}}
    assert bd["resolvedDependencies"][0]["digest"]["sha256"] == HEX["e"]
    run = st["predicate"]["runDetails"]
    assert run["builder"]["id"] == "https://farm.test/builder"
    assert run["metadata"] == {
        "invocationId": "7",
        "startedOn": "2026-01-02T03:04:05Z",
        "finishedOn": "2026-01-02T03:04:05Z",
    }
    (job,) = run["byproducts"]
    assert job["annotations"]["worker"] == "w1@host"
    assert job["annotations"]["image"] == "farm/busybox:latest"
    assert "s3cret" not in json.dumps(st)  # masked variables never leave the farm


def test_pae_matches_the_dsse_spec_example() -> None:
    # DSSE protocol.md: PAE("http://example.com/HelloWorld", "hello world")
    assert p.pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_sign_and_verify_round_trip() -> None:
    key = Ed25519PrivateKey.generate()
    st = p.build_statement(green_build(), "b")
    env = p.sign_statement(st, key)
    assert env["payloadType"] == "application/vnd.in-toto+json"
    assert json.loads(base64.b64decode(env["payload"])) == st
    assert env["signatures"][0]["keyid"] == p.key_id(key.public_key())
    assert p.verify_envelope(env, key.public_key()) == st


def test_tampered_payload_wrong_key_and_garbage_are_refused() -> None:
    key = Ed25519PrivateKey.generate()
    st = p.build_statement(green_build(), "b")
    env = p.sign_statement(st, key)
    st["subject"][0]["digest"]["sha256"] = "0" * 64
    forged = {**env, "payload": base64.b64encode(p.canonical(st)).decode()}
    with pytest.raises(SignatureError, match="no valid signature"):
        p.verify_envelope(forged, key.public_key())
    with pytest.raises(SignatureError, match="no valid signature"):
        p.verify_envelope(env, Ed25519PrivateKey.generate().public_key())
    with pytest.raises(SignatureError, match="payloadType"):
        p.verify_envelope({**env, "payloadType": "text/plain"}, key.public_key())
    with pytest.raises(SignatureError, match="malformed"):
        p.verify_envelope({**env, "payload": "%%%"}, key.public_key())
    not_slsa = p.sign_statement({"_type": "x"}, key)
    with pytest.raises(SignatureError, match="not an in-toto"):
        p.verify_envelope(not_slsa, key.public_key())


def test_subject_checks() -> None:
    st = p.build_statement(green_build(), "b")
    digests = p.subject_digests(st)
    assert digests["deliverable.json"] == f"sha256:{HEX['f']}"
    assert p.mismatched_subjects(st, digests) == []
    bad = {**digests, "package/artifacts": f"sha256:{HEX['b']}"}
    (problem,) = p.mismatched_subjects(st, bad)
    assert problem.startswith("package/artifacts: expected")
    missing = dict(digests)
    del missing["deliverable.json"]
    assert "got nothing" in p.mismatched_subjects(st, missing)[0]


def test_key_is_created_once_private_and_reloaded(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    key = p.load_or_create_key(keys)
    assert stat.S_IMODE((keys / p.KEY_FILE).stat().st_mode) == 0o600
    again = p.load_or_create_key(keys)
    assert p.key_id(again.public_key()) == p.key_id(key.public_key())
    pub = p.load_public_key((keys / p.PUB_FILE).read_bytes())
    assert p.key_id(pub) == p.key_id(key.public_key())
    with pytest.raises(SignatureError):
        p.load_public_key(b"not a pem")
