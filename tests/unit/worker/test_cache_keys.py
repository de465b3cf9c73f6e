"""Worker-side pure helpers: cache keys, untracked files, literal patterns, coverage."""

from __future__ import annotations

from pathlib import Path

from farm.domain.messages import CacheEntry
from farm.registry.archive import match_path
from farm.worker.cache import cache_key, literal_pattern, untracked_files
from farm.worker.runner import coverage_of


def test_string_key_expands_runtime_variables_and_defaults(tmp_path: Path) -> None:
    env = {"CI_JOB_ID": "7"}
    assert cache_key(CacheEntry(key="k-$CI_JOB_ID"), tmp_path, env) == "k-7"
    assert cache_key(CacheEntry(), tmp_path, env) == "default"
    assert cache_key(CacheEntry(key="$UNSET"), tmp_path, env) == "default"


def test_files_key_hashes_content_not_job(tmp_path: Path) -> None:
    (tmp_path / "lock.txt").write_text("v1")
    entry = CacheEntry(key_files=["lock.txt"], key_prefix="deps-$CI_JOB_NAME")
    one = cache_key(entry, tmp_path, {"CI_JOB_NAME": "a", "CI_JOB_ID": "1"})
    same = cache_key(entry, tmp_path, {"CI_JOB_NAME": "a", "CI_JOB_ID": "2"})
    assert one == same and one.startswith("deps-a-") and len(one) == len("deps-a-") + 40
    (tmp_path / "lock.txt").write_text("v2")
    assert cache_key(entry, tmp_path, {"CI_JOB_NAME": "a"}) != one


def test_files_key_without_files_is_default(tmp_path: Path) -> None:
    assert cache_key(CacheEntry(key_files=["missing"]), tmp_path, {}) == "default"
    assert cache_key(CacheEntry(key_files=["missing"], key_prefix="p"), tmp_path, {}) == "p-default"


def test_files_key_ignores_paths_outside_the_workspace(tmp_path: Path) -> None:
    inner = tmp_path / "ws"
    inner.mkdir()
    (tmp_path / "secret").write_text("x")
    assert cache_key(CacheEntry(key_files=["../secret"]), inner, {}) == "default"


def test_untracked_lists_new_files_only(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("tracked")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "new.txt").write_text("new")
    (tmp_path / "gen.o").write_text("new")
    assert untracked_files(tmp_path, ["a.txt"]) == ["gen.o", "sub/new.txt"]


def test_literal_pattern_matches_only_its_path() -> None:
    name = "weird[1]*?.txt"
    assert match_path(literal_pattern(name), name)
    assert not match_path(literal_pattern(name), "weird[1]ab.txt")
    assert not match_path(literal_pattern("a*"), "ab")


def test_coverage_takes_the_first_number_of_the_last_match() -> None:
    log = "Coverage: 50.0%\nnoise 99\nTOTAL  12  3  87.5%\n"
    assert coverage_of(r"/TOTAL.*\s(\d+\.\d+)%/", log) == 12.0
    assert coverage_of(r"/\d+\.\d+%/", log) == 87.5
    assert coverage_of(r"/Coverage: \d+/", log) == 50.0
    assert coverage_of(r"/absent/", log) is None
    assert coverage_of(None, log) is None
