"""The worker's work dir: private (0700), one locked dir per live attempt, swept after deaths."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from farm.errors import ConfigError
from farm.worker.workdir import NEW_PREFIX, WorkDir


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_prepare_makes_the_work_dir_private_whatever_was_there(tmp_path: Path) -> None:
    root = tmp_path / "work"
    root.mkdir(mode=0o777)
    os.chmod(root, 0o777)
    WorkDir(root).prepare()
    assert mode(root) == 0o700
    fresh = tmp_path / "a" / "b"
    WorkDir(fresh).prepare()
    assert mode(fresh) == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the dir away")
def test_a_work_dir_of_another_user_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "theirs"
    root.mkdir()
    os.chown(root, 65534, 65534)
    with pytest.raises(ConfigError, match="belongs to uid 65534"):
        WorkDir(root).prepare()


def test_job_dirs_of_live_attempts_survive_a_sweep_dead_ones_do_not(tmp_path: Path) -> None:
    work = WorkDir(tmp_path / "work")
    work.prepare()
    dead = work.root / "job-1-1-deadbeef"  # what a SIGKILLed worker leaves behind
    (dead / "workspace").mkdir(parents=True)
    (dead / "workspace" / "big.bin").write_bytes(b"x" * 1000)
    young = work.root / f"{NEW_PREFIX}0123"  # a job dir being made right now
    young.mkdir()
    other = work.root / "spool"
    other.mkdir()
    with work.job_dir(2, 1) as live:
        assert live.name.startswith("job-2-1-") and live.is_dir()
        assert work.sweep() == [dead]
        assert live.is_dir() and young.is_dir() and other.is_dir()
    assert not live.exists()
    os.utime(young, (1, 1))
    assert work.sweep() == [young]
    assert sorted(p.name for p in work.root.iterdir()) == ["spool"]


def test_a_symlink_named_like_a_job_dir_is_not_followed(tmp_path: Path) -> None:
    work = WorkDir(tmp_path / "work")
    work.prepare()
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep").write_text("x")
    (work.root / "job-9-9-link").symlink_to(precious)
    assert work.sweep() == []
    assert (precious / "keep").exists()


def test_a_work_dir_that_is_a_file_is_refused_as_such(tmp_path: Path) -> None:
    root = tmp_path / "work"
    root.write_text("not a dir")
    with pytest.raises(NotADirectoryError, match="FARM_WORK_DIR is not a directory"):
        WorkDir(root).prepare()
