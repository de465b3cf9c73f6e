"""The plan reader: walks a parsed plan document and records every problem with its position.

Used by :func:`farm.rollout.plan.load_plan` (YAML with positions) and
:meth:`farm.rollout.model.Plan.from_dict` (plain dicts, position line 0). Each method returns
what it could read and adds a :class:`~farm.errors.Diagnostic` for the rest, so one run
reports every problem in the file.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from farm.domain.releases import VERSION_RE
from farm.errors import Diagnostic
from farm.pipeline.yamlsrc import Pos, YList, YMap, pos_of, type_name
from farm.rollout.model import (
    DEFAULT_VERSION_TEMPLATE,
    URL_FIELDS,
    VERSION_FIELDS,
    Approve,
    Check,
    HttpCheck,
    JobCheck,
    Step,
    render_template,
    template_fields,
)
from farm.rollout.networks import (
    ALL,
    Network,
    Span,
    find_overlaps,
    overlap_message,
    parse_cidr,
    scope_name_problem,
)

MAX_PLAN_BYTES = 4 * 1024 * 1024
MAX_CIDRS = 100_000
MAX_OVERLAP_REPORTS = 50  # beyond this a GeoIP mix-up is obvious; more lines only drown it
MAX_BAKE_SECONDS = 30 * 86400


TOP_KEYS = ("scopes", "steps", "deploy_job", "auto", "version")
STEP_KEYS = ("scope", "bake", "approve", "checks")
HTTP_KEYS = (
    "http",
    "samples",
    "interval",
    "timeout",
    "expect_status",
    "max_failure_ratio",
    "max_p95_ms",
)
JOB_KEYS = ("job",)
AUTO_KEYS = ("branches",)


def url_problem(url: str) -> str | None:
    """Why an ``http:`` check URL template cannot be used, or None."""
    try:
        template_fields(url, URL_FIELDS)
    except ValueError as exc:
        return f"check URL {url!r}: {exc}"
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return f"check URL {url!r} contains spaces or control characters; percent-encode them"
    parts = urlsplit(render_template(url, {"scope": "s", "version": "v"}))
    if parts.scheme not in ("http", "https"):
        shown = f"{parts.scheme}://" if parts.scheme else "a URL without a scheme"
        return f"check URL {url!r}: only http:// and https:// can be checked, not {shown}"
    try:
        host, _port = parts.hostname, parts.port
    except ValueError:
        return f"check URL {url!r} has an invalid port"
    if not host:
        return f"check URL {url!r} has no host"
    return None


class Reader:
    """Reads one plan document, recording problems instead of stopping at the first."""

    def __init__(self, root: Pos) -> None:
        self.root = root
        self.diags: list[Diagnostic] = []

    def add(self, pos: Pos, message: str) -> None:
        """Record one problem at ``pos``."""
        self.diags.append(Diagnostic(pos[0], pos[1], pos[2], message))

    def at(self, mapping: Mapping[str, Any], key: str, fallback: Pos) -> Pos:
        """Where ``key`` (or its container value) was written."""
        pos = mapping.at(key) if isinstance(mapping, YMap) else fallback
        return pos_of(mapping.get(key), pos)

    def key(self, mapping: Mapping[str, Any], key: str, fallback: Pos) -> Pos:
        """Where ``key`` itself was written."""
        return mapping.at(key) if isinstance(mapping, YMap) else fallback

    def item(self, seq: list[Any] | tuple[Any, ...], index: int, fallback: Pos) -> Pos:
        """Where item ``index`` of a list was written."""
        pos = seq.at(index) if isinstance(seq, YList) else fallback
        return pos_of(seq[index], pos)

    def unknown(self, mapping: Mapping[str, Any], allowed: tuple[str, ...], what: str) -> None:
        """Record every key not in ``allowed``, suggesting the closest allowed one."""
        for key in mapping:
            if str(key) in allowed:
                continue
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else f"allowed: {', '.join(allowed)}"
            pos = mapping.at(str(key)) if isinstance(mapping, YMap) else self.root
            self.add(pos, f"unknown key '{key}' in {what}; {hint}")

    def number(
        self, value: Any, pos: Pos, what: str, low: float, high: float, *, above: bool = False
    ) -> float | None:
        """A finite number in ``[low, high]`` (``(low, high]`` when ``above``)."""
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        in_range = ok and math.isfinite(value) and (value > low if above else value >= low)
        if in_range and value <= high:
            result: float = value  # ints stay ints, so to_dict() gives back what was written
            return result
        lowest = f"above {low:g}" if above else f"from {low:g}"
        highest = f"{int(high)}" if float(high).is_integer() else f"{high:g}"
        self.add(pos, f"{what} must be a number {lowest} to {highest}, not {value!r}")
        return None

    def string(self, value: Any, pos: Pos, what: str) -> str | None:
        """A non-empty, one-line string (stripped)."""
        if isinstance(value, str) and value.strip() and value.isprintable():
            return value.strip()
        self.add(pos, f"{what} must be a non-empty one-line string, not {type_name(value)}")
        return None

    # -- scopes -------------------------------------------------------------------------

    def scopes(self, value: Any, pos: Pos) -> dict[str, tuple[str, ...]]:
        """``scopes:``: names to normalised CIDRs, then the overlap sweep across scopes."""
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.add(pos, f"scopes must map scope names to CIDR lists, not {type_name(value)}")
            return {}
        out: dict[str, tuple[str, ...]] = {}
        spans: list[Span] = []
        budget = MAX_CIDRS
        for raw_name, cidrs in value.items():
            name = str(raw_name)
            npos = self.at(value, name, pos)
            if name == ALL:
                msg = "scope 'all' is built in (0.0.0.0/0 and ::/0); do not define it"
                self.add(self.key(value, name, pos), msg)
                continue
            problem = scope_name_problem(name)
            if problem:
                self.add(self.key(value, name, pos), problem)
                continue
            if not isinstance(cidrs, list | tuple) or not cidrs:
                self.add(
                    npos, f"scope '{name}' needs a non-empty list of CIDRs, like [198.51.100.0/24]"
                )
                out[name] = ()
                continue
            nets: dict[Network, None] = {}  # ordered set: duplicates merge silently
            for i, text in enumerate(cidrs):
                ipos = self.item(cidrs, i, npos)
                if budget == 0:
                    self.add(ipos, f"too many CIDRs: a plan may hold at most {MAX_CIDRS:,}")
                    budget = -1
                if budget < 0:
                    break
                budget -= 1
                if not isinstance(text, str):
                    self.add(
                        ipos, f"scope '{name}': each CIDR must be a string, not {type_name(text)}"
                    )
                    continue
                try:
                    net = parse_cidr(text)
                except ValueError as exc:
                    self.add(ipos, f"scope '{name}': {exc}")
                    continue
                if net not in nets:
                    nets[net] = None
                    spans.append(Span.of(net, name, ipos))
            out[name] = tuple(str(n) for n in nets)
        pairs = find_overlaps(spans)
        for outer, inner in pairs[:MAX_OVERLAP_REPORTS]:
            self.add(inner.tag, overlap_message(outer, inner))
        if len(pairs) > MAX_OVERLAP_REPORTS:
            more = len(pairs) - MAX_OVERLAP_REPORTS
            self.add(pos, f"{more} more CIDRs overlap a CIDR of another scope (not listed)")
        return out

    # -- steps --------------------------------------------------------------------------

    def steps(self, value: Any, pos: Pos, defined: Iterable[str]) -> list[Step]:
        """``steps:``, given the names ``defined`` under ``scopes:``."""
        known = [*defined, ALL]
        if value is None:
            self.add(
                pos,
                "steps: is required: list the scopes in rollout order, like "
                "[{scope: canada}, {scope: all}]",
            )
            return []
        if not isinstance(value, list | tuple) or not value:
            shown = "an empty list" if isinstance(value, list | tuple) else type_name(value)
            self.add(pos, f"steps must be a non-empty list of steps, not {shown}")
            return []
        used: dict[str, int] = {}
        out: list[Step] = []
        for i, item in enumerate(value):
            ipos = self.item(value, i, pos)
            what = f"step {i + 1}"
            if not isinstance(item, Mapping):
                self.add(
                    ipos,
                    f"{what} must be a mapping like {{scope: canada, bake: 60}}, "
                    f"not {type_name(item)}",
                )
                continue
            self.unknown(item, STEP_KEYS, what)
            scope = item.get("scope")
            spos = self.at(item, "scope", ipos)
            if not isinstance(scope, str):
                self.add(spos, f"{what} needs scope: one of {', '.join(known)}")
                scope = None
            else:
                what = f"step {i + 1} ({scope})"
                self._step_scope(scope, spos, what, i, len(value), known, used)
            bake = item.get("bake")
            if bake is not None:
                bake = self.number(
                    bake,
                    self.at(item, "bake", ipos),
                    f"{what}: bake (seconds)",
                    0,
                    MAX_BAKE_SECONDS,
                )
            approve = item.get("approve")
            if approve is not None and approve not in ("auto", "manual"):
                self.add(
                    self.at(item, "approve", ipos),
                    f"{what}: approve must be manual or auto, not {approve!r}",
                )
                approve = None
            checks = self.checks(item.get("checks"), self.at(item, "checks", ipos), what)
            if scope is not None:
                mode: Approve = "manual" if approve == "manual" else "auto"
                out.append(Step(scope, bake or 0, mode, checks))
        return out

    def _step_scope(
        self,
        scope: str,
        pos: Pos,
        what: str,
        i: int,
        n: int,
        known: list[str],
        used: dict[str, int],
    ) -> None:
        if scope not in known:
            close = difflib.get_close_matches(scope, known, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else f"defined: {', '.join(known)}"
            self.add(pos, f"{what}: scope '{scope}' is not defined in scopes:; {hint}")
        if scope in used:
            self.add(
                pos,
                f"{what}: scope '{scope}' is already rolled out by step {used[scope] + 1}; "
                "a scope may appear in one step only",
            )
        used.setdefault(scope, i)
        if scope == ALL and i != n - 1:
            self.add(
                pos,
                f"{what}: 'all' must be the last step (after it every client has the "
                "new version, so later steps could add no one)",
            )

    def checks(self, value: Any, pos: Pos, what: str) -> tuple[Check, ...]:
        """A step's ``checks:`` list (``http:`` or ``job:`` entries)."""
        if value is None:
            return ()
        if not isinstance(value, list | tuple):
            self.add(pos, f"{what}: checks must be a list, not {type_name(value)}")
            return ()
        out: list[Check] = []
        for j, item in enumerate(value):
            cpos = self.item(value, j, pos)
            cwhat = f"{what}, check {j + 1}"
            if not isinstance(item, Mapping):
                self.add(
                    cpos,
                    f"{cwhat} must be a mapping with http: URL or job: NAME, not {type_name(item)}",
                )
            elif "http" in item and "job" in item:
                self.add(cpos, f"{cwhat}: use either http: or job:, not both")
            elif "job" in item:
                self.unknown(item, JOB_KEYS, cwhat)
                job = self.string(item["job"], self.at(item, "job", cpos), f"{cwhat}: job")
                if job is not None:
                    out.append(JobCheck(job))
            elif "http" in item:
                check = self.http(item, cpos, cwhat)
                if check is not None:
                    out.append(check)
            else:
                self.unknown(item, HTTP_KEYS + JOB_KEYS, cwhat)
                self.add(cpos, f"{cwhat} needs http: URL or job: NAME")
        return tuple(out)

    def http(self, item: Mapping[str, Any], pos: Pos, what: str) -> HttpCheck | None:
        """One ``http:`` check; None when any of its keys is wrong."""
        self.unknown(item, HTTP_KEYS, what)
        n0 = len(self.diags)
        url = item["http"]
        if not isinstance(url, str):
            self.add(
                self.at(item, "http", pos), f"{what}: http must be a URL, not {type_name(url)}"
            )
        elif problem := url_problem(url):
            self.add(self.at(item, "http", pos), f"{what}: {problem}")

        def num(key: str, default: float | None, low: float, high: float, above: bool) -> Any:
            value = item.get(key)
            if value is None:
                return default
            return self.number(
                value, self.at(item, key, pos), f"{what}: {key}", low, high, above=above
            )

        samples = item.get("samples", 3)
        if isinstance(samples, bool) or not isinstance(samples, int) or not 1 <= samples <= 1000:
            self.add(
                self.at(item, "samples", pos),
                f"{what}: samples must be a whole number from 1 to 1000, not {samples!r}",
            )
        interval = num("interval", 1.0, 0, 3600, False)
        timeout = num("timeout", 5.0, 0, 300, True)
        ratio = num("max_failure_ratio", 0.0, 0, 1, False)
        p95 = num("max_p95_ms", None, 0, 600_000, True)
        statuses = self.statuses(
            item.get("expect_status"), self.at(item, "expect_status", pos), what
        )
        if len(self.diags) > n0:
            return None
        return HttpCheck(str(url), samples, interval, timeout, statuses, ratio, p95)

    def statuses(self, value: Any, pos: Pos, what: str) -> tuple[int, ...]:
        """``expect_status``: one status or a non-empty list of them."""
        if value is None:
            return (200,)
        items = list(value) if isinstance(value, list | tuple) else [value]
        good = [
            v for v in items if isinstance(v, int) and not isinstance(v, bool) and 100 <= v <= 599
        ]
        if not items or len(good) != len(items):
            self.add(
                pos,
                f"{what}: expect_status must be an HTTP status (100-599) or a "
                f"non-empty list of them, not {value!r}",
            )
            return (200,)
        return tuple(dict.fromkeys(good))

    # -- the rest -------------------------------------------------------------------------

    def auto(self, value: Any, pos: Pos) -> tuple[str, ...]:
        """``auto: {branches: [...]}`` (continuous deployment), as branch patterns."""
        if value is None:
            return ()
        if not isinstance(value, Mapping):
            self.add(
                pos, f"auto must be a mapping like {{branches: [main]}}, not {type_name(value)}"
            )
            return ()
        self.unknown(value, AUTO_KEYS, "auto")
        branches = value.get("branches")
        bpos = self.at(value, "branches", pos)
        if not isinstance(branches, list | tuple) or not branches:
            self.add(
                bpos,
                "auto: needs branches: a non-empty list of branch names or globs, like "
                "[main, 'release/*'] (remove auto: to turn continuous deployment off)",
            )
            return ()
        out = [
            self.string(b, self.item(branches, k, bpos), "each auto branch")
            for k, b in enumerate(branches)
        ]
        return tuple(dict.fromkeys(b for b in out if b is not None))

    def version(self, value: Any, pos: Pos) -> str:
        """The ``version:`` template of automatic releases."""
        if value is None:
            return DEFAULT_VERSION_TEMPLATE
        if not isinstance(value, str):
            self.add(
                pos,
                f"version must be a template like '{{branch}}-{{build}}', not {type_name(value)}",
            )
            return DEFAULT_VERSION_TEMPLATE
        try:
            fields = template_fields(value, VERSION_FIELDS)
        except ValueError as exc:
            self.add(pos, f"version template {value!r}: {exc}")
            return value
        if "build" not in fields:
            self.add(
                pos,
                f"version template {value!r} must contain {{build}} so that every build "
                "gets its own version (a version is released once)",
            )
        elif not VERSION_RE.fullmatch(render_template(value, {"branch": "main", "build": "1"})):
            self.add(
                pos,
                f"version template {value!r} must give versions of letters, digits, "
                "'.', '_', '+' and '-' that start with a letter or digit",
            )
        return value
