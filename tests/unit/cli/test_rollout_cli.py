"""`farm rollout`: plans and scopes offline, rollouts against the real API on uvicorn.

The API is the session's (tests/unit/cli/conftest.py); a health server on 127.0.0.1 plays
the checked service, the worker endpoints make the releases, and every test rolls out a
project of its own. The nginx block goes through a real nginx (`nginx -t`, then served).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from farm.rollout.nginx import variable_name
from farm.rollout.plan import load_plan
from tests.farmtest import Health, free_port, make_repo
from tests.unit.api.conftest import PIPELINE, job_id
from tests.unit.cli.conftest import Farm, LiveApi, one_line

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "configs" / "rollout"

CHECK = """\
    checks:
      - http: "http://127.0.0.1:{port}/health?scope={{scope}}&version={{version}}"
        samples: 3
        interval: 0.05
        max_failure_ratio: 0.2
"""
PLAN = (
    """\
scopes:
  canada: [198.51.100.0/24, "2001:db8:ca::/48"]
  usa: [203.0.113.0/24]
steps:
  - scope: canada
    bake: {bake}
"""
    + CHECK
    + """\
  - scope: usa
    bake: {bake}
"""
    + CHECK
    + """\
  - scope: all
    bake: {bake}
"""
)


def _repo(tmp_path: Path, request: pytest.FixtureRequest, health: Health, bake: int) -> Path:
    name = "ro-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.removeprefix("test_").lower())
    plan = PLAN.format(port=health.port, bake=bake)
    return make_repo(tmp_path / name[:40], {".farm-ci.yml": PIPELINE, ".farm/rollout.yml": plan})


@pytest.fixture
def shop(tmp_path: Path, request: pytest.FixtureRequest, health: Health) -> Path:
    """A project whose plan goes canada → usa → all, checks right away."""
    return _repo(tmp_path, request, health, bake=0)


@pytest.fixture
def slow_shop(tmp_path: Path, request: pytest.FixtureRequest, health: Health) -> Path:
    """The same plan, but every step bakes for 10 minutes: the rollout stays where it is put."""
    return _repo(tmp_path, request, health, bake=600)


def release(live_api: LiveApi, repo: Path, version: str) -> None:
    """Build ``repo`` green (playing the worker) and release it as ``version``."""
    build = live_api.submit(repo)
    art = live_api.worker.artifact("compile", f"app {version}\n".encode())
    live_api.worker.run(job_id(build, "compile"), artifacts=[art])
    live_api.worker.run_build(build["id"])
    resp = live_api.http.post("/api/v1/releases", json={"build": build["id"], "version": version})
    assert resp.status_code == 201, resp.text


def released(live_api: LiveApi, repo: Path, *versions: str) -> str:
    for version in versions:
        release(live_api, repo, version)
    return repo.name


def get(live_api: LiveApi, rid: int) -> dict[str, Any]:
    doc: dict[str, Any] = live_api.http.get(f"/api/v1/rollouts/{rid}").json()
    return doc


def wait_for(live_api: LiveApi, rid: int, states: set[str], timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        doc = get(live_api, rid)
        if doc["state"] in states:
            return doc
        assert time.monotonic() < deadline, doc
        time.sleep(0.05)


# --- lint ------------------------------------------------------------------------------


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_lint_accepts_the_bundled_example(farm: Farm, here: Path) -> None:
    result = farm("rollout", "lint", str(EXAMPLES / "rollout.example.yml"))
    assert result.exit_code == 0, result.output
    assert result.stdout == "ok: 2 scopes, 3 steps\n"

    (here / ".farm").mkdir()
    (here / ".farm" / "rollout.yml").write_text(PLAN.format(port=1, bake=5))
    default = farm("rollout", "lint")  # .farm/rollout.yml of the current directory
    assert default.exit_code == 0 and default.stdout == "ok: 2 scopes, 3 steps\n"
    doc = json.loads(farm("rollout", "lint", "--json").stdout)
    assert doc["ok"] is True and doc["steps"] == ["canada", "usa", "all"] and doc["cidrs"] == 3


BAD_PLAN = """\
scopes:
  canada: [10.0.0.0/8]
  usa: [10.1.0.0/16, 300.0.0.0/8]
steps:
  - scope: canada
  - scope: mars
"""


def test_lint_lists_every_problem_as_file_line_col(farm: Farm, here: Path) -> None:
    (here / "plan.yml").write_text(BAD_PLAN)
    result = farm("rollout", "lint", "plan.yml")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert len(lines) >= 3, result.stdout
    assert all(re.match(r"plan\.yml:\d+:\d+: ", line) for line in lines), lines
    assert any(line.startswith("plan.yml:3:") and "overlap" in line for line in lines), lines
    assert any(line.startswith("plan.yml:3:") and "300.0.0.0/8" in line for line in lines)
    assert any(line.startswith("plan.yml:6:") and "mars" in line for line in lines), lines
    assert result.stderr == f"{len(lines)} problems found\n"

    as_json = farm("rollout", "lint", "plan.yml", "--json")
    assert as_json.exit_code == 1
    diags = json.loads(as_json.stdout)["diagnostics"]
    assert [d["text"] for d in diags] == lines and diags[0]["file"] == "plan.yml"


def test_lint_of_a_missing_file_is_one_line(farm: Farm, here: Path) -> None:
    result = farm("rollout", "lint")
    assert result.exit_code == 1
    assert "cannot read .farm/rollout.yml" in one_line(result.stderr)


# --- scopes import -------------------------------------------------------------------


def test_scopes_import_of_the_bundled_excerpt_loads_as_plan_scopes(
    farm: Farm, tmp_path: Path
) -> None:
    args = [
        "rollout",
        "scopes",
        "import",
        str(EXAMPLES / "geolite2-country-blocks-ipv4.excerpt.csv"),
        str(EXAMPLES / "geolite2-country-blocks-ipv6.excerpt.csv"),
        "--locations",
        str(EXAMPLES / "geolite2-country-locations-en.excerpt.csv"),
        "--scope",
        "canada=CA",
        "--scope",
        "usa=us",
        "--scope",
        "europe=DE,FR,GB",
    ]
    result = farm(*args)
    assert result.exit_code == 0, result.output
    steps = "steps:\n  - scope: canada\n  - scope: usa\n  - scope: europe\n  - scope: all\n"
    plan = load_plan(result.stdout + steps, "imported.yml")
    assert list(plan.scopes) == ["canada", "usa", "europe"]
    assert "2001:568::/29" in plan.scopes["canada"]  # IPv6 from the second blocks file
    assert "9.0.0.0/8" in plan.scopes["usa"] and "2.0.0.0/12" in plan.scopes["europe"]
    assert all(plan.scopes[name] for name in plan.scopes)

    out = tmp_path / "scopes.yml"
    written = farm(*args, "-o", str(out))
    assert written.exit_code == 0 and written.stdout == ""
    assert out.read_text() == result.stdout
    assert written.stderr.startswith("wrote 3 scopes (") and str(out) in written.stderr

    unknown = farm(*args[:-2], "--scope", "mars=XX")
    assert unknown.exit_code != 0
    assert one_line(unknown.stderr) == "error: scope 'mars': unknown country code 'XX'"
    bad = farm(*args[:-2], "--scope", "europe")
    assert bad.exit_code == 2 and "is not NAME=ISO" in bad.stderr


# --- rollouts through the API --------------------------------------------------------


def test_start_then_status_tree_shows_every_scope(
    farm: Farm, live_api: LiveApi, slow_shop: Path, health: Health
) -> None:
    project = released(live_api, slow_shop, "1.0.0", "1.1.0")
    started = farm("rollout", "start", project, "1.1.0", "--actor", "ann")
    assert started.exit_code == 0, started.output
    rid = int(started.stdout)
    assert started.stderr == (
        f"rollout {rid} started: {project} 1.1.0 over 1.0.0, 3 steps; "
        "now progressing at step 1/3 (canada)\n"
    )
    doc = get(live_api, rid)
    assert doc["actor"] == "ann" and doc["phase"] == "bake"

    result = farm("rollout", "status", str(rid))
    assert result.exit_code == 0, result.output
    tree = result.stdout
    print(tree)
    assert f"Rollout:    {rid}" in tree and f"Project:    {project}" in tree
    assert "Version:    1.1.0" in tree and "Previous:   1.0.0" in tree
    assert "Status:     ◐ progressing" in tree and "Step:       1/3" in tree
    assert re.search(r"Phase:      bake \(9m\d\ds left\)", tree), tree
    rows = {m[1]: m[0] for m in re.findall(r"(.) step \d  (\w+)  ", tree)}
    assert rows == {"canada": "◐", "usa": "○", "all": "○"}, tree
    assert "step 1  canada  → 1.1.0  2 CIDRs  progressing" in tree
    assert "step 2  usa  → 1.0.0  1 CIDR  pending" in tree
    assert "step 3  all  → 1.0.0  everyone  pending" in tree
    assert (
        f"http http://127.0.0.1:{health.port}/health?scope=canada&version=1.1.0 · 3 samples" in tree
    )
    assert f"http http://127.0.0.1:{health.port}/health?scope=usa&version=1.1.0 · 3 samples" in tree

    by_project = farm("rollout", "status", project, "--json")  # a project: its newest rollout
    assert by_project.exit_code == 0
    assert json.loads(by_project.stdout)["id"] == rid
    aborted = farm("rollout", "abort", str(rid))
    assert aborted.exit_code == 0


def test_commands_print_one_line_and_refusals_exit_non_zero(
    farm: Farm, live_api: LiveApi, slow_shop: Path
) -> None:
    project = released(live_api, slow_shop, "1.0.0", "1.1.0")
    rid = int(farm("rollout", "start", project, "1.1.0").stdout)
    head = f"rollout {rid} ({project} 1.1.0)"

    paused = farm("rollout", "pause", str(rid), "--actor", "ann", "--reason", "lunch")
    assert paused.exit_code == 0, paused.output
    assert paused.stdout == (f"paused: {head}: paused at step 1/3 (canada): paused by ann: lunch\n")
    busy = farm("rollout", "start", project, "1.0.0")
    assert busy.exit_code != 0 and "already has an active rollout" in one_line(busy.stderr)

    resumed = farm("rollout", "resume", str(rid), "--actor", "ann")
    assert resumed.stdout == f"resumed: {head}: progressing at step 1/3 (canada)\n"
    twice = farm("rollout", "resume", str(rid))  # 409: not paused
    assert twice.exit_code == 2 and twice.stdout == ""
    assert one_line(twice.stderr).startswith(f"error: cannot resume rollout {rid} ")

    promoted = farm("rollout", "promote", str(rid), "--actor", "bob")
    assert promoted.exit_code == 0, promoted.output
    assert promoted.stdout == f"promoted: {head}: progressing at step 2/3 (usa)\n"
    doc = json.loads(farm("rollout", "step-back", str(rid), "--json").stdout)
    assert doc["state"] == "stepped_back" and doc["step"] == 0
    full = farm("rollout", "promote", str(rid), "--full", "--reason", "ship it")
    assert full.stdout == (f"promoted to the last step: {head}: progressing at step 3/3 (all)\n")
    aborted = farm("rollout", "abort", str(rid), "--actor", "cy", "--reason", "bad idea")
    assert aborted.stdout == (
        f"aborted: {head}: aborted at step 3/3 (all): aborted by cy: bad idea\n"
    )
    again = farm("rollout", "abort", str(rid))
    assert again.exit_code == 2 and "aborted" in one_line(again.stderr)

    status = farm("rollout", "status", str(rid))
    assert status.exit_code == 1 and "✖ aborted" in status.stdout  # aborted exits 1
    missing = farm("rollout", "pause", "987654")
    assert missing.exit_code == 2 and one_line(missing.stderr) == (
        "error: rollout 987654 does not exist"
    )

    history = farm("rollout", "history", str(rid))
    assert history.exit_code == 0
    lines = history.stdout.splitlines()
    events = [line.split()[3] for line in lines]
    assert events == ["start", "pause", "resume", "promote", "step_back", "promote_full", "abort"]
    assert re.match(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ  ann +pause +progressing \(step 1\) "
        r"→ paused \(step 1\)  paused by ann: lunch$",
        lines[1],
    ), lines[1]
    assert "progressing (step 1) → progressing (step 2)" in lines[3]
    assert "bob" in lines[3] and "ship it" in lines[5]
    as_json = json.loads(farm("rollout", "history", str(rid), "--json").stdout)
    assert [e["event"] for e in as_json] == events

    listed = farm("rollout", "ls", "--project", project)
    assert listed.exit_code == 0
    row = one_line(listed.stdout).split()
    assert row[:6] == [str(rid), project, "1.1.0", "✖", "aborted", "step"]
    assert "over 1.0.0" in listed.stdout
    rows = json.loads(farm("rollout", "ls", "--json").stdout)
    assert rid in [r["id"] for r in rows]
    assert [r["id"] for r in rows] == sorted((r["id"] for r in rows), reverse=True)


def test_a_failing_scope_steps_back_and_watch_exits_1_with_the_figures(
    farm: Farm, live_api: LiveApi, shop: Path, health: Health
) -> None:
    project = released(live_api, shop, "1.0.0", "1.1.0")
    health.sick = {"usa"}
    started = farm("rollout", "start", project, "1.1.0", "--watch", "--interval", "0.1")
    assert started.exit_code == 1, started.output  # ended stepped back, not succeeded
    rid = int(started.stderr.split()[1])
    progress = started.stdout.split("\n\n")[0].splitlines()
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ  rollout ", ln) for ln in progress)
    assert progress[-1].endswith(
        f"rollout {rid} ({project} 1.1.0): stepped_back at step 1/3 (canada): step 2 (usa) "
        f"failed: http http://127.0.0.1:{health.port}/health?scope=usa&version=1.1.0: "
        "3/3 failed (100% > 20%), p95 " + progress[-1].rsplit("p95 ", 1)[1]
    )

    watched = farm("rollout", "status", str(rid), "--watch", "--interval", "0.1")
    assert watched.exit_code == 1
    tree = watched.stdout.split("\n\n", 1)[1]
    print(tree)
    assert "Status:     ↩ stepped_back" in tree and "Step:       1/3" in tree
    assert "✔ step 1  canada  → 1.1.0  2 CIDRs  passed" in tree
    assert "✖ step 2  usa  → 1.0.0  1 CIDR  failed" in tree
    assert "○ step 3  all  → 1.0.0  everyone  pending" in tree
    usa = tree.split("step 2  usa", 1)[1].split("step 3  all", 1)[0]
    assert re.search(r"✖ 3/3 failed \(100%\) · p95 [\d.]+ ms · statuses \{500: 3\}", usa), usa
    assert "checks of attempt 2 failed: http" in usa
    assert "failed" not in tree.split("step 1  canada", 1)[1].split("step 2  usa", 1)[0]
    plain = farm("rollout", "status", str(rid))  # without --watch: stepped back exits 1 too
    assert plain.exit_code == 1 and plain.stdout == tree

    history = farm("rollout", "history", str(rid)).stdout
    assert "checks_failed  progressing (step 2) → stepped_back (step 1)" in history

    def deliver(ip: str) -> str:
        result = farm("rollout", "deliver", project, "--ip", ip)
        assert result.exit_code == 0, result.output
        return result.stdout.splitlines()[0]

    assert deliver("198.51.100.7") == (
        f"{project} 1.1.0 for 198.51.100.7 (scope canada, rollout {rid})"
    )
    assert deliver("2001:db8:ca::1").startswith(f"{project} 1.1.0 for 2001:db8:ca::1 ")
    assert (
        deliver("203.0.113.9") == f"{project} 1.0.0 for 203.0.113.9 (no live scope, rollout {rid})"
    )
    answer = json.loads(farm("rollout", "deliver", project, "--ip", "192.0.2.1", "--json").stdout)
    assert answer["version"] == "1.0.0" and answer["artifacts"]
    assert answer["artifacts"][0]["url"].startswith("/api/v1/artifacts/sha256:")

    geo = farm("rollout", "nginx-geo", project)
    assert geo.exit_code == 0
    assert f"geo $remote_addr {variable_name(project)} {{" in geo.stdout
    assert '198.51.100.0/24 "1.1.0";' in geo.stdout and "203.0.113.0/24" not in geo.stdout
    assert 'default "1.0.0";' in geo.stdout


def test_a_healthy_rollout_watched_exits_0(farm: Farm, live_api: LiveApi, shop: Path) -> None:
    project = released(live_api, shop, "2.0.0")
    started = farm("rollout", "start", project, "2.0.0", "--watch", "--json", "--interval", "0.1")
    assert started.exit_code == 0, started.output
    doc = json.loads(started.stdout)
    assert doc["state"] == "succeeded" and doc["previous_version"] is None
    assert f"rollout {doc['id']} ({project} 2.0.0): succeeded at step 3/3 (all)" in started.stderr
    status = farm("rollout", "status", str(doc["id"]), "--watch")
    assert status.exit_code == 0 and "✔ succeeded" in status.stdout
    deliver = farm("rollout", "deliver", project, "--ip", "192.0.2.1")
    assert deliver.stdout.startswith(f"{project} 2.0.0 for 192.0.2.1 (scope all, ")


def test_a_paused_rollout_ends_the_watch_with_1(
    farm: Farm, live_api: LiveApi, slow_shop: Path
) -> None:
    project = released(live_api, slow_shop, "1.0.0", "1.1.0")
    rid = int(farm("rollout", "start", project, "1.1.0").stdout)
    farm("rollout", "pause", str(rid))
    watched = farm("rollout", "status", str(rid), "--watch", "--interval", "0.1")
    assert watched.exit_code == 1 and "॥ paused" in watched.stdout
    plain = farm("rollout", "status", str(rid))
    assert plain.exit_code == 0  # paused is not a failure without --watch
    farm("rollout", "abort", str(rid))


def test_api_errors_of_rollout_commands_are_one_line(farm: Farm, dead_api: str) -> None:
    for args in (("status", "1"), ("start", "p", "1.0"), ("ls",), ("nginx-geo", "p")):
        result = farm("rollout", *args, api=dead_api)
        assert result.exit_code == 2, args
        assert "cannot reach the farm API" in one_line(result.stderr)
    unknown = farm("rollout", "deliver", "no-such-project", "--ip", "192.0.2.1")
    assert unknown.exit_code == 2
    assert one_line(unknown.stderr) == "error: project 'no-such-project' has no release to deliver"
    nothing = farm("rollout", "status", "no-such-project")
    assert nothing.exit_code == 2 and one_line(nothing.stderr) == (
        "error: 'no-such-project' is neither a rollout id nor a project with rollouts"
    )


# --- a real nginx --------------------------------------------------------------------

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (scripts/bootstrap.sh)")
def test_nginx_accepts_the_geo_block_and_routes_by_it(
    farm: Farm, live_api: LiveApi, health: Health, tmp_path: Path
) -> None:
    assert NGINX is not None
    # A short name: nginx's default variables_hash_bucket_size (64) refuses variable
    # names over about 46 characters, i.e. $farm_<project>_version of projects over ~33.
    shop = make_repo(
        tmp_path / "geo-shop",
        {".farm-ci.yml": PIPELINE, ".farm/rollout.yml": PLAN.format(port=health.port, bake=0)},
    )
    project = released(live_api, shop, "1.0.0", "1.1.0")
    health.sick = {"usa"}
    rid = int(farm("rollout", "start", project, "1.1.0").stdout)
    wait_for(live_api, rid, {"stepped_back", "aborted", "succeeded"})
    geo = farm("rollout", "nginx-geo", project)
    assert geo.exit_code == 0, geo.output

    conf_dir = tmp_path / "nginx"
    conf_dir.mkdir()
    (conf_dir / "farm-geo.conf").write_text(geo.stdout)
    port = free_port()
    temp_paths = "\n".join(
        f"    {kind}_temp_path {conf_dir / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = conf_dir / "nginx.conf"
    conf.write_text(
        f"""\
worker_processes 1;
pid {conf_dir / "nginx.pid"};
error_log {conf_dir / "error.log"};
events {{ worker_connections 64; }}
http {{
    access_log off;
{temp_paths}
    include {conf_dir / "farm-geo.conf"};
    # tests reach nginx from 127.0.0.1 only: take the client from X-Forwarded-For
    set_real_ip_from 127.0.0.1;
    real_ip_header X-Forwarded-For;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "{variable_name(project)}\\n"; }}
    }}
}}
"""
    )
    base = [NGINX, "-p", str(conf_dir), "-e", str(conf_dir / "error.log"), "-c", str(conf)]
    checked = subprocess.run([*base, "-t"], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    assert "syntax is ok" in checked.stderr and "test is successful" in checked.stderr

    server = subprocess.Popen(
        [*base, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.05)

        def routed(client: str) -> str:
            resp = httpx.get(url, headers={"X-Forwarded-For": client}, timeout=5)
            assert resp.status_code == 200, resp.text
            return resp.text.strip()

        assert routed("198.51.100.7") == "1.1.0"  # canada: live
        assert routed("2001:db8:ca::1") == "1.1.0"
        assert routed("203.0.113.9") == "1.0.0"  # usa: stepped back
        assert routed("192.0.2.1") == "1.0.0"  # everyone else
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)
