"""A private PostgreSQL server for the store's contract tests (Debian's postgresql)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import pytest

from tests.farmtest import free_port


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a throwaway cluster on 127.0.0.1, run as the postgres user."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        pytest.fail("PostgreSQL is not installed; run scripts/bootstrap.sh first")
    bindir = os.path.dirname(bins[-1])
    # pytest's tmp dirs are private to root; the server runs as `postgres`.
    root = tempfile.mkdtemp(prefix="farm-pg-")
    os.chmod(root, 0o755)
    shutil.chown(root, "postgres", "postgres")
    data = os.path.join(root, "data")
    port = free_port()

    def as_pg(*args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, timeout=120
        )

    as_pg(f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
    as_pg(
        f"{bindir}/pg_ctl",
        "-D",
        data,
        "-w",
        "-l",
        os.path.join(root, "log"),
        "-o",
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -F",
        "start",
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        as_pg(f"{bindir}/pg_ctl", "-D", data, "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)
