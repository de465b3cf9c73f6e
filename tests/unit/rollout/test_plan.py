"""Plan files: what loads, what is refused, and that every refusal says where and why."""

from __future__ import annotations

import ipaddress
import json
import time
from pathlib import Path

import pytest

from farm.errors import InvalidRequest, PlanError
from farm.rollout import HttpCheck, JobCheck, Plan, auto_version, load_plan, matches_auto
from farm.rollout.plan import MAX_CIDRS, MAX_PLAN_BYTES

ISSUE_PLAN = """\
scopes:
  canada: [198.51.100.0/24, "2001:db8:ca::/48"]
  usa: [203.0.113.0/24]
steps:
  - scope: canada
    bake: 30              # seconds before the checks
    checks:
      - http: "https://shop.example/health?scope={scope}&version={version}"
        samples: 5
        interval: 2
        max_failure_ratio: 0.2
  - {scope: usa, bake: 300, approve: manual}
  - {scope: all}
deploy_job: deploy        # optional: pipeline job run at each step
auto: {branches: [main]}  # optional: continuous deployment
"""

EXAMPLE = Path(__file__).parents[3] / "configs" / "rollout" / "rollout.example.yml"


def problems(text: str) -> list[str]:
    with pytest.raises(PlanError) as info:
        load_plan(text)
    return [str(d) for d in info.value.diagnostics]


def test_the_plan_of_the_issue_loads_with_defaults() -> None:
    plan = load_plan(ISSUE_PLAN)
    assert dict(plan.scopes) == {
        "canada": ("198.51.100.0/24", "2001:db8:ca::/48"),
        "usa": ("203.0.113.0/24",),
    }
    assert plan.step_scopes == ["canada", "usa", "all"]
    canada, usa, everyone = plan.steps
    assert canada.bake == 30 and canada.approve == "auto"
    assert canada.checks == (
        HttpCheck(
            "https://shop.example/health?scope={scope}&version={version}",
            samples=5,
            interval=2,
            timeout=5.0,
            expect_status=(200,),
            max_failure_ratio=0.2,
        ),
    )
    assert usa.approve == "manual" and usa.bake == 300 and usa.checks == ()
    assert everyone.bake == 0
    assert plan.deploy_job == "deploy"
    assert plan.auto_branches == ("main",)
    assert plan.version_template == "{branch}-{build}"
    assert plan.cidrs_of("all") == ("0.0.0.0/0", "::/0")


def test_the_bundled_example_loads() -> None:
    plan = load_plan(EXAMPLE.read_text(), str(EXAMPLE))
    assert plan.step_scopes == ["canada", "usa", "all"]
    assert plan.steps[1].approve == "manual"
    check = plan.steps[0].checks[0]
    assert isinstance(check, HttpCheck) and "127.0.0.1" in check.url


def test_round_trips_through_a_json_column() -> None:
    plan = load_plan(ISSUE_PLAN.replace("interval: 2", "interval: 2\n        max_p95_ms: 250"))
    stored = json.loads(json.dumps(plan.to_dict()))
    assert Plan.from_dict(stored) == plan
    assert stored["steps"][0]["checks"][0]["max_p95_ms"] == 250


def test_from_dict_validates_like_the_file() -> None:
    data = load_plan(ISSUE_PLAN).to_dict()
    data["steps"][0]["bake"] = -1
    with pytest.raises(PlanError, match=r"<stored plan>:0:0: step 1 \(canada\): bake"):
        Plan.from_dict(data)


def test_plan_is_immutable() -> None:
    plan = load_plan(ISSUE_PLAN)
    with pytest.raises(TypeError):
        plan.scopes["usa"] = ("192.0.2.0/24",)  # type: ignore[index]


def test_job_checks_and_status_lists() -> None:
    plan = load_plan(
        "steps:\n"
        "  - scope: all\n"
        "    checks:\n"
        "      - job: smoke\n"
        "      - {http: 'http://127.0.0.1:8080/', expect_status: [200, 204, 200], timeout: 0.5}\n"
    )
    job, http = plan.steps[0].checks
    assert job == JobCheck("smoke")
    assert isinstance(http, HttpCheck)
    assert http.expect_status == (200, 204) and http.timeout == 0.5


def test_every_problem_is_reported_with_its_position() -> None:
    found = problems(
        "scopes:\n"  # 1
        "  canada: [198.51.100.1/24, bogus]\n"  # 2
        "  Bad: [192.0.2.0/24]\n"  # 3
        "  all: [0.0.0.0/0]\n"  # 4
        "  empty: []\n"  # 5
        "steps:\n"  # 6
        "  - scope: canda\n"  # 7
        "    bak: 30\n"  # 8
        "  - {scope: all}\n"  # 9
        "  - {scope: canada, approve: maybe, bake: .nan}\n"  # 10
        "  - {scope: canada}\n"  # 11
        "extra: 1\n"  # 12
    )
    expected = [
        ".farm/rollout.yml:2:12: scope 'canada': 198.51.100.1/24 has host bits set; "
        "did you mean 198.51.100.0/24?",
        ".farm/rollout.yml:2:29: scope 'canada': 'bogus' is not a CIDR",
        ".farm/rollout.yml:3:3: scope name 'Bad' is not allowed",
        ".farm/rollout.yml:4:3: scope 'all' is built in",
        ".farm/rollout.yml:5:10: scope 'empty' needs a non-empty list of CIDRs",
        ".farm/rollout.yml:7:5: step 1 (canda): scope 'canda' is not defined in scopes:; "
        "did you mean 'canada'?",
        ".farm/rollout.yml:8:5: unknown key 'bak' in step 1; did you mean 'bake'?",
        ".farm/rollout.yml:9:6: step 2 (all): 'all' must be the last step",
        ".farm/rollout.yml:10:21: step 3 (canada): approve must be manual or auto, not 'maybe'",
        ".farm/rollout.yml:10:37: step 3 (canada): bake (seconds) must be a number from 0 to "
        "2592000, not nan",
        ".farm/rollout.yml:11:6: step 4 (canada): scope 'canada' is already rolled out by step 3",
        ".farm/rollout.yml:12:1: unknown key 'extra' in the rollout plan; allowed: scopes",
    ]
    assert len(found) == len(expected), found
    for got, want in zip(sorted(found), sorted(expected), strict=True):
        assert got.startswith(want), (got, want)


def test_error_string_is_the_first_problem_plus_a_count() -> None:
    with pytest.raises(PlanError) as info:
        load_plan("scopes: {a: [bogus]}\nsteps: [{scope: b}]\n")
    assert str(info.value).endswith(" (and 1 more)")
    assert str(info.value).startswith(".farm/rollout.yml:1:")
    assert info.value.http_status == 422


@pytest.mark.parametrize(
    ("check", "message"),
    [
        ("{http: 'ftp://x/'}", "only http:// and https:// can be checked"),
        ("{http: 'http:///path'}", "has no host"),
        ("{http: 'http://x/{scop}'}", "unknown placeholder {scop}; allowed: {scope}, {version}"),
        ("{http: 'http://x/{version!r}'}", "unknown placeholder {version!r}"),
        ("{http: 'http://x/{'}", "write a literal brace"),
        ("{http: 'http://x/a b'}", "spaces or control characters"),
        ("{http: 'http://x/', samples: 0}", "samples must be a whole number from 1 to 1000"),
        ("{http: 'http://x/', samples: 1001}", "samples must be a whole number"),
        ("{http: 'http://x/', timeout: 0}", "timeout must be a number above 0"),
        ("{http: 'http://x/', interval: -1}", "interval must be a number from 0"),
        ("{http: 'http://x/', max_failure_ratio: 1.5}", "max_failure_ratio must be a number"),
        ("{http: 'http://x/', max_p95_ms: .inf}", "max_p95_ms must be a number above 0"),
        ("{http: 'http://x/', expect_status: [200, 999]}", "expect_status must be an HTTP"),
        ("{http: 'http://x/', expect_status: []}", "expect_status must be an HTTP"),
        (
            "{http: 'http://x/', sample: 3}",
            "unknown key 'sample' in step 1 (all), check 1; did you mean 'samples'?",
        ),
        ("{http: 'http://x/', job: deploy}", "use either http: or job:, not both"),
        ("{job: ''}", "job must be a non-empty one-line string"),
        ("{htp: 'http://x/'}", "unknown key 'htp' in step 1 (all), check 1; did you mean"),
        ("plain", "must be a mapping with http: URL or job: NAME"),
    ],
)
def test_check_problems(check: str, message: str) -> None:
    found = problems(f"steps:\n  - scope: all\n    checks:\n      - {check}\n")
    assert any(message in p for p in found), found


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the rollout plan is empty"),
        ("- a\n", "a rollout plan must be a mapping"),
        ("scopes: {}\n", "steps: is required"),
        ("steps: []\n", "steps must be a non-empty list"),
        ("steps: [canada]\n", "step 1 must be a mapping like {scope: canada, bake: 60}"),
        ("steps: [{bake: 3}]\n", "step 1 needs scope: one of all"),
        ("scopes: [a]\nsteps: [{scope: all}]\n", "scopes must map scope names to CIDR lists"),
        ("scopes: {a: 10.0.0.0/8}\nsteps: [{scope: all}]\n", "needs a non-empty list"),
        ("steps: [{scope: all}]\nauto: {branches: []}\n", "auto: needs branches"),
        ("steps: [{scope: all}]\nauto: [main]\n", "auto must be a mapping"),
        ("steps: [{scope: all}]\nauto: {branch: [main]}\n", "did you mean 'branches'?"),
        ("steps: [{scope: all}]\nversion: '{branch}'\n", "must contain {build}"),
        ("steps: [{scope: all}]\nversion: 'v {build}'\n", "must give versions of letters"),
        ("steps: [{scope: all}]\nversion: '{sha}-{build}'\n", "unknown placeholder {sha}"),
        ("steps: [{scope: all}]\ndeploy_job: [a]\n", "deploy_job must be a non-empty"),
        ("steps: [{scope: all, bake: 99999999}]\n", "bake (seconds) must be a number"),
        ("steps: [{scope: all, bake: '30s'}]\n", "bake (seconds) must be a number"),
        ("steps: [{scope: all}]\n---\nsteps: []\n", "a rollout plan must hold one YAML document"),
        ("steps: [{scope: all}\n", "invalid YAML"),
    ],
)
def test_document_problems(text: str, message: str) -> None:
    found = problems(text)
    assert any(message in p for p in found), found


def test_cidrs_are_normalised_and_merged_within_a_scope() -> None:
    plan = load_plan(
        "scopes:\n"
        "  canada: [198.51.100.0/24, 198.51.100.0/24, '2001:DB8:CA:0::/48', 192.0.2.7,"
        " 198.51.100.0/25]\n"
        "steps: [{scope: canada}]\n"
    )
    assert plan.scopes["canada"] == (
        "198.51.100.0/24",
        "2001:db8:ca::/48",
        "192.0.2.7/32",
        "198.51.100.0/25",  # nested in its own scope: harmless
    )


def test_mapped_ipv6_networks_are_refused_with_the_ipv4_spelling() -> None:
    found = problems("scopes: {a: ['::ffff:198.51.100.0/120']}\nsteps: [{scope: a}]\n")
    assert "write it as 198.51.100.0/24" in found[0]


def test_overlaps_between_scopes_name_both_scopes_and_both_cidrs() -> None:
    found = problems(
        "scopes:\n"
        "  canada: [10.0.0.0/8, '2001:db8::/32']\n"
        "  usa: [10.1.0.0/16, 192.0.2.0/24, '2001:db8:1::/48']\n"
        "  mexico: [192.0.2.0/24]\n"
        "steps: [{scope: canada}, {scope: usa}, {scope: mexico}]\n"
    )
    assert found == [  # in file order
        ".farm/rollout.yml:3:9: 10.1.0.0/16 of scope 'usa' overlaps 10.0.0.0/8 of scope "
        "'canada'; a client must belong to exactly one scope",
        ".farm/rollout.yml:3:36: 2001:db8:1::/48 of scope 'usa' overlaps 2001:db8::/32 of "
        "scope 'canada'; a client must belong to exactly one scope",
        ".farm/rollout.yml:4:12: 192.0.2.0/24 is in both scope 'usa' and scope 'mexico'; "
        "a client must belong to exactly one scope",
    ]


def _many_cidrs(n: int, scopes: int = 2) -> str:
    lines = ["scopes:"]
    per = n // scopes
    for s in range(scopes):
        lines.append(f"  s{s}:")
        base = int(ipaddress.IPv4Address("11.0.0.0")) + s * per * 256
        lines += [f"    - {ipaddress.IPv4Address(base + i * 256)}/24" for i in range(per)]
    lines.append("steps: [{scope: s0}, {scope: s1}]")
    return "\n".join(lines) + "\n"


def test_a_geoip_sized_plan_loads_quickly() -> None:
    text = _many_cidrs(20_000)
    began = time.perf_counter()
    plan = load_plan(text)
    assert sum(len(c) for c in plan.scopes.values()) == 20_000
    assert time.perf_counter() - began < 10  # the sweep is O(n log n); O(n²) would take ages


def test_overlap_reports_are_capped() -> None:
    lines = ["scopes:", "  big: [11.0.0.0/8]", "  small:"]
    lines += [f"    - 11.0.{i}.0/24" for i in range(120)]
    found = problems("\n".join([*lines, "steps: [{scope: big}, {scope: small}]"]) + "\n")
    assert len(found) == 51
    assert any("70 more CIDRs overlap" in p for p in found)


def test_input_is_bounded() -> None:
    too_big = "# " + "x" * MAX_PLAN_BYTES + "\nsteps: [{scope: all}]\n"
    assert "larger than 4 MiB" in problems(too_big)[0]
    found = problems(_many_cidrs(MAX_CIDRS + 2))
    assert any(f"too many CIDRs: a plan may hold at most {MAX_CIDRS:,}" in p for p in found)


@pytest.mark.parametrize(
    ("patterns", "branch", "expected"),
    [
        (["main"], "main", True),
        (["main"], "mainline", False),
        (["release/*"], "release/1.4", True),
        (["release/*"], "release/1.4/hotfix", True),  # fnmatch: * also matches /
        (["Main"], "main", False),
        ([], "main", False),
    ],
)
def test_matches_auto(patterns: list[str], branch: str, expected: bool) -> None:
    auto = f"auto: {{branches: {json.dumps(patterns)}}}\n" if patterns else ""
    plan = load_plan("steps: [{scope: all}]\n" + auto)
    assert matches_auto(plan, branch) is expected


def test_auto_version_is_a_valid_release_version() -> None:
    plan = load_plan("steps: [{scope: all}]\n")
    assert auto_version(plan, "main", 42) == "main-42"
    assert auto_version(plan, "feature/Ünïcode x", 7) == "feature-n-code-x-7"
    assert auto_version(plan, "/", 7) == "branch-7"
    custom = load_plan("steps: [{scope: all}]\nversion: 'v1.{build}+{branch}'\n")
    assert auto_version(custom, "release/2", 9) == "v1.9+release-2"
    assert len(auto_version(plan, "b" * 300, 1)) == 128


def test_auto_version_refuses_what_a_template_cannot_make_valid() -> None:
    plan = Plan({}, load_plan("steps: [{scope: all}]\n").steps, version_template="{build} x")
    with pytest.raises(InvalidRequest):
        auto_version(plan, "main", 1)
