"""cache with key:files: a second build restores what the first saved; a new key misses."""

from __future__ import annotations

import re
from pathlib import Path

from tests.farmtest import BUSYBOX, Farm, commit_files, job_named, make_repo

PIPELINE = f"""
image: {BUSYBOX}
deps:
  cache:
    - key:
        files: [lock.txt]
        prefix: deps
      paths: [.deps/]
    - key: readonly-$CI_COMMIT_REF_SLUG
      policy: pull
      paths: [ro/]
  script:
    - if [ -f .deps/marker ]; then echo "CACHE HIT $(cat .deps/marker)"; else echo "CACHE MISS"; fi
    - mkdir -p .deps ro && echo "build-$CI_PIPELINE_ID" > .deps/marker && echo x > ro/x
"""


def _saved_key(log: str) -> str:
    match = re.search(r"Saved cache '([^']+)'", log)
    assert match, log
    return match.group(1)


def test_cache_is_restored_by_the_next_build_and_keyed_by_file_content(
    farm: Farm, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "cache", {".farm-ci.yml": PIPELINE, "lock.txt": "v1\n"})
    first = farm.wait(farm.submit(repo, ref="main")["id"], timeout=90)
    assert first["status"] == "success", first["jobs"]
    log1 = farm.log(job_named(first, "deps")["id"])
    assert "CACHE MISS" in log1
    key1 = _saved_key(log1)
    assert key1.startswith("deps-") and len(key1) == len("deps-") + 40
    # policy: pull never saves.
    assert "readonly-main" not in re.findall(r"Saved cache '([^']+)'", log1)

    commit_files(repo, {"README": "unrelated change"})
    second = farm.wait(farm.submit(repo, ref="main")["id"], timeout=90)
    log2 = farm.log(job_named(second, "deps")["id"])
    assert f"CACHE HIT build-{first['id']}" in log2, log2
    assert _saved_key(log2) == key1  # job- and commit-independent

    commit_files(repo, {"lock.txt": "v2\n"})
    third = farm.wait(farm.submit(repo, ref="main")["id"], timeout=90)
    log3 = farm.log(job_named(third, "deps")["id"])
    assert "CACHE MISS" in log3
    assert _saved_key(log3) != key1
