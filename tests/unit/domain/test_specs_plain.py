"""A job spec's stored form: what ``dataclasses.asdict`` gave, without its deep copies."""

from __future__ import annotations

import dataclasses
import json

from farm.domain.specs import (
    ArtifactSpec,
    CacheSpec,
    DockerOptions,
    EnvironmentSpec,
    JobSpec,
    Need,
    RetrySpec,
    ServiceSpec,
)


def test_the_stored_form_is_asdicts_json_and_reads_back_the_same_spec() -> None:
    spec = JobSpec(
        name="test: [3.11]",
        stage="test",
        script=("make", "make check"),
        needs=(Need("build", artifacts=False),),
        retry=RetrySpec(max=2, when=("script_failure",), exit_codes=(137,)),
        environment=EnvironmentSpec(name="review/x"),
        artifacts=ArtifactSpec(paths=("out/",), junit=("report.xml",)),
        cache=(CacheSpec(key="k", paths=("vendor/",)),),
        services=(ServiceSpec(name="postgres:16"),),
        matrix={"PY": "3.11"},
        image_docker=DockerOptions(user="1000"),
        variables={"A": "1"},
    )
    plain = spec.to_dict()
    assert json.dumps(plain, sort_keys=True) == json.dumps(dataclasses.asdict(spec), sort_keys=True)
    assert JobSpec.from_dict(json.loads(json.dumps(plain))) == spec
    assert plain["matrix"] is not spec.matrix  # the stored form shares no dict with the spec
