"""The ``cache`` and ``artifacts`` keywords: what a job keeps between runs and hands on."""

from __future__ import annotations

from typing import Any

from farm.domain.specs import ArtifactSpec, CacheSpec
from farm.pipeline.checks import (
    Diags,
    as_bool,
    as_choice,
    as_str,
    as_str_list,
    parse_duration,
    unknown_keys,
)
from farm.pipeline.yamlsrc import Pos, YList, YMap, type_name

WHEN_RESULT = ("on_success", "on_failure", "always")
REPORT_TYPES = (
    "accessibility", "annotations", "api_fuzzing", "browser_performance", "coverage_report",
    "codequality", "container_scanning", "coverage_fuzzing", "cyclonedx", "dast",
    "dependency_scanning", "dotenv", "junit", "license_scanning", "load_performance",
    "metrics", "performance", "requirements", "requirements_v2", "sast", "secret_detection",
    "terraform",
)  # fmt: skip


def _ipos(value: Any, i: int, pos: Pos) -> Pos:
    return value.at(i) if isinstance(value, YList) else pos


def _cache(d: Diags, value: Any, pos: Pos) -> CacheSpec | None:
    if not isinstance(value, YMap):
        d.add(
            pos,
            f"cache must be a mapping (key, paths, ...) or a list of them, not {type_name(value)}",
        )
        return None
    unknown_keys(
        d,
        value,
        ("key", "paths", "untracked", "policy", "when", "fallback_keys", "unprotect"),
        "cache",
    )
    key, prefix = "default", None
    files: tuple[str, ...] = ()
    raw_key = value.get("key")
    if isinstance(raw_key, YMap):
        unknown_keys(d, raw_key, ("files", "prefix"), "cache:key")
        got = as_str_list(d, raw_key.get("files"), raw_key.at("files"), "cache:key:files")
        if got is not None and not 1 <= len(got) <= 2:
            d.add(raw_key.at("files"), "cache:key:files must list one or two files")
        files = tuple(got or ())
        if "prefix" in raw_key:
            prefix = as_str(d, raw_key["prefix"], raw_key.at("prefix"), "cache:key:prefix")
    elif raw_key is not None:
        key = as_str(d, raw_key, value.at("key"), "cache:key") or "default"
        if "/" in key or key in (".", "..") or "%2f" in key.lower():
            d.add(value.at("key"), f"cache:key {key!r} cannot contain '/' or be '.' or '..'")
    paths = as_str_list(d, value.get("paths", []), value.at("paths"), "cache:paths") or []
    untracked = (
        as_bool(d, value.get("untracked", False), value.at("untracked"), "cache:untracked") or False
    )
    policy: Any = value.get("policy", "pull-push")
    if not (isinstance(policy, str) and "$" in policy):
        policy = as_choice(
            d, policy, value.at("policy"), "cache:policy", ("pull", "push", "pull-push")
        )
    when: Any = as_choice(
        d, value.get("when", "on_success"), value.at("when"), "cache:when", WHEN_RESULT
    )
    fallback = (
        as_str_list(
            d, value.get("fallback_keys", []), value.at("fallback_keys"), "cache:fallback_keys"
        )
        or []
    )
    if len(fallback) > 5:
        d.add(value.at("fallback_keys"), "cache:fallback_keys may list at most 5 keys")
    if "unprotect" in value:
        as_bool(d, value["unprotect"], value.at("unprotect"), "cache:unprotect")
    return CacheSpec(
        key,
        files,
        prefix,
        tuple(paths),
        untracked,
        policy or "pull-push",
        when or "on_success",
        tuple(fallback),
    )


def parse_cache(d: Diags, value: Any, pos: Pos) -> tuple[CacheSpec, ...]:
    """``cache``: one mapping or a list of up to four."""
    if value is None or (isinstance(value, dict | list) and not value):
        return ()
    items = list(value) if isinstance(value, list) else [value]
    if len(items) > 4:
        d.add(pos, "a job may use at most 4 caches")
    found = (_cache(d, item, _ipos(value, i, pos)) for i, item in enumerate(items))
    return tuple(c for c in found if c is not None)


def parse_artifacts(d: Diags, value: Any, pos: Pos) -> ArtifactSpec | None:
    if not isinstance(value, YMap):
        d.add(pos, f"artifacts must be a mapping (paths, expire_in, ...), not {type_name(value)}")
        return None
    allowed = (
        "paths",
        "exclude",
        "untracked",
        "when",
        "expire_in",
        "name",
        "reports",
        "expose_as",
        "public",
        "access",
    )
    unknown_keys(d, value, allowed, "artifacts")
    paths = as_str_list(d, value.get("paths", []), value.at("paths"), "artifacts:paths") or []
    exclude = (
        as_str_list(d, value.get("exclude", []), value.at("exclude"), "artifacts:exclude") or []
    )
    untracked = (
        as_bool(d, value.get("untracked", False), value.at("untracked"), "artifacts:untracked")
        or False
    )
    when: Any = as_choice(
        d, value.get("when", "on_success"), value.at("when"), "artifacts:when", WHEN_RESULT
    )
    expire_in = None
    raw_expire = value.get("expire_in")
    if raw_expire is not None and raw_expire != "never":
        expire_in = parse_duration(raw_expire)
        if expire_in is None:
            d.add(
                value.at("expire_in"),
                f"artifacts:expire_in {raw_expire!r} is not a duration like '1 week' or 'never'",
            )
    name = as_str(d, value["name"], value.at("name"), "artifacts:name") if "name" in value else None
    dotenv: list[str] = []
    junit: list[str] = []
    reports = value.get("reports")
    if reports is not None:
        if not isinstance(reports, YMap):
            d.add(
                value.at("reports"),
                f"artifacts:reports must be a mapping of report types, not {type_name(reports)}",
            )
        else:
            for kind in reports:
                if kind not in REPORT_TYPES:
                    d.add(
                        reports.at(kind),
                        f"unknown artifacts:reports type '{kind}'; allowed: "
                        f"{', '.join(REPORT_TYPES)}",
                    )
            if "dotenv" in reports:
                dotenv = (
                    as_str_list(
                        d, reports["dotenv"], reports.at("dotenv"), "artifacts:reports:dotenv", True
                    )
                    or []
                )
            if "junit" in reports:
                junit = (
                    as_str_list(
                        d, reports["junit"], reports.at("junit"), "artifacts:reports:junit", True
                    )
                    or []
                )
    return ArtifactSpec(
        tuple(paths),
        tuple(exclude),
        untracked,
        when or "on_success",
        expire_in,
        name,
        tuple(dotenv),
        junit=tuple(junit),
    )
