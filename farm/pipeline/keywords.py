"""Parsers for the structured job keywords: script, image, services, retry, environment,
allow_failure, parallel and needs (cache and artifacts live in ``artifacts.py``).

Each takes the raw YAML value and its position, records problems in ``Diags`` and returns
the model value (or ``None`` when unusable).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from farm.domain.specs import DockerOptions, EnvironmentSpec, RetrySpec, ServiceSpec
from farm.pipeline.checks import (
    Diags,
    as_bool,
    as_choice,
    as_int,
    as_str,
    as_str_list,
    flatten,
    unknown_keys,
)
from farm.pipeline.limits import Budget
from farm.pipeline.variables import parse_variables
from farm.pipeline.yamlsrc import Pos, YList, YMap, type_name

RETRY_WHEN = (
    "always",
    "unknown_failure",
    "script_failure",
    "api_failure",
    "stuck_or_timeout_failure",
    "runner_system_failure",
    "runner_unsupported",
    "stale_schedule",
    "job_execution_timeout",
    "archived_failure",
    "unmet_prerequisites",
    "scheduler_failure",
    "data_integrity_failure",
)
MAX_MATRIX = 200
_LISTED = 10  # lines of one script reported one by one; the rest are counted


def _ipos(value: Any, i: int, pos: Pos) -> Pos:
    return value.at(i) if isinstance(value, YList) else pos


def parse_script(
    d: Diags, value: Any, pos: Pos, what: str, budget: Budget | None = None
) -> tuple[str, ...] | None:
    """A string or a list of strings; nested lists (from ``!reference``) are flattened.

    ``budget`` counts every line as it is flattened (anchors and references can nest a
    list many times over), so an oversized script is refused before it is built.
    """
    count = budget.add_script_lines if budget is not None else None
    if isinstance(value, str):
        if count is not None:
            count(1, pos)
        return (value,)
    if not isinstance(value, list):
        d.add(pos, f"{what} must be a string or a list of strings, not {type_name(value)}")
        return None
    lines: list[str] = []
    bad: list[tuple[Pos, Any]] = []  # the first lines that are not strings
    others = 0  # and how many more

    def add(items: list[Any], ipos: Pos, depth: int) -> None:
        nonlocal others
        for i, item in enumerate(items):
            if isinstance(item, list) and depth < 10:
                add(item, _ipos(items, i, ipos), depth + 1)
                continue
            if count is not None:
                count(1, _ipos(items, i, ipos))  # bad lines too: the budget bounds the walk
            if isinstance(item, str | int | float) and not isinstance(item, bool):
                lines.append(str(item))
            elif len(bad) < _LISTED:
                bad.append((_ipos(items, i, ipos), item))
            else:
                others += 1

    add(value, pos, 0)
    if not bad:
        return tuple(lines)
    for n, (at, item) in enumerate(bad, start=1):
        more = f" (and {others:,} more lines like it)" if others and n == len(bad) else ""
        d.add(at, f"each line of {what} must be a string, not {type_name(item)}{more}")
    return None


PULL_POLICIES = ("always", "if-not-present", "never")


@dataclass(frozen=True)
class ImageForm:
    """``image:`` in its long form: what the job's container is started from, and how."""

    name: str
    entrypoint: tuple[str, ...] | None = None
    docker: DockerOptions | None = None
    pull_policy: tuple[str, ...] = ()


def _docker(d: Diags, value: Any, pos: Pos, what: str) -> DockerOptions | None:
    """``docker: {platform, user}`` of an image or a service."""
    if not isinstance(value, YMap):
        d.add(pos, f"{what} must be a mapping with platform: and/or user:, not {type_name(value)}")
        return None
    unknown_keys(d, value, ("platform", "user"), what)
    platform = user = None
    if value.get("platform") is not None:
        platform = as_str(d, value["platform"], value.at("platform"), f"{what}:platform")
    if value.get("user") is not None:
        user = as_str(d, value["user"], value.at("user"), f"{what}:user")
    return DockerOptions(platform, user) if platform or user else None


def _pull_policy(d: Diags, value: Any, pos: Pos, what: str) -> tuple[str, ...]:
    """``pull_policy``: one policy or a list; ``always`` cannot pull here (a warning)."""
    policies = as_str_list(d, value, pos, what, single=True) or []
    for policy in policies:
        if policy not in PULL_POLICIES:
            d.add(pos, f"{what} '{policy}' is unknown; allowed: {', '.join(PULL_POLICIES)}")
    if "always" in policies:
        d.warn(pos, f"{what}: always is ignored: no registry is reachable, the local image is used")
    return tuple(policies)


def _command(d: Diags, value: YMap, key: str, what: str) -> tuple[str, ...] | None:
    if key not in value:
        return None
    found = as_str_list(d, value[key], value.at(key), f"{what}:{key}", single=True)
    return tuple(found) if found is not None else None


def parse_image(d: Diags, value: Any, pos: Pos) -> ImageForm | None:
    """``image``: a name, or ``{name, entrypoint, docker: {platform, user}, pull_policy}``."""
    if isinstance(value, YMap):
        unknown_keys(d, value, ("name", "entrypoint", "pull_policy", "docker"), "image")
        name = as_str(d, value.get("name"), value.at("name"), "image:name")
        docker = (
            _docker(d, value["docker"], value.at("docker"), "image:docker")
            if value.get("docker") is not None
            else None
        )
        policy = (
            _pull_policy(d, value["pull_policy"], value.at("pull_policy"), "image:pull_policy")
            if "pull_policy" in value
            else ()
        )
        entry = _command(d, value, "entrypoint", "image")
        return ImageForm(name, entry, docker, policy) if name else None
    name = as_str(d, value, pos, "image")
    return ImageForm(name) if name else None


def _service(d: Diags, value: Any, pos: Pos) -> ServiceSpec | None:
    if not isinstance(value, YMap):
        name = as_str(d, value, pos, "each service")
        return ServiceSpec(name=name) if name else None
    unknown_keys(
        d,
        value,
        ("name", "alias", "entrypoint", "command", "variables", "pull_policy", "docker"),
        "services",
    )
    name = as_str(d, value.get("name"), value.at("name"), "services:name")
    alias_text = (
        as_str(d, value["alias"], value.at("alias"), "services:alias") if "alias" in value else ""
    )
    aliases = tuple(a for a in re.split(r"[,\s]+", alias_text or "") if a)
    raw_vars = parse_variables(
        d, value.get("variables"), value.at("variables"), "services:variables"
    )
    docker = (
        _docker(d, value["docker"], value.at("docker"), "services:docker")
        if value.get("docker") is not None
        else None
    )
    policy = (
        _pull_policy(d, value["pull_policy"], value.at("pull_policy"), "services:pull_policy")
        if "pull_policy" in value
        else ()
    )
    return (
        ServiceSpec(
            name,
            aliases,
            _command(d, value, "entrypoint", "services"),
            _command(d, value, "command", "services"),
            {k: v.value for k, v in raw_vars.items()},
            docker,
            policy,
        )
        if name
        else None
    )


def parse_services(
    d: Diags, value: Any, pos: Pos, budget: Budget | None = None
) -> tuple[ServiceSpec, ...]:
    """``services``: images (or long forms); lists nested by ``!reference`` are flattened."""
    value = flatten(d, value, pos, "services", budget)
    if not isinstance(value, list):
        d.add(pos, f"services must be a list of images, not {type_name(value)}")
        return ()
    found = (_service(d, item, _ipos(value, i, pos)) for i, item in enumerate(value))
    return tuple(s for s in found if s is not None)


def _exit_codes(d: Diags, value: Any, pos: Pos, what: str) -> tuple[int, ...]:
    items = value if isinstance(value, list) else [value]
    codes = [as_int(d, c, _ipos(value, i, pos), what, 0, 255) for i, c in enumerate(items)]
    return tuple(c for c in codes if c is not None)


def parse_retry(d: Diags, value: Any, pos: Pos) -> RetrySpec:
    if not isinstance(value, YMap):
        return RetrySpec(max=as_int(d, value, pos, "retry", 0, 2) or 0)
    unknown_keys(d, value, ("max", "when", "exit_codes"), "retry")
    top = as_int(d, value.get("max", 0), value.at("max"), "retry:max", 0, 2) or 0
    when = as_str_list(
        d, value.get("when", ["always"]), value.at("when"), "retry:when", single=True
    ) or ["always"]
    for w in when:
        if w not in RETRY_WHEN:
            d.add(
                value.at("when"), f"retry:when '{w}' is unknown; allowed: {', '.join(RETRY_WHEN)}"
            )
    codes = (
        _exit_codes(d, value["exit_codes"], value.at("exit_codes"), "retry:exit_codes")
        if "exit_codes" in value
        else ()
    )
    return RetrySpec(top, tuple(when), codes)


def parse_allow_failure(d: Diags, value: Any, pos: Pos) -> tuple[bool, tuple[int, ...]]:
    if isinstance(value, YMap):
        unknown_keys(d, value, ("exit_codes",), "allow_failure")
        return False, _exit_codes(
            d, value.get("exit_codes"), value.at("exit_codes"), "allow_failure:exit_codes"
        )
    return bool(as_bool(d, value, pos, "allow_failure")), ()


def parse_environment(d: Diags, value: Any, pos: Pos) -> EnvironmentSpec | None:
    if not isinstance(value, YMap):
        name = as_str(d, value, pos, "environment")
        return EnvironmentSpec(name) if name else None
    allowed = ("name", "url", "action", "deployment_tier", "on_stop", "auto_stop_in", "kubernetes")
    unknown_keys(d, value, allowed, "environment")
    if "kubernetes" in value:
        d.warn(value.at("kubernetes"), "environment:kubernetes is ignored: farm deploys nothing")
    name = as_str(d, value.get("name"), value.at("name"), "environment:name")
    url = as_str(d, value["url"], value.at("url"), "environment:url") if "url" in value else None
    actions = ("start", "prepare", "stop", "verify", "access")
    action = as_choice(
        d, value.get("action", "start"), value.at("action"), "environment:action", actions
    )
    tier = None
    if "deployment_tier" in value:
        tiers = ("production", "staging", "testing", "development", "other")
        tier = as_choice(
            d,
            value["deployment_tier"],
            value.at("deployment_tier"),
            "environment:deployment_tier",
            tiers,
        )
    return EnvironmentSpec(name, url, action or "start", tier) if name else None


Matrix = list[dict[str, list[str]]]


def parse_matrix(d: Diags, value: Any, pos: Pos, what: str) -> Matrix | None:
    """``matrix:``: a list of mappings of NAME: value or NAME: [values]."""
    if not isinstance(value, list) or not value:
        d.add(pos, f"{what} must be a non-empty list of mappings like - PYTHON: ['3.11', '3.12']")
        return None
    result: Matrix = []
    for i, entry in enumerate(value):
        epos = _ipos(value, i, pos)
        if not isinstance(entry, YMap) or not entry:
            d.add(
                epos,
                f"each entry of {what} must be a mapping of NAME: [values], not {type_name(entry)}",
            )
            return None
        row: dict[str, list[str]] = {}
        for key, raw in entry.items():
            values = as_str_list(d, raw, entry.at(key), f"{what}:{key}", single=True)
            if values is None:
                return None
            if not values:
                d.add(entry.at(key), f"{what}:{key} needs at least one value")
                return None
            row[key] = values
        result.append(row)
    return result


def parse_parallel(d: Diags, value: Any, pos: Pos) -> int | Matrix | None:
    if isinstance(value, YMap):
        unknown_keys(d, value, ("matrix",), "parallel")
        return parse_matrix(d, value.get("matrix"), value.at("matrix"), "parallel:matrix")
    return as_int(d, value, pos, "parallel", 1, MAX_MATRIX)


@dataclass(frozen=True)
class NeedRef:
    """One ``needs`` entry as written: a job name, maybe restricted to some matrix copies."""

    job: str
    pos: Pos
    artifacts: bool = True
    optional: bool = False
    matrix: Matrix | None = None


def parse_needs(
    d: Diags, value: Any, pos: Pos, budget: Budget | None = None
) -> list[NeedRef] | None:
    """``needs``: names or ``{job, artifacts, optional, parallel: {matrix}}``, flattened."""
    value = flatten(d, value, pos, "needs", budget)
    if not isinstance(value, list):
        d.add(pos, f"needs must be a list of job names, not {type_name(value)}")
        return None
    result: list[NeedRef] = []
    for i, item in enumerate(value):
        ipos = _ipos(value, i, pos)
        if not isinstance(item, YMap):
            name = as_str(d, item, ipos, "each entry of needs")
            if name is not None:
                result.append(NeedRef(name, ipos))
            continue
        unknown_keys(
            d,
            item,
            ("job", "artifacts", "optional", "parallel", "pipeline", "project", "ref"),
            "needs",
        )
        if "pipeline" in item or "project" in item:
            key = "pipeline" if "pipeline" in item else "project"
            d.add(
                item.at(key),
                f"needs:{key} is not supported by farm (only jobs of this pipeline can be needed)",
            )
            continue
        name = as_str(d, item.get("job"), item.at("job"), "needs:job")
        artifacts = as_bool(d, item.get("artifacts", True), item.at("artifacts"), "needs:artifacts")
        optional = as_bool(d, item.get("optional", False), item.at("optional"), "needs:optional")
        matrix = None
        if "parallel" in item:
            par = item["parallel"]
            if not isinstance(par, YMap) or "matrix" not in par:
                d.add(item.at("parallel"), "needs:parallel must be a mapping with matrix:")
                continue
            matrix = parse_matrix(d, par["matrix"], par.at("matrix"), "needs:parallel:matrix")
        if name is not None:
            result.append(NeedRef(name, ipos, artifacts is not False, optional is True, matrix))
    return result
