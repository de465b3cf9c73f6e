"""When a job (or the whole pipeline) is created: ``rules``, ``only``/``except``, ``workflow``.

Rules are parsed once per job and matched per expanded copy: the first rule whose ``if``,
``changes`` and ``exists`` all hold wins; no match (or ``when: never``) excludes the job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from farm.domain.specs import PipelineContext
from farm.pipeline.checks import (
    Diags,
    as_bool,
    as_choice,
    as_str,
    as_str_list,
    flatten,
    glob_match,
    parse_duration,
    unknown_keys,
)
from farm.pipeline.expressions import Eval, ExprError, Lookup, compile_expression, compile_regex
from farm.pipeline.limits import Budget
from farm.pipeline.variables import Var, expand_text, parse_variables
from farm.pipeline.yamlsrc import Pos, YList, YMap, type_name

RULE_WHEN = ("on_success", "on_failure", "always", "never", "manual", "delayed")
_JOB_RULE_KEYS = (
    "if",
    "changes",
    "exists",
    "when",
    "allow_failure",
    "variables",
    "needs",
    "start_in",
    "interruptible",
)
_WORKFLOW_RULE_KEYS = ("if", "changes", "exists", "when", "variables", "auto_cancel")
_REF_KEYWORDS = {
    "api": "api",
    "external": "external",
    "pipelines": "pipeline",
    "pushes": "push",
    "schedules": "schedule",
    "triggers": "trigger",
    "web": "web",
    "merge_requests": "merge_request_event",
    "external_pull_requests": "external_pull_request_event",
    "chat": "chat",
}


@dataclass
class Rule:
    """One parsed entry of ``rules:``."""

    pos: Pos
    condition: Eval | None = None
    changes: list[str] | None = None
    exists: list[str] | None = None
    when: str | None = None
    allow_failure: bool | None = None
    variables: dict[str, Var] = field(default_factory=dict)
    needs: Any = None  # raw needs, parsed by the job builder
    needs_pos: Pos | None = None
    start_in: int | None = None
    interruptible: bool | None = None


def _paths(d: Diags, value: Any, pos: Pos, what: str) -> list[str] | None:
    if isinstance(value, YMap):
        allowed = ("paths", "compare_to") if what == "changes" else ("paths", "project", "ref")
        unknown_keys(d, value, allowed, f"rules:{what}")
        if "project" in value:
            d.add(
                value.at("project"),
                f"rules:{what}:project is not supported by farm (no access to other projects)",
            )
        return as_str_list(d, value.get("paths"), value.at("paths"), f"rules:{what}:paths")
    return as_str_list(d, value, pos, f"rules:{what}")


def _condition(d: Diags, value: Any, pos: Pos) -> Eval | None:
    text = as_str(d, value, pos, "rules:if")
    if text is None:
        return None
    try:
        return compile_expression(text)
    except ExprError as exc:
        d.add(pos, f"invalid rules:if expression {text!r}: {exc} (at character {exc.offset + 1})")
        return None


def parse_rules(
    d: Diags, value: Any, pos: Pos, workflow: bool = False, budget: Budget | None = None
) -> list[Rule]:
    """``rules:`` of a job (or of ``workflow:``); ``!reference`` lists are flattened."""
    what = "workflow:rules" if workflow else "rules"
    value = flatten(d, value, pos, what, budget)
    if not isinstance(value, list):
        d.add(pos, f"{what} must be a list of rules (- if: ...), not {type_name(value)}")
        return []
    rules: list[Rule] = []
    for i, item in enumerate(value):
        rpos = value.at(i) if isinstance(value, YList) else pos
        if not isinstance(item, YMap):
            d.add(
                rpos,
                f"each entry of {what} must be a mapping like '- if: ...', not {type_name(item)}",
            )
            continue
        rules.append(_parse_rule(d, item, what, workflow))
    return rules


def _parse_rule(d: Diags, item: YMap, what: str, workflow: bool) -> Rule:
    unknown_keys(d, item, _WORKFLOW_RULE_KEYS if workflow else _JOB_RULE_KEYS, f"a {what} entry")
    rule = Rule(item.pos)
    if "if" in item:
        rule.condition = _condition(d, item["if"], item.at("if"))
    if "changes" in item:
        rule.changes = _paths(d, item["changes"], item.at("changes"), "changes") or []
    if "exists" in item:
        rule.exists = _paths(d, item["exists"], item.at("exists"), "exists") or []
    if "when" in item:
        choices = ("always", "never") if workflow else RULE_WHEN
        rule.when = as_choice(d, item["when"], item.at("when"), f"{what}:when", choices)
    if "allow_failure" in item:
        rule.allow_failure = as_bool(
            d, item["allow_failure"], item.at("allow_failure"), "rules:allow_failure"
        )
    if "variables" in item:
        rule.variables = parse_variables(
            d, item["variables"], item.at("variables"), f"{what}:variables"
        )
    if "needs" in item:
        rule.needs, rule.needs_pos = item["needs"], item.at("needs")
    if "interruptible" in item:
        rule.interruptible = as_bool(
            d, item["interruptible"], item.at("interruptible"), "rules:interruptible"
        )
    if "start_in" in item:
        rule.start_in = parse_duration(item["start_in"])
        if rule.start_in is None:
            d.add(
                item.at("start_in"),
                f"rules:start_in {item['start_in']!r} is not a duration like '30 minutes'",
            )
    if rule.when == "delayed" and "start_in" not in item:
        d.add(item.pos, "rules with when: delayed need start_in, like start_in: 30 minutes")
    return rule


def _any_glob(patterns: list[str], paths: tuple[str, ...], env: Lookup, limit: int) -> bool:
    for pattern in patterns:
        expanded = expand_text(pattern, env, limit)
        if any(glob_match(expanded, p) for p in paths):
            return True
    return False


def rule_matches(rule: Rule, env: Lookup, ctx: PipelineContext) -> bool:
    """Whether every clause of ``rule`` holds."""
    if rule.condition is not None and not rule.condition(env):
        return False
    if (
        rule.changes is not None
        and ctx.changed is not None
        and not _any_glob(rule.changes, ctx.changed, env, ctx.limits.max_job_bytes)
    ):
        return False
    return not (
        rule.exists is not None
        and not _any_glob(rule.exists, ctx.files, env, ctx.limits.max_job_bytes)
    )


def first_match(rules: list[Rule], env: Lookup, ctx: PipelineContext) -> Rule | None:
    for rule in rules:
        if rule_matches(rule, env, ctx):
            return rule
    return None


@dataclass
class RefFilter:
    """One ``only:`` or ``except:`` in its simple forms."""

    refs: list[str] = field(default_factory=list)
    conditions: list[Eval] = field(default_factory=list)
    changes: list[str] | None = None


def parse_ref_filter(d: Diags, value: Any, pos: Pos, what: str) -> RefFilter | None:
    """``only``/``except``: a list of refs, or ``{refs, variables, changes}``."""
    if isinstance(value, YMap):
        unknown_keys(d, value, ("refs", "variables", "changes", "kubernetes"), what)
        if "kubernetes" in value:
            d.add(value.at("kubernetes"), f"{what}:kubernetes is not supported by farm")
        flt = RefFilter()
        if "refs" in value:
            flt.refs = (
                as_str_list(d, value["refs"], value.at("refs"), f"{what}:refs", single=True) or []
            )
        if "variables" in value:
            exprs = as_str_list(
                d, value["variables"], value.at("variables"), f"{what}:variables", single=True
            )
            for text in exprs or []:
                cond = _condition(d, text, value.at("variables"))
                if cond is not None:
                    flt.conditions.append(cond)
        if "changes" in value:
            flt.changes = _paths(d, value["changes"], value.at("changes"), "changes") or []
        return flt
    refs = as_str_list(d, value, pos, what, single=True)
    if refs is None:
        return None
    for ref in refs:
        if ref.startswith("/"):
            try:
                compile_regex(ref)
            except ValueError as exc:
                d.add(pos, f"{what}: {exc}")
    return RefFilter(refs=refs)


def _ref_matches(ref: str, env: Lookup) -> bool:
    source = env("CI_PIPELINE_SOURCE") or "push"
    if ref == "branches":
        return env("CI_COMMIT_TAG") is None
    if ref == "tags":
        return env("CI_COMMIT_TAG") is not None
    if ref in _REF_KEYWORDS:
        return source == _REF_KEYWORDS[ref]
    name = env("CI_COMMIT_REF_NAME") or ""
    if ref.startswith("/"):
        try:
            return compile_regex(ref).search(name) is not None
        except ValueError:
            return False
    if "@" in ref:
        ref, project = ref.split("@", 1)
        path = env("CI_PROJECT_PATH")
        if path is not None and path != project:
            return False
    return ref == name


def filter_matches(flt: RefFilter, env: Lookup, ctx: PipelineContext) -> bool:
    """Whether ``flt`` (every given part) holds for this commit."""
    if flt.refs and not any(_ref_matches(r, env) for r in flt.refs):
        return False
    if flt.conditions and not any(c(env) for c in flt.conditions):
        return False
    return not (
        flt.changes is not None
        and ctx.changed is not None
        and not _any_glob(flt.changes, ctx.changed, env, ctx.limits.max_job_bytes)
    )
