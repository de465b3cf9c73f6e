"""Staged rollouts, the pure domain: no I/O happens in this package.

- :mod:`~farm.rollout.plan` reads ``.farm/rollout.yml`` into a :class:`Plan`
  (model in :mod:`~farm.rollout.model`, checks in :mod:`~farm.rollout.planread`);
- :mod:`~farm.rollout.state` is the rollout state machine (events → transitions);
- :mod:`~farm.rollout.resolver` answers which version a client address gets;
- :mod:`~farm.rollout.checks` judges check samples;
- :mod:`~farm.rollout.geoip` turns GeoLite2 country CSVs into scopes;
- :mod:`~farm.rollout.nginx` renders the routing as an nginx ``geo`` block.

The controller that waits, deploys, probes and stores is an edge module built on these.
"""

from farm.rollout.checks import (
    CheckOutcome,
    Sample,
    evaluate,
    evaluate_job,
    render_url,
    summarize,
)
from farm.rollout.geoip import read_geolite, scopes_yaml
from farm.rollout.model import Check, HttpCheck, JobCheck, Plan, Step
from farm.rollout.networks import ALL
from farm.rollout.nginx import geo_block
from farm.rollout.plan import MAX_CIDRS, MAX_PLAN_BYTES, auto_version, load_plan, matches_auto
from farm.rollout.resolver import Resolver, bench
from farm.rollout.state import (
    HistoryEntry,
    RolloutSnapshot,
    RolloutState,
    StepState,
    Transition,
    abort,
    checks_failed,
    live_scopes,
    live_steps,
    new_rollout,
    pause,
    promote,
    resume,
    start,
    step_back,
    step_ready,
)

__all__ = [
    "ALL",
    "MAX_CIDRS",
    "MAX_PLAN_BYTES",
    "Check",
    "CheckOutcome",
    "HistoryEntry",
    "HttpCheck",
    "JobCheck",
    "Plan",
    "Resolver",
    "RolloutSnapshot",
    "RolloutState",
    "Sample",
    "Step",
    "StepState",
    "Transition",
    "abort",
    "auto_version",
    "bench",
    "checks_failed",
    "evaluate",
    "evaluate_job",
    "geo_block",
    "live_scopes",
    "live_steps",
    "load_plan",
    "matches_auto",
    "new_rollout",
    "pause",
    "promote",
    "read_geolite",
    "render_url",
    "resume",
    "scopes_yaml",
    "start",
    "step_back",
    "step_ready",
    "summarize",
]
