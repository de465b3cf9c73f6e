"""`image: python:3.11` without a registry: the pull fails fast, the stand-in runs, and
it behaves like python:3.11 (pip installs)."""

from __future__ import annotations

import time
from pathlib import Path

from farm.executor.docker import DockerExecutor
from tests.farmtest import Farm, make_repo

PIPELINE = """
image: python:3.11
install:
  script:
    - python --version
    - pip install --no-index --no-build-isolation ./pkg
    - python -c "import hello; print(hello.WORD)"
"""
PYPROJECT = """
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"
[project]
name = "hello"
version = "0.1"
[tool.setuptools]
py-modules = ["hello"]
"""


def test_a_missing_image_pull_fails_fast_without_a_registry(docker_client: object) -> None:
    executor = DockerExecutor()
    started = time.monotonic()
    assert not executor.pull_image("python:3.11")
    assert time.monotonic() - started < executor.pull_timeout + 2
    again = time.monotonic()
    assert not executor.pull_image("python:3.11")  # remembered: no second wait
    assert time.monotonic() - again < 0.5


def test_python_stand_in_lets_pip_install(farm: Farm, tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "py",
        {
            ".gitlab-ci.yml": PIPELINE,
            "pkg/pyproject.toml": PYPROJECT,
            "pkg/hello.py": "WORD = 'installed-and-imported'\n",
        },
    )
    done = farm.wait(farm.submit(repo)["id"], timeout=240)
    log = farm.log(done["jobs"][0]["id"])
    assert done["status"] == "success", log
    assert "externally-managed-environment" not in log
    assert "installed-and-imported" in log
    assert "using 'farm/python:3.11' (FARM_IMAGE_ALIASES)" in log
