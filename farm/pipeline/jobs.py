"""One job's keywords (after ``extends`` and ``default:``) checked and turned into a draft.

A :class:`JobDraft` holds a :class:`JobSpec` template with every static keyword, plus
what is decided per expanded copy: variables, rules, ``only``/``except``, ``parallel``
and ``needs``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from farm.domain.specs import JobSpec, RetrySpec
from farm.pipeline import keywords as kw
from farm.pipeline.artifacts import parse_artifacts, parse_cache
from farm.pipeline.checks import (
    Diags,
    as_bool,
    as_choice,
    as_str,
    as_str_list,
    flatten,
    parse_duration,
)
from farm.pipeline.conditions import RefFilter, Rule, parse_ref_filter, parse_rules
from farm.pipeline.expressions import compile_regex
from farm.pipeline.extends import inherit_choice
from farm.pipeline.limits import Budget
from farm.pipeline.variables import Var, parse_variables
from farm.pipeline.yamlsrc import Pos, YMap

SUPPORTED = (
    "script", "before_script", "after_script", "image", "services", "stage", "variables",
    "needs", "dependencies", "parallel", "rules", "only", "except", "when", "start_in",
    "allow_failure", "retry", "timeout", "tags", "interruptible", "resource_group",
    "environment", "coverage", "artifacts", "cache", "extends", "inherit",
)  # fmt: skip
# Accepted and ignored with a lint warning: the job still runs as GitLab would run it on a
# runner without the feature (docs/GITLAB_COMPAT.md).
IGNORED = {
    "pages": "farm publishes no GitLab Pages site; the job runs and keeps its artifacts",
    "publish": "farm publishes no GitLab Pages site; the job runs and keeps its artifacts",
    "release": "farm creates no GitLab release; the job runs its script",
    "secrets": "farm reads no external secret manager; these variables stay unset "
    "(use farm's project secrets)",
    "id_tokens": "farm issues no OIDC ID tokens; these variables stay unset",
    "hooks": "jobs start from a source snapshot, not a git fetch, so "
    "hooks:pre_get_sources_script never runs",
    "dast_configuration": "DAST site and scanner profiles exist only on GitLab",
    "identity": "cloud identity federation exists only on GitLab",
    "manual_confirmation": "farm starts manual jobs without a confirmation message",
}
# Refused with file:line:col: the job cannot run as written here.
REFUSED = {
    "trigger": "downstream and child pipelines cannot be started by farm",
    "run": "CI/CD steps are not run by farm; use script:",
    "inputs": "job inputs are not supported by farm",
    "types": "types was removed from GitLab CI; use stages",
}
JOB_WHEN = ("on_success", "on_failure", "always", "never", "manual", "delayed")
MAX_NAME = 255
WEEK = 7 * 24 * 3600


@dataclass
class JobDraft:
    """A job before expansion and rules: a template spec plus what varies per copy."""

    name: str
    pos: Pos
    spec: JobSpec
    variables: dict[str, Var]
    inherit_variables: bool | frozenset[str]
    needs: list[kw.NeedRef] | None
    needs_pos: Pos
    dependencies: list[str] | None
    dependencies_pos: Pos
    rules: list[Rule] | None
    only: RefFilter | None
    except_: RefFilter | None
    parallel: int | kw.Matrix | None
    parallel_pos: Pos
    job_when: str  # as written at job level (the default for rules without when)
    when_explicit: bool
    allow_failure_explicit: bool


def _unsupported(d: Diags, job: YMap, name: str) -> None:
    for key in job:
        if key in SUPPORTED:
            continue
        if key in IGNORED:
            d.warn(job.at(key), f"{key} is ignored (job '{name}'): {IGNORED[key]}")
            continue
        if key in REFUSED:
            d.add(job.at(key), f"{key} is not supported by farm (job '{name}'): {REFUSED[key]}")
            continue
        close = difflib.get_close_matches(key, SUPPORTED, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        d.add(
            job.at(key),
            f"{key} is not supported by farm: it is not a job keyword (job '{name}'){hint}",
        )


def _docker_notes(d: Diags, job: YMap, image: kw.ImageForm | None) -> None:
    """Image options the executor checks rather than applies are noted once per job."""
    if image is not None and image.docker is not None and image.docker.platform:
        d.warn(
            job.at("image"),
            f"image:docker:platform {image.docker.platform} is not pulled: the local image "
            "must already be of that platform (the worker checks it)",
        )


def build_draft(d: Diags, name: str, job: YMap, budget: Budget | None = None) -> JobDraft | None:
    """Check every keyword of ``job``; None when it cannot become a job at all.

    ``budget`` counts its script lines against the pipeline's limits.
    """
    pos = job.pos
    if len(name) > MAX_NAME:
        d.add(pos, f"job name '{name[:40]}...' is longer than {MAX_NAME} characters")
    if not name.strip():
        d.add(pos, "job names cannot be blank")
    _unsupported(d, job, name)
    if "script" not in job:
        if "trigger" in job:
            return None  # already reported: trigger jobs (downstream pipelines) are unsupported
        d.add(pos, f"job '{name}' has no script; add script: with the commands to run")
        return None

    def get(key: str, default: Any = None) -> Any:
        return job.get(key, default)

    def at(key: str) -> Pos:
        return job.at(key)

    script = kw.parse_script(d, job["script"], at("script"), f"{name}: script", budget)
    if script is not None and not any(line.strip() for line in script):
        d.add(at("script"), f"job '{name}' has an empty script")
    before = (
        kw.parse_script(d, get("before_script", []), at("before_script"), "before_script", budget)
        or ()
    )
    after = (
        kw.parse_script(d, get("after_script", []), at("after_script"), "after_script", budget)
        or ()
    )
    stage = as_str(d, get("stage", "test"), at("stage"), "stage") or "test"
    image = kw.parse_image(d, job["image"], at("image")) if get("image") is not None else None
    _docker_notes(d, job, image)

    when = as_choice(d, get("when", "on_success"), at("when"), "when", JOB_WHEN) or "on_success"
    start_in = None
    if "start_in" in job:
        start_in = parse_duration(job["start_in"])
        if start_in is None or start_in > WEEK:
            d.add(
                at("start_in"),
                f"start_in {job['start_in']!r} must be a duration up to 1 week, like '30 minutes'",
            )
        if when != "delayed" and not job.get("rules"):
            d.add(at("start_in"), "start_in can only be used with when: delayed")
    elif when == "delayed":
        d.add(at("when"), "when: delayed needs start_in, like start_in: 30 minutes")

    allow = when == "manual"
    exit_codes: tuple[int, ...] = ()
    if "allow_failure" in job:
        allow, exit_codes = kw.parse_allow_failure(d, job["allow_failure"], at("allow_failure"))

    timeout = None
    if "timeout" in job:
        timeout = parse_duration(job["timeout"])
        if not timeout:
            d.add(
                at("timeout"),
                f"timeout {job['timeout']!r} is not a duration like '1h 30m' or '3600'",
            )
            timeout = None

    coverage = None
    if "coverage" in job:
        coverage = as_str(d, job["coverage"], at("coverage"), "coverage")
        if coverage is not None:
            try:
                compile_regex(coverage)
            except ValueError as exc:
                d.add(at("coverage"), f"coverage must be a /regex/: {exc}")

    spec = JobSpec(
        name=name,
        stage=stage,
        script=script or (),
        image=image.name if image else None,
        image_entrypoint=image.entrypoint if image else None,
        image_docker=image.docker if image else None,
        image_pull_policy=image.pull_policy if image else (),
        before_script=before,
        after_script=after,
        when="on_success" if when == "never" else when,  # type: ignore[arg-type]
        start_in=start_in,
        allow_failure=allow,
        allow_failure_exit_codes=exit_codes,
        timeout=timeout,
        retry=kw.parse_retry(d, job["retry"], at("retry")) if "retry" in job else RetrySpec(),
        tags=tuple(
            as_str_list(d, flatten(d, get("tags", []), at("tags"), "tags"), at("tags"), "tags")
            or ()
        ),
        interruptible=bool(
            as_bool(d, get("interruptible", False), at("interruptible"), "interruptible")
        ),
        resource_group=as_str(d, job["resource_group"], at("resource_group"), "resource_group")
        if "resource_group" in job
        else None,
        environment=kw.parse_environment(d, job["environment"], at("environment"))
        if "environment" in job
        else None,
        coverage=coverage,
        artifacts=parse_artifacts(d, job["artifacts"], at("artifacts"))
        if get("artifacts") is not None
        else None,
        cache=parse_cache(d, get("cache"), at("cache")),
        services=kw.parse_services(d, job["services"], at("services"), budget)
        if get("services") is not None
        else (),
        line=pos[1],
    )

    rules = None
    if "rules" in job:
        rules = parse_rules(d, job["rules"], at("rules"), budget=budget)
        for rule in rules:
            if rule.needs is not None:
                rule.needs = kw.parse_needs(d, rule.needs, rule.needs_pos or pos, budget)
        for key in ("only", "except"):
            if key in job:
                d.add(at(key), f"job '{name}' uses both rules and {key}; use rules only")
    only = parse_ref_filter(d, job["only"], at("only"), "only") if "only" in job else None
    except_ = (
        parse_ref_filter(d, job["except"], at("except"), "except") if "except" in job else None
    )

    needs = kw.parse_needs(d, job["needs"], at("needs"), budget) if "needs" in job else None
    deps = None
    if "dependencies" in job:
        raw_deps = flatten(d, job["dependencies"], at("dependencies"), "dependencies", budget)
        deps = as_str_list(d, raw_deps, at("dependencies"), "dependencies")
    parallel = kw.parse_parallel(d, job["parallel"], at("parallel")) if "parallel" in job else None
    return JobDraft(
        name=name,
        pos=pos,
        spec=spec,
        variables=parse_variables(d, get("variables"), at("variables"), f"{name}: variables"),
        inherit_variables=inherit_choice(d, job, "variables"),
        needs=needs,
        needs_pos=at("needs"),
        dependencies=deps,
        dependencies_pos=at("dependencies"),
        rules=rules,
        only=only,
        except_=except_,
        parallel=parallel,
        parallel_pos=at("parallel"),
        job_when=when,
        when_explicit="when" in job,
        allow_failure_explicit="allow_failure" in job,
    )
