"""The worker <-> coordinator messages: round trips, the exact wire keys, bounds, protocol."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from farm.domain.messages import (
    MAX_FINISH_LOG,
    MAX_LOG_CHUNK,
    MAX_MESSAGE,
    PROTOCOL_VERSION,
    ArtifactReport,
    ArtifactRules,
    Assignment,
    CacheEntry,
    ClaimRequest,
    FinishReply,
    FinishReport,
    InputArtifact,
    Limits,
    LiveReply,
    LiveRequest,
    LogReply,
    LogRequest,
    ServiceEntry,
    check_protocol,
)
from farm.domain.specs import ArtifactSpec, CacheSpec, ServiceSpec
from farm.domain.statuses import FailureReason, JobStatus
from farm.errors import FarmError, ProtocolMismatch

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "0" * 64


def wire(message: BaseModel) -> dict[str, Any]:
    """What goes over HTTP: the JSON text a peer reads."""
    data: dict[str, Any] = json.loads(message.model_dump_json())
    return data


def assignment(**over: Any) -> Assignment:
    fields: dict[str, Any] = {
        "job_id": 7,
        "attempt": 2,
        "build_id": 3,
        "name": "test: [py3]",
        "stage": "test",
        "project": "demo",
        "project_dir": "/builds/demo",
        "image": "farm/debian:bookworm",
        "image_entrypoint": [""],
        "before_script": ["echo before"],
        "script": ["make test"],
        "after_script": [],
        "variables": {"CI": "true", "TOKEN": "s3cret-value"},
        "snapshot_digest": DIGEST,
        "inputs": [
            InputArtifact(job="build", name="build", kind="archive", digest=OTHER, size=10),
            InputArtifact(job="build", name="build.env", kind="dotenv", digest=DIGEST, size=0),
        ],
        "timeout": 600,
        "artifacts": ArtifactRules(paths=["dist/"], expire_in=3600, dotenv=["build.env"]),
        "cache": [CacheEntry(key_files=["lock.txt"], key_prefix="deps", paths=[".cache"])],
        "services": [ServiceEntry(name="redis:7", alias=["cache"], command=["--save", ""])],
        "coverage": r"/TOTAL.*\s(\d+)%/",
        "masks": ["s3cret-value"],
        "limits": Limits(memory=2 * 1024**3, cpus=1.5, pids=512),
    }
    fields.update(over)
    return Assignment(**fields)


def finish_report(**over: Any) -> FinishReport:
    fields: dict[str, Any] = {
        "attempt": 1,
        "exit_code": 0,
        "reason": None,
        "message": "",
        "artifacts": [
            ArtifactReport(
                name="build", digest=DIGEST, size=12, expire_in=60, files=["dist/a", "dist/b"]
            ),
            ArtifactReport(name="build.env", kind="dotenv", digest=OTHER, size=3),
        ],
        "coverage": 87.5,
    }
    fields.update(over)
    return FinishReport(**fields)


# --- round trips ----------------------------------------------------------------------

MESSAGES: list[BaseModel] = [
    ClaimRequest(attempt=1, worker="w1@host"),
    assignment(),
    assignment(artifacts=None, image_entrypoint=None, coverage=None, inputs=[], cache=[]),
    LogRequest(attempt=3, data="line 1\nünïcode \x1b[31mred\x1b[0m\n"),
    LogReply(continue_=False, accepted=True),
    finish_report(),
    finish_report(exit_code=None, reason=FailureReason.TIMEOUT, artifacts=[], coverage=None),
    FinishReply(status=JobStatus.SUCCESS, attempt=1),
    LiveRequest(attempts=[(1, 1), (2, 3)]),
    LiveReply(live=[True, False]),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_survives_json_and_back(message: BaseModel) -> None:
    model = type(message)
    assert model.model_validate_json(message.model_dump_json()) == message
    # What the worker and the API actually do: a dict through the HTTP client's JSON.
    assert model.model_validate(json.loads(json.dumps(message.model_dump(mode="json")))) == message


# --- the wire is today's (plus protocol) ----------------------------------------------

ASSIGNMENT_KEYS = {
    "job_id",
    "attempt",
    "build_id",
    "name",
    "stage",
    "project",
    "project_dir",
    "image",
    "image_entrypoint",
    "before_script",
    "script",
    "after_script",
    "variables",
    "snapshot_digest",
    "inputs",
    "timeout",
    "artifacts",
    "cache",
    "services",
    "coverage",
    "masks",
    "limits",
}


def test_wire_keys_are_the_old_ones_plus_protocol_and_offset() -> None:
    claim = wire(ClaimRequest(attempt=1, worker="w"))
    assert claim == {"protocol": PROTOCOL_VERSION, "attempt": 1, "worker": "w"}
    # offset (bytes of output sent before this chunk) was added in protocol 1 as an
    # optional field: an older API ignores it, an older worker leaves it out.
    # job_token (protocol 2): the claim's answer, sent back with every log and finish.
    assert set(wire(LogRequest(attempt=1))) == {
        "protocol",
        "attempt",
        "job_token",
        "data",
        "offset",
    }
    assert wire(LogReply(continue_=True, accepted=False)) == {"continue": True, "accepted": False}
    report = wire(finish_report())
    assert set(report) == {
        "protocol",
        "attempt",
        "job_token",
        "exit_code",
        "reason",
        "message",
        "artifacts",
        "coverage",
        "timeline",  # issue 11: optional, the worker's marks of the attempt
        "tests",  # issue 15: optional, artifacts: reports: junit totals
        "log",  # protocol 3: optional, the output not sent yet
    }
    assert set(report["artifacts"][0]) == {"name", "kind", "digest", "size", "expire_in", "files"}
    assert wire(FinishReply(status=JobStatus.FAILED, attempt=2)) == {
        "status": "failed",
        "attempt": 2,
    }
    assert wire(LiveRequest(attempts=[(4, 1)])) == {
        "protocol": PROTOCOL_VERSION,
        "attempts": [[4, 1]],
    }
    assert wire(LiveReply(live=[True])) == {"live": [True]}

    data = wire(assignment())
    # Added since: the claim's job token (protocol 2) and the image's long-form options.
    assert set(data) == ASSIGNMENT_KEYS | {
        "protocol",
        "job_token",
        "image_docker",
        "image_pull_policy",
    }
    assert set(data["inputs"][0]) == {"job", "name", "kind", "digest", "size"}
    assert data["limits"] == {"memory": 2 * 1024**3, "cpus": 1.5, "pids": 512}


def test_spec_parts_serialise_as_job_spec_to_dict_did() -> None:
    """artifacts/cache/services on the wire are exactly ``JobSpec.to_dict()``'s parts."""
    art = ArtifactSpec(
        paths=("a", "b/**"), exclude=("*.o",), untracked=True, when="always", expire_in=60
    )
    cache = CacheSpec(key="k", key_files=("x",), key_prefix="p", paths=("c",), policy="pull")
    svc = ServiceSpec(name="pg", alias=("db",), entrypoint=("x",), variables={"A": "1"})
    bare = ServiceSpec(name="redis")

    def legacy(value: Any) -> Any:  # what the old dict-based assignment sent
        return json.loads(json.dumps(dataclasses.asdict(value)))

    assert wire(ArtifactRules.of(art)) == legacy(art)
    assert wire(ArtifactRules.of(ArtifactSpec())) == legacy(ArtifactSpec())
    assert wire(CacheEntry.of(cache)) == legacy(cache)
    assert wire(ServiceEntry.of(svc)) == legacy(svc)
    assert wire(ServiceEntry.of(bare)) == legacy(bare)
    assert ServiceEntry.of(svc).to_spec() == svc
    assert ServiceEntry.of(bare).to_spec() == bare


def test_bodies_of_older_peers_still_parse() -> None:
    """Bodies without the newer optional keys parse (the protocol check refuses them)."""
    old_claim = ClaimRequest.model_validate({"attempt": 1, "worker": "w"})
    assert old_claim.attempt == 1
    old_finish = FinishReport.model_validate(
        {
            "attempt": 1,
            "exit_code": 0,
            "reason": None,
            "message": "",
            "coverage": None,
            "artifacts": [  # a dotenv report had no "files"
                {"name": "x.env", "kind": "dotenv", "digest": DIGEST, "size": 1, "expire_in": None}
            ],
        }
    )
    assert old_finish.artifacts[0].files == []
    assert LogReply.model_validate({"continue": True, "accepted": True}).continue_ is True


# --- bad input ------------------------------------------------------------------------


def art(**over: Any) -> dict[str, Any]:
    """A finish report with one artifact, changed by ``over``."""
    return {"attempt": 1, "artifacts": [{"name": "a", "digest": DIGEST, "size": 1, **over}]}


BAD: list[tuple[type[BaseModel], dict[str, Any]]] = [
    (ClaimRequest, {"attempt": 0, "worker": "w"}),
    (ClaimRequest, {"attempt": -1, "worker": "w"}),
    (ClaimRequest, {"attempt": 1, "worker": ""}),
    (ClaimRequest, {"attempt": 1, "worker": "w" * 256}),
    (ClaimRequest, {"attempt": 1, "worker": "w", "protocol": 0}),
    (ClaimRequest, {"attempt": 2**40, "worker": "w"}),
    (LogRequest, {"attempt": 1, "data": "x" * (MAX_LOG_CHUNK + 1)}),
    (FinishReport, {"attempt": 1, "message": "m" * (MAX_MESSAGE + 1)}),
    (FinishReport, {"attempt": 1, "reason": "bored"}),
    (FinishReport, {"attempt": 1, "coverage": -1}),
    (FinishReport, {"attempt": 1, "coverage": "nan"}),
    (FinishReport, art(size=-1)),
    (FinishReport, art(digest="md5:00")),
    (FinishReport, art(digest=DIGEST.upper())),
    (FinishReport, art(digest=DIGEST + "0")),
    (FinishReport, art(name="n" * 256)),
    (FinishReport, art(name="")),
    (FinishReport, art(kind="deliverable")),
    (FinishReport, art(files=["f" * 5000])),
    (FinishReport, art(expire_in=-5)),
    (LiveRequest, {"attempts": [[0, 1]]}),
    (LiveRequest, {"attempts": [[1, 2, 3]]}),
    (LiveRequest, {"attempts": [[1, 1]] * 10_001}),
]


@pytest.mark.parametrize(
    ("model", "body"), BAD, ids=[f"{m.__name__}-{i}" for i, (m, _) in enumerate(BAD)]
)
def test_bad_requests_are_refused(model: type[BaseModel], body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        model.model_validate(body)


def test_bad_assignments_are_refused() -> None:
    good = wire(assignment())
    for change in (
        {"snapshot_digest": "sha256:xyz"},
        {"job_id": 0},
        {"timeout": 0},
        {"limits": {"memory": 0, "cpus": 1, "pids": 1}},
        {"limits": {"memory": 1, "cpus": 0, "pids": 1}},
        {"inputs": [{"job": "b", "name": "b", "kind": "archive", "digest": DIGEST, "size": -1}]},
        {"inputs": [{"job": "b", "name": "b", "kind": "provenance", "digest": DIGEST, "size": 1}]},
        {"cache": [{"policy": "sometimes"}]},
        {"artifacts": {"when": "never"}},
    ):
        with pytest.raises(ValidationError):
            Assignment.model_validate({**good, **change})


def test_messages_are_values() -> None:
    message = ClaimRequest(attempt=1, worker="w")
    with pytest.raises(ValidationError):
        message.attempt = 2  # type: ignore[misc]
    # Unknown keys (a newer peer's optional extras) are ignored, not refused.
    assert ClaimRequest.model_validate({"attempt": 1, "worker": "w", "extra": 1}) == message


# --- protocol -------------------------------------------------------------------------


def test_same_protocol_passes() -> None:
    check_protocol(PROTOCOL_VERSION)
    check_protocol(ClaimRequest(attempt=1, worker="w").protocol)


def test_newer_worker_is_refused_with_one_line_naming_what_to_upgrade() -> None:
    body = ClaimRequest.model_validate({"attempt": 1, "worker": "w", "protocol": 4})
    with pytest.raises(ProtocolMismatch) as err:
        check_protocol(body.protocol)
    assert str(err.value).startswith("worker speaks protocol 4, this API speaks 3: upgrade the API")
    assert "\n" not in str(err.value)
    assert isinstance(err.value, FarmError) and err.value.http_status == 426


def test_older_peer_is_told_to_upgrade_itself() -> None:
    with pytest.raises(ProtocolMismatch, match=r"^worker speaks protocol 0, .*upgrade the worker"):
        check_protocol(0)
    with pytest.raises(ProtocolMismatch, match=r"^worker speaks protocol 1, .*upgrade the worker"):
        check_protocol(1)  # a protocol-1 worker has no job tokens: refused, not misread
    with pytest.raises(ProtocolMismatch, match=r"^worker speaks protocol 2, .*upgrade the worker"):
        check_protocol(2)  # a protocol-2 worker's finish may not carry the log's tail
    with pytest.raises(ProtocolMismatch, match=r"^API speaks protocol 4, this worker speaks 3: "):
        check_protocol(4, sender="API", receiver="worker")


def test_a_finish_report_carries_a_bounded_log_tail_that_starts_at_a_real_offset() -> None:
    """From the network: a tail over MAX_FINISH_LOG or with a negative offset is refused."""
    ok = {"attempt": 1, "log": {"data": "x" * MAX_FINISH_LOG, "offset": 0}}
    report = FinishReport.model_validate(ok)
    assert report.log is not None and len(report.log.data) == MAX_FINISH_LOG
    with pytest.raises(ValidationError):
        FinishReport.model_validate({"attempt": 1, "log": {"data": "x" * (MAX_FINISH_LOG + 1)}})
    with pytest.raises(ValidationError):
        FinishReport.model_validate({"attempt": 1, "log": {"data": "x", "offset": -1}})
