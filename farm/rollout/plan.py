"""``load_plan``: ``.farm/rollout.yml`` text in, validated :class:`Plan` out.

Every problem is collected with its ``file:line:col`` and the caller gets one
:class:`~farm.errors.PlanError` listing all of them, like pipeline files. The same reader
validates dicts (:meth:`Plan.from_dict`, used for plans stored in the database), which
then carry no positions (line 0).

Rules, in short: ``scopes`` maps names to non-empty CIDR lists (strict: host bits set is
an error; duplicates inside one scope are merged; ``all`` is built in); no CIDR may be in
two scopes, including by nesting; ``steps`` lists each scope at most once and ``all`` only
last. Input is bounded (4 MiB of text, 100,000 CIDRs) because plans may be generated from
GeoIP data and are parsed inside the API process.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from typing import Any

from farm.domain.releases import VERSION_RE
from farm.errors import Diagnostic, InvalidRequest, PlanError
from farm.pipeline.yamlsrc import Pos, SourceProblem, YMap, parse_yaml, type_name
from farm.rollout.model import Plan, render_template
from farm.rollout.planread import MAX_CIDRS, MAX_PLAN_BYTES, TOP_KEYS, Reader

__all__ = [
    "MAX_CIDRS",
    "MAX_PLAN_BYTES",
    "auto_version",
    "load_plan",
    "matches_auto",
    "plan_from_value",
]

_UNSAFE_VERSION_CHARS = re.compile(r"[^A-Za-z0-9._+-]+")


def plan_from_value(doc: Any, filename: str) -> Plan:
    """Validate an already parsed plan document (a YAML tree or a plain dict)."""
    root: Pos = doc.pos if isinstance(doc, YMap) else (filename, 0, 0)
    if doc is None:
        raise PlanError(Diagnostic(filename, 1, 1, "the rollout plan is empty; it needs steps:"))
    if not isinstance(doc, Mapping):
        msg = f"a rollout plan must be a mapping with scopes: and steps:, not {type_name(doc)}"
        raise PlanError(Diagnostic(root[0], root[1], root[2], msg))
    r = Reader(root)
    r.unknown(doc, TOP_KEYS, "the rollout plan")
    scopes = r.scopes(doc.get("scopes"), r.at(doc, "scopes", root))
    steps = r.steps(doc.get("steps"), r.at(doc, "steps", root), scopes)
    deploy_job = doc.get("deploy_job")
    if deploy_job is not None:
        deploy_job = r.string(deploy_job, r.at(doc, "deploy_job", root), "deploy_job")
    branches = r.auto(doc.get("auto"), r.at(doc, "auto", root))
    version = r.version(doc.get("version"), r.at(doc, "version", root))
    if r.diags:
        # file order; sort is stable, so unpositioned (dict) problems keep reading order
        unique = dict.fromkeys(r.diags)
        raise PlanError(sorted(unique, key=lambda d: (d.line, d.col)))
    return Plan(scopes, tuple(steps), deploy_job, branches, version)


def load_plan(text: str, filename: str = ".farm/rollout.yml") -> Plan:
    """Parse and validate a rollout plan; raises :class:`PlanError` listing every problem."""
    size = len(text.encode("utf-8", "surrogatepass")) if len(text) * 4 > MAX_PLAN_BYTES else 0
    if len(text) > MAX_PLAN_BYTES or size > MAX_PLAN_BYTES:
        mib = MAX_PLAN_BYTES // (1024 * 1024)
        msg = f"the rollout plan is larger than {mib} MiB; use fewer, broader networks"
        raise PlanError(Diagnostic(filename, 1, 1, msg))
    try:
        doc = parse_yaml(text, filename)
    except SourceProblem as exc:
        message = exc.message.replace("a pipeline file", "a rollout plan")
        raise PlanError(Diagnostic(exc.pos[0], exc.pos[1], exc.pos[2], message)) from None
    return plan_from_value(doc, filename)


def matches_auto(plan: Plan, branch: str) -> bool:
    """Whether a green build of ``branch`` is released and rolled out automatically.

    Patterns use :func:`fnmatch.fnmatchcase` (``*`` also matches ``/``; case-sensitive).
    """
    return any(fnmatch.fnmatchcase(branch, pattern) for pattern in plan.auto_branches)


def auto_version(plan: Plan, branch: str, build_id: int) -> str:
    """The version of an automatic release of build ``build_id`` of ``branch``.

    The branch is made version-safe first: runs of characters outside ``[A-Za-z0-9._+-]``
    become ``-`` (``feature/x`` → ``feature-x``), so the result is a valid release version.
    """
    safe_branch = _UNSAFE_VERSION_CHARS.sub("-", branch).strip("-._+") or "branch"
    version = render_template(
        plan.version_template, {"branch": safe_branch, "build": str(build_id)}
    )
    version = version.lstrip("-._+")[:128]
    if not VERSION_RE.fullmatch(version):
        raise InvalidRequest(
            f"version template {plan.version_template!r} gives {version!r}, not a valid version"
        )
    return version
