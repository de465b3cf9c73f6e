"""The core loop through real Redis, Celery workers and Docker containers."""

from __future__ import annotations

import io
import json
import re
import tarfile
import time
from pathlib import Path

import httpx

from tests.farmtest import BUSYBOX, Farm, job_named, make_repo, wait_for

MULTI_STAGE = f"""
image: {BUSYBOX}
stages: [build, test, package]
variables:
  GREETING: hello
build:
  stage: build
  script:
    - mkdir -p out
    - echo "$GREETING from $CI_COMMIT_SHORT_SHA" > out/app.txt
    - cat src.txt >> out/app.txt
  artifacts:
    paths: [out/]
test-a:
  stage: test
  needs: [build]
  script:
    - grep hello out/app.txt
    - test "$CI_JOB_NAME" = test-a
test-b:
  stage: test
  script:
    - grep source-line out/app.txt
package:
  stage: package
  script:
    - mkdir -p dist && cp out/app.txt dist/final.txt && echo packaged >> dist/final.txt
  artifacts:
    paths: [dist/final.txt]
"""


def test_multi_stage_pipeline_passes_with_artifacts_downstream(farm: Farm, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "app", {".farm-ci.yml": MULTI_STAGE, "src.txt": "source-line\n"})
    build = farm.submit(repo, ref="main")
    assert build["status"] in ("pending", "running")
    assert [j["name"] for j in build["jobs"]] == ["build", "test-a", "test-b", "package"]
    done = farm.wait(build["id"])
    assert done["status"] == "success", done
    for job in done["jobs"]:
        assert job["status"] == "success" and job["exit_code"] == 0
        assert job["started_at"] and job["finished_at"]
    package = job_named(done, "package")
    (art,) = package["artifacts"]
    with farm.http as h:
        # Workers moved the snapshot and the artifacts through the blob data plane.
        metrics = h.get("/metrics").text
        sent = re.search(r"^farm_blob_data_bytes_sent_total (\d+)(?:\.0)?$", metrics, re.M)
        received = re.search(r"^farm_blob_data_bytes_received_total (\d+)(?:\.0)?$", metrics, re.M)
        assert sent and int(sent[1]) > 0 and received and int(received[1]) > 0, metrics
        blob = h.get(f"/api/v1/artifacts/{art['digest']}")
        assert blob.status_code == 200
        with tarfile.open(fileobj=io.BytesIO(blob.content)) as tar:
            member = tar.extractfile("dist/final.txt")
            assert member is not None
            text = member.read().decode()
        assert text.startswith("hello from " + done["commit"][:8])
        assert "source-line" in text and "packaged" in text
        deliverable = h.get(f"/api/v1/builds/{done['id']}/deliverable")
        assert deliverable.status_code == 200
    manifest = deliverable.json()
    assert manifest["commit"] == done["commit"]
    assert deliverable.headers["Docker-Content-Digest"] == done["deliverable"]["digest"]
    assert {a["digest"] for a in manifest["artifacts"]} >= {art["digest"]}
    assert [j["name"] for j in manifest["jobs"]] == ["build", "test-a", "test-b", "package"]


FAILING = f"""
image: {BUSYBOX}
stages: [build, test, deploy, cleanup]
build:
  stage: build
  script: [echo building, "false", echo never]
test:
  stage: test
  script: [echo should not run]
deploy:
  stage: deploy
  needs: [test]
  script: [echo no]
notify:
  stage: cleanup
  when: on_failure
  script: [echo build failed]
always:
  stage: cleanup
  when: always
  script: [echo cleaning up]
"""


def test_failing_job_fails_build_skips_dependents_runs_always(farm: Farm, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "fail", {".farm-ci.yml": FAILING})
    done = farm.wait(farm.submit(repo)["id"])
    assert done["status"] == "failed"
    status = {j["name"]: j["status"] for j in done["jobs"]}
    assert status == {
        "build": "failed",
        "test": "skipped",
        "deploy": "skipped",
        "notify": "success",
        "always": "success",
    }
    build = job_named(done, "build")
    assert build["exit_code"] == 1
    log = farm.log(build["id"])
    assert (
        "echo building" in log
        and "building" in log
        and "never\n" not in log.replace("$ echo never", "")
    )
    assert done["deliverable"] is None


ALLOW = f"""
image: {BUSYBOX}
flaky:
  stage: build
  allow_failure: true
  script: [exit 3]
after:
  stage: test
  script: [echo fine]
"""


def test_allow_failure_keeps_build_green(farm: Farm, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "allow", {".gitlab-ci.yml": ALLOW})
    done = farm.wait(farm.submit(repo)["id"])
    assert done["status"] == "success"
    assert job_named(done, "flaky")["status"] == "failed"
    assert job_named(done, "flaky")["exit_code"] == 3
    assert job_named(done, "after")["status"] == "success"


TIMEOUT = f"""
image: {BUSYBOX}
slow:
  timeout: 3 seconds
  script: [echo started, sleep 60, echo unreachable]
"""


def test_job_over_its_timeout_is_killed(farm: Farm, tmp_path: Path, docker_client: object) -> None:
    repo = make_repo(tmp_path / "timeout", {".farm-ci.yml": TIMEOUT})
    started = time.monotonic()
    done = farm.wait(farm.submit(repo)["id"], timeout=60)
    assert time.monotonic() - started < 45
    slow = job_named(done, "slow")
    assert done["status"] == "failed"
    assert slow["reason"] == "timeout"
    assert "timeout" in farm.log(slow["id"])
    assert not _containers(docker_client, slow["id"])


NETWORK = f"""
image: {BUSYBOX}
net:
  script:
    - ls /sys/class/net
    - test "$(ls /sys/class/net)" = lo
    - if nc -w 2 127.0.0.1 $API_PORT </dev/null; then echo "REACH""ED"; exit 1; fi
    - echo isolated
"""


def test_job_cannot_reach_the_network(farm: Farm, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "net", {".farm-ci.yml": NETWORK})
    port = farm.url.rsplit(":", 1)[1]
    done = farm.wait(farm.submit(repo, variables={"API_PORT": port})["id"])
    job = job_named(done, "net")
    log = farm.log(job["id"])
    assert done["status"] == "success", log
    assert "\nisolated\n" in log and "\nREACHED" not in log


LIVE = f"""
image: {BUSYBOX}
talk:
  script:
    - echo first-line
    - sleep 4
    - echo second-line
"""


def test_logs_are_readable_while_the_job_runs(farm: Farm, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "live", {".farm-ci.yml": LIVE})
    build = farm.submit(repo)
    job = farm.wait_job(build["id"], "talk", {"running"})
    seen: list[str] = []

    def first_line_visible() -> bool:
        text = farm.log(job["id"])
        seen.append(text)
        return "first-line\n" in text.replace("$ echo first-line", "")

    wait_for(first_line_visible, 10, "first line in the live log")
    assert "second-line\n" not in seen[-1].replace("$ echo second-line", "")
    assert job_named(farm.build(build["id"]), "talk")["status"] == "running"
    done = farm.wait(build["id"])
    assert "second-line" in farm.log(job["id"])
    assert done["status"] == "success"


def test_two_builds_at_once_do_not_mix(farm: Farm, tmp_path: Path) -> None:
    pipeline = f"""
image: {BUSYBOX}
make:
  stage: build
  script: [mkdir out, cat id.txt > out/id.txt, sleep 1]
  artifacts: {{paths: [out/id.txt]}}
check:
  stage: test
  script: [sleep 1, cat out/id.txt, "test \\"$(cat out/id.txt)\\" = \\"$(cat id.txt)\\""]
"""
    repos = [
        make_repo(tmp_path / f"r{i}", {".farm-ci.yml": pipeline, "id.txt": f"repo-{i}\n"})
        for i in range(2)
    ]
    builds = [farm.submit(r) for r in repos]
    done = [farm.wait(b["id"]) for b in builds]
    for i, d in enumerate(done):
        assert d["status"] == "success", d
        assert f"repo-{i}" in farm.log(job_named(d, "check")["id"])


CANCEL = f"""
image: {BUSYBOX}
long:
  stage: build
  script: [echo running, sleep 120]
later:
  stage: test
  script: [echo never]
"""


def test_cancel_stops_a_running_build_and_leaves_no_container(
    farm: Farm, tmp_path: Path, docker_client: object
) -> None:
    repo = make_repo(tmp_path / "cancel", {".farm-ci.yml": CANCEL})
    build = farm.submit(repo)
    job = farm.wait_job(build["id"], "long", {"running"})
    wait_for(lambda: bool(_containers(docker_client, job["id"])), 20, "the job's container")
    result = farm.cli("cancel", str(build["id"]))
    assert result.returncode == 0, result.stderr
    done = farm.wait(build["id"], timeout=30)
    assert done["status"] == "canceled"
    assert {j["name"]: j["status"] for j in done["jobs"]} == {
        "long": "canceled",
        "later": "canceled",
    }
    wait_for(lambda: not _containers(docker_client, job["id"]), 20, "container removal")
    with farm.http as h:
        again = h.post(f"/api/v1/builds/{build['id']}/cancel")
    assert again.status_code == 409


def test_duplicated_task_message_does_not_run_a_job_twice(farm: Farm, tmp_path: Path) -> None:
    from farm.settings import Settings
    from farm.worker.app import RUN_JOB, make_celery

    pipeline = f"image: {BUSYBOX}\nonce:\n  script: [echo ran-once, sleep 2]\n"
    repo = make_repo(tmp_path / "dup", {".farm-ci.yml": pipeline})
    build = farm.submit(repo)
    job = build["jobs"][0]
    app = make_celery(Settings(broker_url=farm.env["FARM_BROKER_URL"]))
    for _ in range(3):
        app.send_task(RUN_JOB, args=(job["id"], 1), queue="farm")
    done = farm.wait(build["id"])
    time.sleep(1.5)  # let the duplicates be consumed
    once = job_named(farm.build(build["id"]), "once")
    assert done["status"] == "success" and once["attempt"] == 1
    log = farm.log(job["id"])
    assert log.count("Running on") == 1, log
    assert log.count("\nran-once") + log.startswith("ran-once") == 1


def _containers(client: object, job_id: int) -> list[object]:
    return list(
        client.containers.list(  # type: ignore[attr-defined]
            all=True, filters={"label": f"farm.job={job_id}"}
        )
    )


def test_bad_inputs_get_clear_4xx_and_leave_nothing(farm: Farm, tmp_path: Path) -> None:
    good = make_repo(
        tmp_path / "good", {".farm-ci.yml": f"image: {BUSYBOX}\nj:\n  script: ['true']\n"}
    )
    nopipe = make_repo(tmp_path / "nopipe", {"README": "x"})
    malformed = make_repo(
        tmp_path / "malformed", {".farm-ci.yml": "job:\n  script: [echo\n  stage: x\n"}
    )
    missing = make_repo(
        tmp_path / "missing", {".farm-ci.yml": "a:\n  script: ['true']\n  needs: [ghost]\n"}
    )
    cycle = make_repo(
        tmp_path / "cycle",
        {
            ".farm-ci.yml": "a:\n  script: ['true']\n  needs: [b]\n"
            "b:\n  script: ['true']\n  needs: [a]\n"
        },
    )
    with farm.http as h:
        before = len(h.get("/api/v1/builds", params={"limit": 500}).json())
        cases = [
            ({"repo": str(tmp_path / "nowhere")}, "does not exist"),
            ({"repo": str(good), "ref": "no-such-branch"}, "no-such-branch"),
            ({"repo": str(good), "commit": "deadbeef"}, "deadbeef"),
            ({"repo": str(nopipe)}, ".gitlab-ci.yml"),
            ({"repo": str(malformed)}, ".farm-ci.yml:"),
            ({"repo": str(missing)}, "ghost"),
            ({"repo": str(cycle)}, "cycle"),
            ({}, "repo"),
        ]
        for body, needle in cases:
            resp = h.post("/api/v1/builds", json=body)
            assert 400 <= resp.status_code < 500, (body, resp.text)
            detail = resp.json()["detail"]
            assert needle.lower() in json.dumps(resp.json()).lower(), (body, detail)
            assert "Traceback" not in resp.text
        after = len(h.get("/api/v1/builds", params={"limit": 500}).json())
    assert after == before
    line = farm.cli("submit", str(malformed))
    assert line.returncode != 0
    assert line.stderr.strip().count("\n") == 0 and ".farm-ci.yml:" in line.stderr


def test_missing_image_fails_the_build_with_that_reason(farm: Farm, tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "noimage",
        {".farm-ci.yml": "j:\n  image: farm/does-not-exist:1\n  script: ['true']\n"},
    )
    done = farm.wait(farm.submit(repo)["id"], timeout=120)
    job = done["jobs"][0]
    assert done["status"] == "failed"
    assert job["reason"] == "image_not_found"
    assert "farm/does-not-exist:1" in farm.log(job["id"])


def test_api_serves_openapi(farm: Farm) -> None:
    spec = httpx.get(farm.url + "/openapi.json").json()
    assert "/api/v1/builds" in spec["paths"]


def test_a_builds_snapshot_is_downloaded_once_per_work_dir(farm: Farm, tmp_path: Path) -> None:
    """The session's workers share one work dir: the first job downloads the source
    snapshot, the later ones unpack the cached copy (issue 11), each into its own tree."""
    stages = ["one", "two", "three"]
    body = [f"image: {BUSYBOX}", f"stages: [{', '.join(stages)}]"]
    for stage in stages:
        body.append(
            f"{stage}:\n  stage: {stage}\n  script:\n    - grep source-line src.txt\n"
            # a job's tree is its own: what an earlier job wrote is not in the next one's
            f"    - '! grep -q changed src.txt'\n    - echo changed >> src.txt"
        )
    repo = make_repo(
        tmp_path / "snap", {".farm-ci.yml": "\n".join(body), "src.txt": "source-line\n"}
    )
    build = farm.wait(farm.submit(repo, no_cache=True)["id"])
    assert build["status"] == "success", build
    said = ["from this worker's cache" in farm.log(job_named(build, s)["id"]) for s in stages]
    assert said == [False, True, True]
