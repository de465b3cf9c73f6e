"""The content-addressed key of a job's result, and which jobs may reuse one.

A job whose key equals the key of an earlier successful job is not run again: that
job's recorded result, log and artifacts are reused (``farm.coordinator.result_cache``).
The key is the sha256 of everything the job's container can see or be told:

- the job's spec (image name *and tag*, entrypoint, scripts, variables, services,
  artifacts/cache rules, timeout, tags, ...) minus keys that change nothing inside the
  container (``line``, ``retry``, ``allow_failure``, ``interruptible``, ``start_in``);
- the build's project, repository, ref, commit, pipeline source and submitted variables
  (the predefined CI_* variables are made of these);
- the digest of the commit's source snapshot;
- every upstream artifact the job receives: (job, name, kind, digest).

Per-run identifiers (``CI_JOB_ID``, ``CI_PIPELINE_ID``, ``CI_JOB_ATTEMPT``, the worker's
name) are left out, or no key would ever repeat: a job that writes them into its
outputs should opt out. The image is keyed by name and tag, not by the image's digest
(only a worker's dockerd knows that): a tag re-pointed to other bytes is not noticed,
so a job on a moving tag (``:latest`` rebuilt in place) should opt out as well.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from farm.domain.specs import JobSpec

VERSION = "farm.result/v1"
OPT_OUT_VARIABLE = "FARM_CACHE_RESULT"  # "false" (job or build variable): never reuse
_FALSE = {"false", "0", "no", "off"}
_NOT_BEHAVIOUR = frozenset(
    {
        *("line", "retry", "allow_failure", "allow_failure_exit_codes", "interruptible"),
        *("start_in", "when", "needs", "dependencies"),
    }
)


def opted_out(variables: Mapping[str, str]) -> bool:
    """``FARM_CACHE_RESULT=false`` (also what ``farm submit --no-cache`` sets)."""
    return variables.get(OPT_OUT_VARIABLE, "").strip().lower() in _FALSE


def never_cached(
    spec: JobSpec,
    *,
    build_variables: Mapping[str, str],
    has_secrets: bool,
    child_build: bool,
) -> str | None:
    """Why this job's result is never reused (None: it may be)."""
    if spec.when == "manual":
        return "manual job"
    if spec.environment is not None or child_build:
        return "deploy job"
    if spec.resource_group:
        return "resource group"
    if has_secrets:
        return "secrets"
    if opted_out(spec.variables) or opted_out(build_variables):
        return "opted out"
    return None


def result_key(
    spec: JobSpec,
    *,
    project: str,
    repo: str,
    ref: str,
    commit: str,
    source: str,
    build_variables: Mapping[str, str],
    snapshot_digest: str,
    inputs: Iterable[tuple[str, str, str, str]],
) -> str:
    """``sha256:…`` of the job's inputs; ``inputs``: (job, name, kind, digest) each."""
    shown: dict[str, Any] = {k: v for k, v in spec.to_dict().items() if k not in _NOT_BEHAVIOUR}
    body = {
        "v": VERSION,
        "spec": shown,
        "build": [project, repo, ref, commit, source],
        "variables": dict(build_variables),
        "snapshot": snapshot_digest,
        "inputs": sorted(list(i) for i in inputs),
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
