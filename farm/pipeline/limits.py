"""What one pipeline may expand to, counted while it loads.

A few hundred bytes of YAML can stand for billions of values: anchors that repeat anchors,
``$VAR`` references that repeat variables, ``parallel: matrix`` products, ``extends`` and
``include`` merges. A :class:`Budget` carries the :class:`PipelineLimits` of one load and
counts each of these as it happens, so the loader stops at the first value over a limit,
long before it has built (let alone stored) the expansion. The error names the limit and
the ``FARM_PIPELINE_*`` setting that raises it.

Sizes of job specs are the exact length of the JSON the coordinator stores
(``json.dumps(spec.to_dict())``), computed without building that JSON.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, NoReturn

from farm.domain.specs import JobSpec, Pipeline, PipelineLimits
from farm.errors import Diagnostic, PipelineError

Pos = tuple[str, int, int]  # as yamlsrc.Pos: file, line, col; 1-based

# parallel copies a pipeline may evaluate (rules may drop most of them), per job it may keep
COPIES_PER_JOB = 10
# keys extends/default/include merges may copy, per YAML node the pipeline may have
MERGED_PER_NODE = 2

_encode = json.encoder.encode_basestring_ascii  # as json.dumps writes strings (C if there)


class LimitExceeded(Exception):
    """A pipeline expands to more than one of its limits; ``pos`` None when not yet known."""

    def __init__(self, pos: Pos | None, message: str) -> None:
        super().__init__(message)
        self.pos = pos
        self.message = message

    def located(self, pos: Pos, prefix: str = "") -> LimitExceeded:
        """This problem placed at ``pos`` (and prefixed) unless it already has a place."""
        if self.pos is not None:
            return self
        return LimitExceeded(pos, prefix + self.message)


def setting(name: str) -> str:
    """The environment variable behind the :class:`PipelineLimits` field ``name``."""
    return f"FARM_PIPELINE_{name.upper()}"


def show_bytes(n: int) -> str:
    """``n`` bytes as people write it: 16 MiB, 512 KiB, 1,000 bytes."""
    if n >= 1024**2 and n % 1024**2 == 0:
        return f"{n // 1024**2:,} MiB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024:,} KiB"
    return f"{n:,} bytes"


def check_text(n: int, limit: int | None) -> None:
    """Refuse a variable or expanded value of ``n`` characters when over ``limit``.

    No position is known here; the caller places the problem (:meth:`LimitExceeded.located`).
    """
    if limit is not None and n > limit:
        raise LimitExceeded(
            None,
            f"a value expands to more than {show_bytes(limit)} once its $VARIABLES are "
            f"substituted ({setting('max_job_bytes')})",
        )


class Budget:
    """The running counts of one pipeline load against its limits.

    Every ``add_*`` method raises :class:`LimitExceeded` as soon as a count passes its limit.
    """

    def __init__(self, limits: PipelineLimits | None = None) -> None:
        self.limits = limits if limits is not None else PipelineLimits()
        self.aliases = 0
        self.nodes = 0
        self.merged = 0
        self.flattened = 0
        self.interpolated = 0
        self.script_lines = 0
        self.copies = 0
        self.jobs = 0
        self.source_bytes = 0
        self.draft_bytes = 0
        self.spec_bytes = 0
        self._sizes: dict[int, tuple[object, int]] = {}  # id -> (kept alive, JSON size)
        self._drafts: dict[int, tuple[JobSpec, int]] = {}

    @staticmethod
    def _over(pos: Pos | None, what: str, field: str, hint: str = "") -> NoReturn:
        raise LimitExceeded(pos, f"{what} ({setting(field)}){hint}")

    def add_aliases(self, n: int, pos: Pos) -> None:
        self.aliases += n
        if self.aliases > self.limits.max_aliases:
            self._over(
                pos,
                f"the pipeline follows more than {self.limits.max_aliases:,} YAML aliases",
                "max_aliases",
                "; anchors that repeat anchors multiply: reuse with extends: or !reference",
            )

    def add_nodes(self, n: int, pos: Pos) -> None:
        self.nodes += n
        if self.nodes > self.limits.max_nodes:
            self._over(
                pos,
                f"the pipeline expands to more than {self.limits.max_nodes:,} YAML nodes "
                "once aliases are followed",
                "max_nodes",
            )

    def add_merged(self, n: int, pos: Pos) -> None:
        """Keys copied by ``extends``, ``default:`` and ``include`` merges."""
        self.merged += n
        most = self.limits.max_nodes * MERGED_PER_NODE
        if self.merged > most:
            self._over(
                pos,
                f"extends, default and include merges copy more than {most:,} keys, "
                f"{MERGED_PER_NODE} per YAML node the pipeline may have",
                "max_nodes",
            )

    def add_flattened(self, n: int, pos: Pos) -> None:
        """List items spliced in by flattening ``!reference`` lists (shared lists repeat)."""
        self.flattened += n
        most = self.limits.max_nodes * MERGED_PER_NODE
        if self.flattened > most:
            self._over(
                pos,
                f"!reference lists flatten to more than {most:,} items, "
                f"{MERGED_PER_NODE} per YAML node the pipeline may have",
                "max_nodes",
            )

    def add_interpolated(self, n: int, pos: Pos) -> None:
        """Characters written by ``$[[ inputs.NAME ]]`` interpolation, all files together."""
        self.interpolated += n
        if self.interpolated > self.limits.max_bytes:
            self._over(
                pos,
                "$[[ inputs ]] interpolation writes more than "
                f"{show_bytes(self.limits.max_bytes)} of text",
                "max_bytes",
            )

    def add_source(self, n: int, pos: Pos) -> None:
        """Characters of YAML read (the pipeline file and every included file)."""
        self.source_bytes += n
        if self.source_bytes > self.limits.max_bytes:
            self._over(
                pos,
                f"the pipeline's YAML files hold more than {show_bytes(self.limits.max_bytes)}",
                "max_bytes",
            )

    def add_script_lines(self, n: int, pos: Pos) -> None:
        self.script_lines += n
        if self.script_lines > self.limits.max_script_lines:
            self._over(
                pos,
                f"the pipeline expands to more than {self.limits.max_script_lines:,} script lines",
                "max_script_lines",
            )

    def add_copies(self, n: int, pos: Pos) -> None:
        """Jobs and ``parallel`` copies about to be evaluated (before rules drop any)."""
        self.copies += n
        most = self.limits.max_jobs * COPIES_PER_JOB
        if self.copies > most:
            self._over(
                pos,
                f"the pipeline defines more than {most:,} jobs (parallel copies included) "
                f"before rules are applied, {COPIES_PER_JOB} times its limit of "
                f"{self.limits.max_jobs:,} jobs",
                "max_jobs",
            )

    def add_job(self, pos: Pos) -> None:
        """One job the pipeline keeps (rules included it)."""
        self.jobs += 1
        if self.jobs > self.limits.max_jobs:
            self._over(
                pos,
                f"the pipeline expands to more than {self.limits.max_jobs:,} jobs",
                "max_jobs",
            )

    def _job_size(self, spec: JobSpec, pos: Pos) -> int:
        size = self.size(spec)
        self._check_job(spec, size, pos)
        return size

    def _check_job(self, spec: JobSpec, size: int, pos: Pos) -> None:
        if size > self.limits.max_job_bytes:
            self._over(
                pos,
                f"job '{spec.name[:100]}' expands to more than "
                f"{show_bytes(self.limits.max_job_bytes)} of job spec ({size:,} bytes)",
                "max_job_bytes",
            )

    def _total(self, total: int, pos: Pos) -> None:
        if total > self.limits.max_bytes:
            self._over(
                pos,
                f"the pipeline's jobs expand to more than {show_bytes(self.limits.max_bytes)} "
                "of job specs",
                "max_bytes",
            )

    def add_draft(self, spec: JobSpec, pos: Pos) -> None:
        """A job as expanded before ``needs`` are linked (one per copy rules kept)."""
        size = self._job_size(spec, pos)
        self._drafts[id(spec)] = (spec, size)
        self.draft_bytes += size
        self._total(self.draft_bytes, pos)

    def add_spec(self, spec: JobSpec, pos: Pos, draft: JobSpec | None = None) -> None:
        """A final job spec, exactly as it will be stored; ``draft`` is the spec given to
        :meth:`add_draft` that ``spec`` differs from only in ``needs`` and ``dependencies``."""
        known = self._drafts.get(id(draft)) if draft is not None else None
        if known is None or draft is None:
            size = self._job_size(spec, pos)
        else:
            size = known[1] - self.size(draft.needs) - self.size(draft.dependencies)
            size += self.size(spec.needs) + self.size(spec.dependencies)
            self._check_job(spec, size, pos)
        self.spec_bytes += size
        self._total(self.spec_bytes, pos)

    def size(self, value: Any) -> int:
        """Length of ``json.dumps(value)`` (dataclasses as ``dataclasses.asdict`` has them)."""
        return _json_size(value, self._sizes)


_FIELDS: dict[type, tuple[tuple[str, int], ...]] = {}  # dataclass -> (field, JSON key length)


def _fields(kind: type) -> tuple[tuple[str, int], ...] | None:
    found = _FIELDS.get(kind)
    if found is None:
        if not dataclasses.is_dataclass(kind):
            return None
        found = _FIELDS[kind] = tuple(
            (f.name, len(_encode(f.name)) + 2) for f in dataclasses.fields(kind)
        )
    return found


def _json_size(value: Any, memo: dict[int, tuple[object, int]]) -> int:
    kind = type(value)
    if kind is str:
        return len(_encode(value))
    if value is None or kind is bool:
        return 5 if value is False else 4
    if kind is int:
        return len(int.__repr__(value))
    if kind is dict:
        if not value:
            return 2
        body = sum(len(_encode(str(k))) + 2 + _json_size(v, memo) for k, v in value.items())
        return body + 2 * len(value)
    if kind is tuple or kind is list:
        # tuples (and the frozen dataclasses below) are shared between parallel copies and
        # needs: each is sized once
        hit = memo.get(id(value))
        if hit is not None:
            return hit[1]
        size = sum(_json_size(v, memo) for v in value) + 2 * len(value) if value else 2
        if kind is tuple:
            memo[id(value)] = (value, size)
        return size
    fields = _fields(kind)
    if fields is None:
        return len(json.dumps(value))
    hit = memo.get(id(value))
    if hit is not None:
        return hit[1]
    if not fields:
        return 2
    size = 2 * len(fields)
    for name, n in fields:
        field = getattr(value, name)
        if field is None or field is True:  # most fields of a job: inline the common cases
            size += n + 4
        elif field is False:
            size += n + 5
        elif type(field) is str:
            size += n + len(_encode(field))
        else:
            size += n + _json_size(field, memo)
    if kind is not JobSpec:
        memo[id(value)] = (value, size)
    return size


def check_stored_size(pipeline: Pipeline, limits: PipelineLimits, filename: str) -> None:
    """Raise :class:`PipelineError` if ``pipeline``'s job specs would store more bytes than
    ``limits`` allow (one job, or all of them together)."""
    budget = Budget(limits)
    for job in pipeline.jobs:
        pos = (filename, job.line, 1)
        try:
            budget.add_spec(job, pos)
        except LimitExceeded as exc:
            raise PipelineError([Diagnostic(filename, job.line, 1, exc.message)]) from None
