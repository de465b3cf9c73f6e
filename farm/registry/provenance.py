"""SLSA provenance for green builds: an in-toto Statement signed as a DSSE envelope.

The statement (``https://in-toto.io/Statement/v1``) names every artifact of the build
and its deliverable manifest as *subjects* by sha256, and carries a SLSA v1 provenance
predicate: what was built (repo, ref, commit, pipeline file and digest), from which
source snapshot, by which builder, when, and which jobs ran where.  It is signed with
the farm's ed25519 key over DSSE's pre-authentication encoding (PAE), so anyone with
the public key can check it offline: first the signature, then that every subject's
digest matches the bytes they downloaded.

Everything here is pure except the key file helpers at the end.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from farm import __version__
from farm.domain.records import BuildRecord
from farm.domain.statuses import ArtifactKind
from farm.errors import SignatureError
from farm.keyfile import create_once

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
BUILD_TYPE = "urn:farm:build-type:pipeline:v1"
DELIVERABLE_SUBJECT = "deliverable.json"
KEY_FILE = "provenance.key"
PUB_FILE = "provenance.pub"


def _digest_set(digest: str) -> dict[str, str]:
    """``sha256:<hex>`` → in-toto's DigestSet ``{"sha256": "<hex>"}``."""
    algo, _, value = digest.partition(":")
    return {algo: value} if value else {}


def _ts(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def canonical(data: Any) -> bytes:
    """Canonical JSON bytes (sorted keys, no spaces): the same statement, the same bytes."""
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def build_statement(build: BuildRecord, builder_id: str) -> dict[str, Any]:
    """The in-toto Statement v1 with a SLSA v1 predicate for a finished green build."""
    subjects: dict[str, dict[str, Any]] = {}
    byproducts: list[dict[str, Any]] = []
    for job in build.jobs:
        for art in job.artifacts:
            if art.kind == ArtifactKind.PROVENANCE:  # a statement never names itself
                continue
            name = f"{job.name}/{art.name}"
            subjects[name] = {"name": name, "digest": _digest_set(art.digest)}
        byproducts.append(
            {
                "name": f"job:{job.name}",
                "annotations": {
                    "stage": job.stage,
                    "status": job.status,
                    "image": job.spec.image,
                    "worker": job.worker,
                    "attempt": job.attempt,
                    "exitCode": job.exit_code,
                    "startedOn": _ts(job.started_at),
                    "finishedOn": _ts(job.finished_at),
                },
            }
        )
    if build.deliverable_digest:
        subjects[DELIVERABLE_SUBJECT] = {
            "name": DELIVERABLE_SUBJECT,
            "digest": _digest_set(build.deliverable_digest),
        }
    return {
        "_type": STATEMENT_TYPE,
        "subject": [subjects[name] for name in sorted(subjects)],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "repo": build.repo,
                    "ref": build.ref,
                    "commit": build.commit,
                    "pipeline": {
                        "file": build.pipeline_file,
                        "digest": _digest_set(build.pipeline_digest),
                    },
                    # Plain variables only: masked ones are secrets and never leave the farm.
                    "variables": dict(sorted(build.variables.items())),
                },
                "internalParameters": {"project": build.project},
                "resolvedDependencies": [
                    {
                        "name": "source-snapshot",
                        "uri": f"git+{build.repo}@{build.commit}",
                        "digest": {
                            **_digest_set(build.snapshot_digest),
                            "gitCommit": build.commit,
                        },
                    }
                ],
            },
            "runDetails": {
                "builder": {"id": builder_id, "version": {"farm": __version__}},
                "metadata": {
                    "invocationId": str(build.id),
                    "startedOn": _ts(build.started_at or build.created_at),
                    "finishedOn": _ts(build.finished_at),
                },
                "byproducts": byproducts,
            },
        },
    }


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what is actually signed."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def key_id(public_key: Ed25519PublicKey) -> str:
    """A stable id of a public key: sha256 of its raw 32 bytes, hex."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def sign_statement(statement: Mapping[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """A DSSE envelope of ``statement`` signed by ``key``."""
    payload = canonical(statement)
    signature = key.sign(pae(PAYLOAD_TYPE, payload))
    return {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [
            {"keyid": key_id(key.public_key()), "sig": base64.b64encode(signature).decode()}
        ],
    }


def verify_envelope(envelope: Mapping[str, Any], public_key: Ed25519PublicKey) -> dict[str, Any]:
    """The statement inside ``envelope`` once a signature by ``public_key`` checks out.

    Raises SignatureError naming what is wrong: the envelope's shape, its payload type,
    no signature by this key, or a payload that is not an in-toto SLSA statement.
    """
    if envelope.get("payloadType") != PAYLOAD_TYPE:
        raise SignatureError(f"payloadType is {envelope.get('payloadType')!r}, not {PAYLOAD_TYPE}")
    try:
        payload = base64.b64decode(str(envelope["payload"]), validate=True)
        signatures = [
            (str(s.get("keyid", "")), base64.b64decode(str(s["sig"]), validate=True))
            for s in envelope["signatures"]
        ]
    except (KeyError, TypeError, AttributeError, binascii.Error) as exc:
        raise SignatureError(f"malformed DSSE envelope: {exc}") from None
    wanted = key_id(public_key)
    message = pae(PAYLOAD_TYPE, payload)
    for keyid, sig in signatures:
        if keyid and keyid != wanted:
            continue
        try:
            public_key.verify(sig, message)
        except InvalidSignature:
            continue
        break
    else:
        raise SignatureError(f"no valid signature by key {wanted[:16]}… on this statement")
    try:
        statement: dict[str, Any] = json.loads(payload)
    except ValueError as exc:
        raise SignatureError(f"signed payload is not JSON: {exc}") from None
    if statement.get("_type") != STATEMENT_TYPE or statement.get("predicateType") != PREDICATE_TYPE:
        raise SignatureError("signed payload is not an in-toto v1 SLSA provenance statement")
    return statement


def subject_digests(statement: Mapping[str, Any]) -> dict[str, str]:
    """Subject name → ``sha256:<hex>`` (subjects without sha256 are refused)."""
    out: dict[str, str] = {}
    for subject in statement.get("subject", []):
        hexdigest = subject.get("digest", {}).get("sha256")
        if not hexdigest:
            raise SignatureError(f"subject {subject.get('name')!r} has no sha256 digest")
        out[str(subject["name"])] = f"sha256:{hexdigest}"
    return out


def mismatched_subjects(statement: Mapping[str, Any], actual: Mapping[str, str]) -> list[str]:
    """Subjects whose downloaded bytes (``actual``: name → digest) differ or are missing."""
    return [
        f"{name}: expected {want}, got {actual.get(name, 'nothing')}"
        for name, want in subject_digests(statement).items()
        if actual.get(name) != want
    ]


# --- keys (the only I/O in this module) ----------------------------------------------


def public_pem(public_key: Ed25519PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM, as served at ``/api/v1/keys/provenance.pub``."""
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    """An ed25519 public key from PEM; SignatureError for anything else."""
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise SignatureError(f"not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureError("provenance keys are ed25519; this PEM holds another kind")
    return key


def load_or_create_key(key_dir: Path) -> Ed25519PrivateKey:
    """The farm's signing key in ``key_dir``, generated on first start (private: 0600).

    Creation is atomic: the key is written to a private temp file and hard-linked into
    place, so two API processes starting together end up using the same key.
    """
    key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = key_dir / KEY_FILE
    if not path.exists():
        fresh = Ed25519PrivateKey.generate()
        pem = fresh.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        create_once(path, pem)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(f"{path} is not an ed25519 private key")
    pub = key_dir / PUB_FILE
    data = public_pem(key.public_key())
    if not pub.exists() or pub.read_bytes() != data:
        pub.write_bytes(data)
    return key
