"""``load_pipeline``: text in, validated and expanded :class:`Pipeline` out.

Steps: parse YAML → merge includes → resolve ``!reference`` → stages, global variables,
``workflow`` → per job ``extends`` + ``default`` → keyword checks → ``parallel``/matrix
copies → rules → needs and cycles. Every problem is collected; the caller gets one
:class:`PipelineError` listing all of them. The exception is a pipeline that expands past
``context.limits`` (:mod:`farm.pipeline.limits`): loading stops at once and the error names
the limit and the setting that raises it.
"""

from __future__ import annotations

from typing import Any

from farm.domain.specs import DEFAULT_STAGES, Notice, Pipeline, PipelineContext
from farm.errors import Diagnostic, PipelineError, PipelineFilteredOut
from farm.pipeline.checks import Diags, as_str, as_str_list, unknown_keys
from farm.pipeline.conditions import first_match, parse_rules
from farm.pipeline.dag import link
from farm.pipeline.expand import Concrete, concretize, copies
from farm.pipeline.extends import Extender, apply_default, parse_default, resolve_references
from farm.pipeline.include import apply_includes
from farm.pipeline.inputs import bind, interpolate, parse_header
from farm.pipeline.jobs import JobDraft, build_draft
from farm.pipeline.limits import Budget, LimitExceeded
from farm.pipeline.variables import Var, lookup_in, parse_variables, resolve
from farm.pipeline.yamlsrc import Pos, SourceProblem, YMap, parse_config, type_name

RESERVED = frozenset(
    {
        "stages",
        "variables",
        "include",
        "workflow",
        "default",
        "image",
        "services",
        "cache",
        "before_script",
        "after_script",
        "types",
        "spec",
    }
)


def _diag(pos: Pos, message: str) -> Diagnostic:
    return Diagnostic(pos[0], pos[1], pos[2], message)


def _stages(d: Diags, config: YMap) -> tuple[str, ...]:
    if "types" in config:
        d.add(config.at("types"), "types is not supported by farm; use stages")
    if config.get("stages") is None:
        return DEFAULT_STAGES
    names = as_str_list(d, config["stages"], config.at("stages"), "stages") or []
    user = [s for s in dict.fromkeys(names) if s not in (".pre", ".post")]
    if not user:
        return DEFAULT_STAGES
    return (".pre", *user, ".post")


def _workflow(
    d: Diags, config: YMap, global_vars: dict[str, Var], ctx: PipelineContext
) -> str | None:
    """Apply ``workflow:``; returns why the pipeline is filtered out, or None."""
    value = config.get("workflow")
    if value is None:
        return None
    if not isinstance(value, YMap):
        d.add(
            config.at("workflow"), f"workflow must be a mapping with rules:, not {type_name(value)}"
        )
        return None
    unknown_keys(d, value, ("rules", "name", "auto_cancel"), "workflow")
    if "name" in value:
        as_str(d, value["name"], value.at("name"), "workflow:name")
    if "rules" not in value:
        return None
    rules = parse_rules(d, value["rules"], value.at("rules"), workflow=True)
    env = lookup_in(resolve(global_vars, ctx.variables, ctx.limits.max_job_bytes), ctx.variables)
    rule = first_match(rules, env, ctx)
    if rule is None:
        return "no workflow:rules entry matches this commit"
    if rule.when == "never":
        return f"workflow:rules (line {rule.pos[1]}) say when: never for this commit"
    global_vars.update(rule.variables)
    return None


def _check_stage(d: Diags, draft: JobDraft, job: YMap, stages: tuple[str, ...]) -> None:
    _check_stage_of(d, draft.name, draft.spec.stage, job, stages)


def _check_stage_of(d: Diags, name: str, stage: Any, job: YMap, stages: tuple[str, ...]) -> None:
    # Also run for a job that could not be drafted (no script, ...): lint reports every
    # problem of every kind in one run, not a wrong stage only once the script is fixed.
    if isinstance(stage, str) and stage not in stages:
        listed = ", ".join(stages)
        d.add(
            job.at("stage"),
            f"job '{name}' uses stage '{stage}', which is not declared; stages "
            f"are: {listed} "
            "(add it to stages:)",
        )


def _load(text: str, filename: str, ctx: PipelineContext) -> Pipeline:
    d = Diags()
    budget = Budget(ctx.limits)
    try:
        return _expand(d, text, filename, ctx, budget)
    except LimitExceeded as exc:
        # Stop at the first limit: going on would spend what the limit protects. Only this
        # problem is reported; the others found so far may follow from the cut-off.
        raise PipelineError([_diag(exc.pos or (filename, 1, 1), exc.message)]) from None


def _expand(d: Diags, text: str, filename: str, ctx: PipelineContext, budget: Budget) -> Pipeline:
    try:
        header, config = parse_config(text, filename, budget)
    except SourceProblem as exc:
        raise PipelineError([_diag(exc.pos, exc.message)]) from None
    if header is not None:
        # Pipeline inputs: a push pipeline gets every input's default.
        spec = parse_header(d, header)
        values = bind(d, spec, None, spec.pos, filename, pipeline=True)
        if values is None:
            raise PipelineError(d.sorted())
        config = interpolate(d, config, spec, values, lookup_in(ctx.variables), budget)
    if config is None:
        raise PipelineError(
            [Diagnostic(filename, 1, 1, "the pipeline file is empty; define a job with script:")]
        )
    if not isinstance(config, YMap):
        msg = f"a pipeline file must be a mapping of jobs and keywords, not {type_name(config)}"
        raise PipelineError([Diagnostic(filename, 1, 1, msg)])
    config = apply_includes(d, config, filename, ctx, lookup_in(ctx.variables), budget)
    config = resolve_references(d, config)
    if "spec" in config:
        d.add(
            config.at("spec"),
            "spec: belongs in a header document of its own, followed by a --- line",
        )
    stages = _stages(d, config)
    global_vars = parse_variables(d, config.get("variables"), config.at("variables"), "variables")
    filtered = _workflow(d, config, global_vars, ctx)
    default = parse_default(d, config)
    extender = Extender(d, config, RESERVED, budget)

    defined: dict[str, Pos] = {
        name: config.at(name)
        for name, value in config.items()
        if not (name in RESERVED or name.startswith(".")) and isinstance(value, YMap)
    }
    # One job at a time: draft, copies, rules; a draft is dropped once its copies exist,
    # and every count (copies, kept jobs, their bytes) is checked as it grows.
    drafted = False
    kept: list[Concrete] = []
    owners: dict[str, str] = {}
    deps: dict[str, tuple[list[str] | None, Pos]] = {}
    for name, value in config.items():
        if name in RESERVED or name.startswith("."):
            continue
        pos = config.at(name)
        if not isinstance(value, YMap):
            d.add(pos, f"job '{name}' must be a mapping with script:, not {type_name(value)}")
            continue
        job = apply_default(d, extender.resolve(name), default, budget)
        draft = build_draft(d, name, job, budget)
        if draft is None:
            _check_stage_of(d, name, job.get("stage", "test"), job, stages)
            continue
        drafted = True
        _check_stage(d, draft, job, stages)
        deps[draft.name] = (draft.dependencies, draft.dependencies_pos)
        for copy in copies(d, draft, budget):
            other = owners.get(copy.name)
            if other is None and copy.name != draft.name and copy.name in defined:
                other = copy.name
            if other is not None:
                d.add(
                    draft.pos,
                    f"job name '{copy.name}' is defined twice: by job '{other}' and by job "
                    f"'{draft.name}'",
                )
                continue
            owners[copy.name] = draft.name
            defined.setdefault(copy.name, draft.pos)
            concrete = concretize(draft, copy, global_vars, ctx)
            if concrete is not None:
                budget.add_job(draft.pos)
                budget.add_draft(concrete.spec, draft.pos)
                kept.append(concrete)

    specs = link(d, kept, defined, stages, deps, budget)
    if d.items:
        raise PipelineError(d.sorted())
    if filtered is not None:
        raise PipelineFilteredOut(
            [_diag(config.at("workflow"), f"no pipeline is created: {filtered}")]
        )
    if not specs:
        if drafted:
            msg = "no pipeline is created: rules, only or except exclude every job for this commit"
            raise PipelineFilteredOut([Diagnostic(filename, 1, 1, msg)])
        raise PipelineError(
            [Diagnostic(filename, 1, 1, "the pipeline defines no jobs; add a job with script:")]
        )
    variables = resolve(global_vars, ctx.variables, ctx.limits.max_job_bytes)
    order = sorted(d.warnings, key=lambda w: (w.file != filename, w.file, w.line, w.col))
    notices = tuple(Notice(w.file, w.line, w.col, w.message) for w in order)
    return Pipeline(stages=stages, jobs=tuple(specs), variables=variables, warnings=notices)


def load_pipeline(
    text: str, filename: str = ".gitlab-ci.yml", context: PipelineContext | None = None
) -> Pipeline:
    """Load, validate and expand a pipeline; raises :class:`PipelineError` listing every problem.

    ``PipelineFilteredOut`` (a ``PipelineError``) means the file is valid but creates no
    pipeline for this commit (``workflow:rules``, or rules excluding every job).
    """
    ctx = context if context is not None else PipelineContext()
    try:
        return _load(text, filename, ctx)
    except PipelineError:
        raise
    except RecursionError:
        raise PipelineError(
            [Diagnostic(filename, 1, 1, "the configuration is nested too deeply")]
        ) from None
    except Exception as exc:  # a loader bug must still reach the user as a diagnostic
        msg = f"internal error while loading the pipeline ({type(exc).__name__}: {exc}); "
        msg += "please report it"
        raise PipelineError([Diagnostic(filename, 1, 1, msg)]) from exc


def lint(
    text: str, filename: str = ".gitlab-ci.yml", context: PipelineContext | None = None
) -> list[Diagnostic]:
    """Every problem in the pipeline file; empty when it is valid (even if filtered out)."""
    try:
        load_pipeline(text, filename, context)
    except PipelineFilteredOut:
        return []
    except PipelineError as exc:
        return list(exc.diagnostics)
    return []
