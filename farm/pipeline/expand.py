"""From drafts to concrete jobs: ``parallel``/``matrix`` copies, variables, rules.

``parallel: N`` makes ``job 1/N`` … ``job N/N``; ``parallel: matrix`` makes one copy per
combination, named ``job: [v1, v2]`` with values in the order of the matrix keys. Each copy
gets its variables (inherited globals, job, matrix, ``CI_NODE_*``, then the matching
rule's), is matched against ``rules`` / ``only`` / ``except`` and has ``$VAR`` references
expanded in its image, services, environment, cache and resource group.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass

from farm.domain.specs import CacheSpec, EnvironmentSpec, JobSpec, PipelineContext
from farm.pipeline.checks import Diags
from farm.pipeline.conditions import filter_matches, first_match
from farm.pipeline.expressions import Lookup
from farm.pipeline.jobs import JobDraft
from farm.pipeline.keywords import MAX_MATRIX, NeedRef
from farm.pipeline.limits import Budget, LimitExceeded
from farm.pipeline.variables import Var, expand_text, lookup_in, resolve


@dataclass(frozen=True)
class Copy:
    """One expanded copy of a job, before rules."""

    name: str
    matrix: tuple[tuple[str, str], ...] = ()
    node_index: int | None = None
    node_total: int | None = None


@dataclass
class Concrete:
    """A copy that rules kept: its final spec and the needs it asks for."""

    spec: JobSpec
    group: str
    needs: list[NeedRef] | None


def copies(d: Diags, draft: JobDraft, budget: Budget | None = None) -> list[Copy]:
    """The copies ``parallel`` makes of ``draft`` (counted before any is made)."""
    par = draft.parallel
    if par is None:
        if budget is not None:
            budget.add_copies(1, draft.pos)
        return [Copy(draft.name)]
    if isinstance(par, int):
        if budget is not None:
            budget.add_copies(par, draft.parallel_pos)
        return [Copy(f"{draft.name} {i}/{par}", (), i, par) for i in range(1, par + 1)]
    # count the combinations before making them: a few keys of many values multiply
    count = sum(math.prod(len(values) for values in row.values()) for row in par)
    if count > MAX_MATRIX:
        d.add(
            draft.parallel_pos,
            f"parallel:matrix of '{draft.name}' makes {count:,} jobs; at most {MAX_MATRIX}",
        )
        return []
    if budget is not None:
        budget.add_copies(count, draft.parallel_pos)
    combos: list[tuple[tuple[str, str], ...]] = []
    for row in par:
        keys = list(row)
        for values in itertools.product(*(row[k] for k in keys)):
            combos.append(tuple(zip(keys, values, strict=True)))
    total = len(combos)
    return [
        Copy(f"{draft.name}: [{', '.join(v for _, v in combo)}]", combo, i, total)
        for i, combo in enumerate(combos, start=1)
    ]


def inherited(global_vars: Mapping[str, Var], choice: bool | frozenset[str]) -> dict[str, Var]:
    if choice is True:
        return dict(global_vars)
    if choice is False:
        return {}
    return {k: v for k, v in global_vars.items() if k in choice}


def _expand_spec(spec: JobSpec, env: Lookup, limit: int | None = None) -> JobSpec:
    """``spec`` with ``$VAR`` references expanded where GitLab expands them."""
    changes: dict[str, object] = {}
    if spec.image and "$" in spec.image:
        changes["image"] = expand_text(spec.image, env, limit)
    if spec.resource_group and "$" in spec.resource_group:
        changes["resource_group"] = expand_text(spec.resource_group, env, limit)
    e = spec.environment
    if e is not None and "$" in f"{e.name}{e.url}":
        url = expand_text(e.url, env, limit) if e.url else None
        changes["environment"] = EnvironmentSpec(
            expand_text(e.name, env, limit), url, e.action, e.deployment_tier
        )
    if any("$" in s.name or any("$" in a for a in s.alias) for s in spec.services):
        changes["services"] = tuple(
            dataclasses.replace(
                s,
                name=expand_text(s.name, env, limit),
                alias=tuple(expand_text(a, env, limit) for a in s.alias),
            )
            for s in spec.services
        )
    if any("$" in c.key or "$" in c.policy or any("$" in p for p in c.paths) for c in spec.cache):
        caches = []
        for c in spec.cache:
            policy = expand_text(c.policy, env, limit)
            caches.append(
                dataclasses.replace(
                    c,
                    key=expand_text(c.key, env, limit),
                    paths=tuple(expand_text(p, env, limit) for p in c.paths),
                    policy="pull"
                    if policy == "pull"
                    else "push"
                    if policy == "push"
                    else "pull-push",
                )
            )
        changes["cache"] = tuple[CacheSpec, ...](caches)
    a = spec.artifacts
    if a is not None and a.name and "$" in a.name:
        changes["artifacts"] = dataclasses.replace(a, name=expand_text(a.name, env, limit))
    return dataclasses.replace(spec, **changes) if changes else spec  # type: ignore[arg-type]


def concretize(
    draft: JobDraft, copy: Copy, global_vars: Mapping[str, Var], ctx: PipelineContext
) -> Concrete | None:
    """The job ``copy`` of ``draft`` as it runs for this commit; None if excluded.

    A variable or value that expands past ``ctx.limits.max_job_bytes`` raises
    ``LimitExceeded`` placed at the job.
    """
    try:
        return _concretize(draft, copy, global_vars, ctx)
    except LimitExceeded as exc:
        raise exc.located(draft.pos, f"job '{copy.name[:100]}': ") from None


def _concretize(
    draft: JobDraft, copy: Copy, global_vars: Mapping[str, Var], ctx: PipelineContext
) -> Concrete | None:
    limit = ctx.limits.max_job_bytes
    raw = inherited(global_vars, draft.inherit_variables)
    raw.update(draft.variables)
    for key, value in copy.matrix:
        raw[key] = Var(value, expand=False)
    if copy.node_index is not None:
        raw["CI_NODE_INDEX"] = Var(str(copy.node_index), expand=False)
        raw["CI_NODE_TOTAL"] = Var(str(copy.node_total), expand=False)
    base = ctx.variables
    env = resolve(raw, base, limit)
    lookup = lookup_in(env, base)
    spec = draft.spec
    when = draft.job_when
    needs = draft.needs
    allow_failure = spec.allow_failure
    changes: dict[str, object] = {}
    if draft.rules is not None:
        rule = first_match(draft.rules, lookup, ctx)
        if rule is None:
            return None
        if rule.when is not None:
            when = rule.when
            if not draft.allow_failure_explicit:
                allow_failure = False  # GitLab: manual by rules blocks unless allow_failure
        if rule.allow_failure is not None:
            allow_failure = rule.allow_failure
        if rule.start_in is not None:
            changes["start_in"] = rule.start_in
        if rule.interruptible is not None:
            changes["interruptible"] = rule.interruptible
        if rule.needs is not None:
            needs = rule.needs
        if rule.variables:
            raw.update(rule.variables)
            env = resolve(raw, base, limit)
            lookup = lookup_in(env, base)
    else:
        if draft.only is not None and not filter_matches(draft.only, lookup, ctx):
            return None
        if draft.except_ is not None and filter_matches(draft.except_, lookup, ctx):
            return None
    if when == "never":
        return None
    spec = dataclasses.replace(
        spec,
        name=copy.name,
        variables=env,
        when=when,  # type: ignore[arg-type]
        allow_failure=allow_failure,
        node_index=copy.node_index,
        node_total=copy.node_total,
        matrix=dict(copy.matrix),
        **changes,  # type: ignore[arg-type]
    )
    return Concrete(_expand_spec(spec, lookup, limit), draft.name, needs)
