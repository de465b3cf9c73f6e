"""`farm secret` against the real API: repo, set (from stdin by default), ls, rm, refs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from farm.cli.main import cli
from farm.domain.messages import PROTOCOL_VERSION
from tests.farmtest import make_repo
from tests.unit.api.conftest import PIPELINE, WorkerWire
from tests.unit.cli.conftest import Farm, LiveApi, one_line

VALUE = "cli-s3cret-value-42"


def test_set_ls_rm_never_print_the_value(farm: Farm, live_api: LiveApi) -> None:
    unbound = farm("secret", "set", "cli/shop", "TOKEN", "--value", VALUE)
    assert unbound.exit_code != 0
    assert "farm secret repo cli/shop URL" in one_line(unbound.stderr)
    assert VALUE not in unbound.output
    url = "https://git.example.com/cli/shop.git"
    set_ = farm(
        "secret", "set", "cli/shop", "TOKEN", "--value", VALUE, "--protected", "--repo", url
    )
    assert set_.exit_code == 0, set_.output
    assert one_line(set_.stdout) == "created secret TOKEN of cli/shop (protected, masked)"
    again = farm("secret", "set", "cli/shop", "TOKEN", "--value", VALUE)
    assert one_line(again.stdout) == "updated secret TOKEN of cli/shop (all refs, masked)"
    farm("secret", "set", "cli/shop", "REGION", "--value", "eu", "--no-mask")
    listed = farm("secret", "ls", "cli/shop")
    assert listed.exit_code == 0
    head, *lines = listed.stdout.strip().splitlines()
    assert head == f"repo: {url}"
    assert [line.split()[0] for line in lines] == ["REGION", "TOKEN"]
    assert "all refs, not masked" in lines[0]
    doc = json.loads(farm("secret", "ls", "cli/shop", "--json").stdout)
    assert doc["repo"] == url
    assert [(r["name"], r["masked"]) for r in doc["secrets"]] == [
        ("REGION", False),
        ("TOKEN", True),
    ]
    for out in (set_.output, again.output, listed.output):
        assert VALUE not in out
    removed = farm("secret", "rm", "cli/shop", "TOKEN")
    assert one_line(removed.stdout) == "removed secret TOKEN of cli/shop"
    missing = farm("secret", "rm", "cli/shop", "TOKEN")
    assert missing.exit_code != 0 and "no secret 'TOKEN'" in one_line(missing.stderr)


def test_set_reads_the_value_from_stdin(live_api: LiveApi, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "stdin-shop", {".farm-ci.yml": PIPELINE})
    result = CliRunner().invoke(
        cli,
        ["--api", live_api.url, "secret", "set", "stdin-shop", "PIPED", "--repo", str(repo)],
        input=VALUE + "\n",
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert VALUE not in result.output
    # The piped value (without echo's newline) is the one a job of the project gets.
    build = live_api.submit(repo)
    worker = WorkerWire(live_api.http, protocol=PROTOCOL_VERSION)
    claim = worker.claim(build["jobs"][0]["id"])
    assert claim.status_code == 200, claim.text
    assert claim.json()["variables"]["PIPED"] == VALUE


def test_a_short_masked_value_is_one_readable_line(farm: Farm) -> None:
    assert farm("secret", "repo", "cli-shop", "/srv/git/cli-shop").exit_code == 0
    result = farm("secret", "set", "cli-shop", "PIN", "--value", "1234")
    assert result.exit_code != 0
    line = one_line(result.stderr)
    assert "cannot be masked" in line and "1234" not in line.replace("at least 8", "")
    ok = farm("secret", "set", "cli-shop", "PIN", "--value", "1234", "--no-mask")
    assert ok.exit_code == 0


def test_refs_show_set_none_and_default(farm: Farm) -> None:
    shown = farm("secret", "refs", "refs-shop")
    assert one_line(shown.stdout) == "refs-shop: main master (default)"
    set_ = farm("secret", "refs", "refs-shop", "main", "release/*")
    assert one_line(set_.stdout) == "refs-shop: main release/*"
    none = farm("secret", "refs", "refs-shop", "--none")
    assert one_line(none.stdout) == "refs-shop: (none: no ref is protected)"
    back = farm("secret", "refs", "refs-shop", "--default")
    assert one_line(back.stdout) == "refs-shop: main master (default)"
    both = farm("secret", "refs", "refs-shop", "main", "--none")
    assert both.exit_code != 0


def test_repo_shows_binds_and_resolves_a_local_path(
    farm: Farm, live_api: LiveApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown = farm("secret", "repo", "repo-shop")
    assert one_line(shown.stdout) == "repo-shop: (none: no build gets these secrets)"
    url = farm("secret", "repo", "repo-shop", "git@git.example.com:g/repo-shop.git")
    assert one_line(url.stdout) == "repo-shop: git@git.example.com:g/repo-shop.git"
    # A local path is sent as `farm submit` sends it: absolute and resolved.
    repo = make_repo(tmp_path / "repo-shop", {".farm-ci.yml": PIPELINE})
    monkeypatch.chdir(tmp_path)
    local = farm("secret", "repo", "repo-shop", "./repo-shop/")
    assert one_line(local.stdout) == f"repo-shop: {repo.resolve()}"
    assert one_line(farm("secret", "repo", "repo-shop").stdout) == f"repo-shop: {repo.resolve()}"
    assert farm("secret", "ls", "repo-shop").stdout.splitlines() == [f"repo: {repo.resolve()}"]
    # --repo naming another repository than the bound one is refused, naming both.
    other = farm(
        "secret", "set", "repo-shop", "T", "--value", "x", "--no-mask", "--repo", "/srv/other"
    )
    assert other.exit_code != 0
    assert f"bound to '{repo.resolve()}', not '/srv/other'" in one_line(other.stderr)
    bad = farm("secret", "repo", "repo-shop", "not/a/path")
    assert bad.exit_code != 0 and "cannot be bound" in one_line(bad.stderr)
    # A build of the bound path gets the secret; one of a namesake elsewhere does not.
    ok = farm("secret", "set", "repo-shop", "T", "--value", "x", "--no-mask", "--repo", "repo-shop")
    assert ok.exit_code == 0, ok.output
    namesake = make_repo(tmp_path / "elsewhere" / "repo-shop", {".farm-ci.yml": PIPELINE})
    worker = WorkerWire(live_api.http, protocol=PROTOCOL_VERSION)
    mine = worker.claim(live_api.submit(repo)["jobs"][0]["id"]).json()["variables"]
    theirs = worker.claim(live_api.submit(namesake)["jobs"][0]["id"]).json()["variables"]
    assert mine["T"] == "x" and "T" not in theirs
