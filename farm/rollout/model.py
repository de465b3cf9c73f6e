"""The rollout plan as frozen values, and the two small template languages it uses.

A :class:`Plan` is what ``.farm/rollout.yml`` means once validated (see
:func:`farm.rollout.plan.load_plan`). It is immutable and round-trips through a JSON-able
dict (:meth:`Plan.to_dict`, :meth:`Plan.from_dict`) because the engine
stores the plan a rollout was started with in a database column: a later edit of the
repository's file must not change a rollout already under way.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from farm.rollout.networks import ALL, ALL_CIDRS

Approve = Literal["auto", "manual"]
DEFAULT_VERSION_TEMPLATE = "{branch}-{build}"
URL_FIELDS = ("scope", "version")
VERSION_FIELDS = ("branch", "build")


@dataclass(frozen=True)
class HttpCheck:
    """Probe a URL ``samples`` times, ``interval`` seconds apart, after the step's bake time.

    The check passes when the share of failed samples (no answer, or a status not in
    ``expect_status``) is at most ``max_failure_ratio`` and, when ``max_p95_ms`` is set,
    the 95th percentile latency of the answered samples is at most that.
    """

    url: str  # may hold {scope} and {version}; rendered URL-encoded
    samples: int = 3
    interval: float = 1.0
    timeout: float = 5.0
    expect_status: tuple[int, ...] = (200,)
    max_failure_ratio: float = 0.0
    max_p95_ms: float | None = None

    @property
    def kind(self) -> Literal["http"]:
        return "http"

    def to_dict(self) -> dict[str, Any]:
        """The check as the plan file would write it (every default made explicit)."""
        out: dict[str, Any] = {
            "http": self.url,
            "samples": self.samples,
            "interval": self.interval,
            "timeout": self.timeout,
            "expect_status": list(self.expect_status),
            "max_failure_ratio": self.max_failure_ratio,
        }
        if self.max_p95_ms is not None:
            out["max_p95_ms"] = self.max_p95_ms
        return out


@dataclass(frozen=True)
class JobCheck:
    """Run a pipeline job (of the release's build pipeline) as the check; it passes if green."""

    job: str

    @property
    def kind(self) -> Literal["job"]:
        return "job"

    def to_dict(self) -> dict[str, Any]:
        """The check as the plan file would write it."""
        return {"job": self.job}


Check = HttpCheck | JobCheck


@dataclass(frozen=True)
class Step:
    """One stage of a rollout: make ``scope`` live, wait ``bake`` seconds, run ``checks``.

    ``approve: manual`` means a person must promote the rollout *into* this step.
    """

    scope: str
    bake: float = 0
    approve: Approve = "auto"
    checks: tuple[Check, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The step as the plan file would write it."""
        return {
            "scope": self.scope,
            "bake": self.bake,
            "approve": self.approve,
            "checks": [c.to_dict() for c in self.checks],
        }


@dataclass(frozen=True)
class Plan:
    """A validated rollout plan: named scopes (CIDR lists) and the steps that roll them out.

    ``scopes`` maps each user-defined scope to its normalised, de-duplicated CIDRs
    (compressed notation, first-seen order); the built-in ``all`` is never in it.
    """

    scopes: Mapping[str, tuple[str, ...]]
    steps: tuple[Step, ...]
    deploy_job: str | None = None
    auto_branches: tuple[str, ...] = ()
    version_template: str = DEFAULT_VERSION_TEMPLATE

    def __post_init__(self) -> None:
        # a read-only view, so a shared Plan cannot change behind a running rollout's back
        if not isinstance(self.scopes, MappingProxyType):
            object.__setattr__(self, "scopes", MappingProxyType(dict(self.scopes)))

    @property
    def step_scopes(self) -> list[str]:
        """The scope of each step, in rollout order."""
        return [s.scope for s in self.steps]

    def cidrs_of(self, scope: str) -> tuple[str, ...]:
        """The CIDRs of a scope (``all`` included); KeyError for an unknown name."""
        if scope == ALL:
            return ALL_CIDRS
        return self.scopes[scope]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict in the plan file's own shape; :meth:`from_dict` reads it back."""
        out: dict[str, Any] = {
            "scopes": {name: list(cidrs) for name, cidrs in self.scopes.items()},
            "steps": [s.to_dict() for s in self.steps],
            "version": self.version_template,
        }
        if self.deploy_job is not None:
            out["deploy_job"] = self.deploy_job
        if self.auto_branches:
            out["auto"] = {"branches": list(self.auto_branches)}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], filename: str = "<stored plan>") -> Plan:
        """Read a dict made by :meth:`to_dict` (or any plan-shaped dict), validating it fully.

        Raises :class:`~farm.errors.PlanError` like :func:`~farm.rollout.plan.load_plan`.
        """
        from farm.rollout.plan import plan_from_value  # the reader builds on this module

        return plan_from_value(data, filename)


def template_fields(template: str, allowed: tuple[str, ...]) -> list[str]:
    """The ``{name}`` placeholders of ``template``; ValueError naming what is wrong.

    Only bare names from ``allowed`` are accepted: no format specs, conversions, indexes
    or attributes, so rendering can never run anything but a lookup. ``{{``/``}}`` are
    literal braces.
    """
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"{exc} (write a literal brace as {{{{ or }}}})") from None
    names: list[str] = []
    choices = ", ".join("{" + a + "}" for a in allowed)
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if spec or conversion or name not in allowed:
            shown = "{" + name + (f"!{conversion}" if conversion else "")
            shown += (f":{spec}" if spec else "") + "}"
            raise ValueError(f"unknown placeholder {shown}; allowed: {choices}")
        names.append(name)
    return names


def render_template(template: str, values: Mapping[str, str]) -> str:
    """Substitute ``{name}`` placeholders (already validated by :func:`template_fields`)."""
    parts: list[str] = []
    for literal, name, _spec, _conversion in string.Formatter().parse(template):
        parts.append(literal)
        if name is not None:
            parts.append(values[name])
    return "".join(parts)
