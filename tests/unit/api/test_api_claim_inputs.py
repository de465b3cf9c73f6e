"""The claim reads only the jobs its assignment needs (issue 10): the inputs it hands out
are still every upstream artifact — by stage order, by ``needs`` and by ``dependencies``."""

from __future__ import annotations

from pathlib import Path

from tests.farmtest import make_repo
from tests.unit.api.conftest import Submit, WorkerWire, job_id

PIPELINE = """
stages: [build, test, ship]
a:
  stage: build
  script: [make a]
b:
  stage: build
  script: [make b]
c:
  stage: build
  script: [make c]
by-stage:
  stage: test
  script: [test]
by-needs:
  stage: test
  needs: [a, {job: b, artifacts: false}]
  script: [test]
by-deps:
  stage: test
  dependencies: [c]
  script: [test]
no-needs:
  stage: test
  needs: []
  script: [test]
later:
  stage: ship
  script: [ship]
"""


def test_claim_inputs_follow_stages_needs_and_dependencies(
    tmp_path: Path, submit: Submit, worker: WorkerWire
) -> None:
    build = submit(make_repo(tmp_path / "inputs", {".farm-ci.yml": PIPELINE}))
    digests = {}
    for name in ("a", "b", "c"):
        art = worker.artifact(name, f"{name} bytes\n".encode(), files=[f"out/{name}"])
        digests[name] = art["digest"]
        assert worker.run(job_id(build, name), artifacts=[art])["status"] == "success"

    def inputs(name: str) -> dict[str, str]:
        resp = worker.claim(job_id(build, name))
        assert resp.status_code == 200, resp.text
        return {i["job"]: i["digest"] for i in resp.json()["inputs"]}

    assert inputs("by-stage") == digests  # every earlier-stage job, none of its own stage
    assert inputs("by-needs") == {"a": digests["a"]}  # b's artifacts: false
    assert inputs("by-deps") == {"c": digests["c"]}
    assert inputs("no-needs") == {}
