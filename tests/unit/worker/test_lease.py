"""The worker <-> container lease: how long, renewed, and the wrapper that enforces it."""

from __future__ import annotations

import os
import time
from pathlib import Path

from farm.settings import Settings
from farm.worker.lease import LeaseKeeper, container_lease
from farm.worker.scripts import run_sh, write_scripts


def test_the_container_lease_is_well_under_the_job_lease() -> None:
    assert container_lease(Settings()) == 10  # defaults: 10 s, job lease 30 s
    assert container_lease(Settings(job_lease_seconds=8)) == 4
    assert container_lease(Settings(job_lease_seconds=2)) == 2  # never below the floor
    assert container_lease(Settings(container_lease_seconds=4.5)) == 4


def test_the_keeper_renews_the_lease_file_until_closed(tmp_path: Path) -> None:
    lease = tmp_path / "lease"
    with LeaseKeeper(lease, every=0.05):
        assert lease.exists()
        first = lease.stat().st_mtime_ns
        time.sleep(0.3)
        assert lease.stat().st_mtime_ns > first
    last = lease.stat().st_mtime_ns
    time.sleep(0.2)
    assert lease.stat().st_mtime_ns == last


def test_the_wrapper_watches_the_lease_only_when_asked(tmp_path: Path) -> None:
    assert "/farm/lease" not in run_sh(None)
    script = run_sh(7)
    assert "-gt 7 ]" in script and "kill -KILL -1" in script
    assert script.index("/farm/lease") < script.index("sh -e /farm/main.sh")
    write_scripts(tmp_path, [], ["true"], [], 7)
    assert (tmp_path / "run.sh").read_text() == script


def test_the_wrapper_is_linked_from_one_copy_and_after_sh_is_written_only_when_needed(
    tmp_path: Path,
) -> None:
    shared = tmp_path / "scripts"
    one, two = tmp_path / "one", tmp_path / "two"
    write_scripts(one, [], ["true"], [], 7, shared)
    write_scripts(two, ["echo hi"], ["make"], ["echo bye"], 7, shared)
    assert (one / "run.sh").read_text() == run_sh(7)
    [kept] = shared.iterdir()
    same = {(p / "run.sh").stat().st_ino for p in (one, two)}
    assert same == {kept.stat().st_ino}  # links, not copies
    assert not (one / "after.sh").exists()  # run.sh skips a missing one
    assert "echo bye" in (two / "after.sh").read_text()
    assert "echo hi" in (two / "main.sh").read_text()
    write_scripts(tmp_path / "three", [], ["true"], [], 9, shared)  # another lease
    assert (tmp_path / "three" / "run.sh").read_text() == run_sh(9)
    # A wrapper another version left (named, before, by its lease) is never linked: the
    # name is the content's.
    (shared / "run-7.sh").write_text("#!/bin/sh\necho stale\n")
    write_scripts(tmp_path / "four", [], ["true"], [], 7, shared)
    assert (tmp_path / "four" / "run.sh").read_text() == run_sh(7)


def test_the_lease_is_a_directory_whose_time_is_renewed(tmp_path: Path) -> None:
    lease = tmp_path / "lease"
    with LeaseKeeper(lease, every=3600):
        assert lease.is_dir()
        os.utime(lease, (1, 1))
        LeaseKeeper(lease).renew()
        assert lease.stat().st_mtime > 1
