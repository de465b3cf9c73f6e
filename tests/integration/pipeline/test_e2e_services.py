"""services: a sidecar shares the job's network namespace and answers on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

from tests.farmtest import BUSYBOX, Farm, job_named, make_repo

PIPELINE = f"""
image: {BUSYBOX}
web:
  services:
    - name: {BUSYBOX}
      command:
        - sh
        - -c
        - mkdir -p /srv && echo hello-from-service > /srv/index.html && httpd -f -p 8080 -h /srv
  script:
    - for i in $(seq 1 50); do wget -q -O page.html http://127.0.0.1:8080/ && break; sleep 0.1; done
    - grep hello-from-service page.html
"""


def test_service_sidecar_is_reachable_on_loopback(farm: Farm, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "svc", {".farm-ci.yml": PIPELINE})
    done = farm.wait(farm.submit(repo, ref="main")["id"], timeout=90)
    job = job_named(done, "web")
    assert done["status"] == "success", farm.log(job["id"])
