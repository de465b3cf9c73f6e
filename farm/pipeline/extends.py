"""Reuse between jobs: ``!reference`` tags, ``extends``, ``default:`` and ``inherit:``.

Order, as in GitLab: references are resolved on the merged configuration, then each job's
``extends`` chain is deep-merged (parents in order, the job itself last; mappings merge,
lists and scalars are replaced), then ``default:`` fills keywords the job did not set.
"""

from __future__ import annotations

from typing import Any

from farm.pipeline.checks import Diags, as_str_list
from farm.pipeline.limits import Budget
from farm.pipeline.yamlsrc import Pos, Ref, YList, YMap, deep_merge, type_name

MAX_EXTENDS_DEPTH = 11
MAX_REFERENCE_DEPTH = 10
DEFAULT_KEYS = (
    "after_script",
    "artifacts",
    "before_script",
    "cache",
    "hooks",
    "id_tokens",
    "image",
    "interruptible",
    "retry",
    "services",
    "tags",
    "timeout",
)
IGNORED_DEFAULTS = {
    "hooks": "jobs start from a source snapshot, so pre_get_sources_script never runs",
    "id_tokens": "farm issues no OIDC ID tokens; these variables stay unset",
}
LEGACY_GLOBAL_KEYS = ("image", "services", "cache", "before_script", "after_script")


class _References:
    def __init__(self, d: Diags, config: YMap) -> None:
        self.d = d
        self.config = config
        self.memo: dict[int, Any] = {}

    def lookup(self, ref: Ref, depth: int) -> Any:
        if depth > MAX_REFERENCE_DEPTH:
            self.d.add(
                ref.pos,
                f"!reference {list(ref.path)} nests more than {MAX_REFERENCE_DEPTH} references",
            )
            return None
        node: Any = self.config
        for i, key in enumerate(ref.path):
            if isinstance(node, Ref):
                node = self.lookup(node, depth + 1)
            if isinstance(node, YList) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]  # a reference into a list item: [.job, script, 0]
                continue
            if not isinstance(node, YMap) or key not in node:
                where = " > ".join(ref.path[: i + 1])
                self.d.add(ref.pos, f"!reference {list(ref.path)}: '{where}' does not exist")
                self.d.mute(ref.pos)
                return None
            node = node[key]
        return self.walk(node, depth + 1)

    def walk(self, value: Any, depth: int = 0) -> Any:
        if isinstance(value, Ref):
            return self.lookup(value, depth)
        if not isinstance(value, YMap | YList):
            return value
        key = id(value)
        if key in self.memo:
            return self.memo[key]
        self.memo[key] = value  # a reference back into itself sees the unresolved value
        result: Any
        if isinstance(value, YMap):
            result = YMap(value.pos, dict(value.kpos))
            for k, v in value.items():
                result[k] = self.walk(v, depth)
        else:
            result = YList(value.pos, (self.walk(v, depth) for v in value), list(value.ipos))
        changed = any(a is not b for a, b in zip(_values(value), _values(result), strict=True))
        self.memo[key] = result if changed else value
        return self.memo[key]


def _values(value: YMap | YList) -> list[Any]:
    return list(value.values()) if isinstance(value, YMap) else list(value)


def resolve_references(d: Diags, config: YMap) -> YMap:
    """``config`` with every ``!reference`` replaced by what it points at."""
    result = _References(d, config).walk(config)
    return result if isinstance(result, YMap) else config


class Extender:
    """Resolves ``extends`` for the jobs (and templates) of one configuration.

    Each name is resolved once; ``budget`` counts the keys every merge copies, so wide or
    deep ``extends`` of large templates are refused before they are copied job by job.
    """

    def __init__(
        self, d: Diags, config: YMap, reserved: frozenset[str], budget: Budget | None = None
    ) -> None:
        self.d = d
        self.config = config
        self.reserved = reserved
        self.budget = budget
        self.done: dict[str, YMap] = {}

    def resolve(self, name: str, chain: tuple[str, ...] = ()) -> YMap:
        if name in self.done:
            return self.done[name]
        job = self.config[name]
        assert isinstance(job, YMap)
        if "extends" not in job:
            self.done[name] = job
            return job
        pos = job.at("extends")
        parents = as_str_list(self.d, job["extends"], pos, f"{name}: extends", single=True) or []
        base = YMap(job.pos)
        for parent in parents:
            if parent in chain or parent == name:
                cycle = " → ".join((*chain, name, parent)[(*chain, name).index(parent) :])
                self.d.add(pos, f"extends forms a cycle: {cycle}")
                continue
            if len(chain) + 1 >= MAX_EXTENDS_DEPTH:
                self.d.add(pos, f"extends nests more than {MAX_EXTENDS_DEPTH} levels at '{name}'")
                continue
            target = self.config.get(parent)
            if parent in self.reserved or not isinstance(target, YMap):
                what = "does not exist" if target is None else f"is {type_name(target)}, not a job"
                self.d.add(pos, f"job '{name}' extends '{parent}', which {what}")
                continue
            base = deep_merge(base, self.resolve(parent, (*chain, name)), self.budget)
        own = YMap(job.pos)
        for key, value in job.items():
            if key != "extends":
                own.put(key, value, job.at(key))
        result = deep_merge(base, own, self.budget)
        assert isinstance(result, YMap)
        result.pos = job.pos
        self.done[name] = result
        return result


def inherit_choice(d: Diags, job: YMap, which: str) -> bool | frozenset[str]:
    """``inherit:default`` / ``inherit:variables``: True, False or the names to inherit."""
    inherit = job.get("inherit")
    if inherit is None:
        return True
    if not isinstance(inherit, YMap):
        d.add(
            job.at("inherit"),
            f"inherit must be a mapping with default: and/or variables:, not {type_name(inherit)}",
        )
        return True
    for key in inherit:
        if key not in ("default", "variables"):
            d.add(inherit.at(key), f"unknown key '{key}' in inherit; allowed: default, variables")
    if which not in inherit:
        return True
    value, pos = inherit[which], inherit.at(which)
    if isinstance(value, bool):
        return value
    names = as_str_list(d, value, pos, f"inherit:{which}")
    if names is None:
        return True
    if which == "default":
        for n in names:
            if n not in DEFAULT_KEYS:
                d.add(
                    pos,
                    f"inherit:default names unknown keyword '{n}'; allowed: "
                    f"{', '.join(DEFAULT_KEYS)}",
                )
    return frozenset(names)


def apply_default(d: Diags, job: YMap, default: YMap, budget: Budget | None = None) -> YMap:
    """``job`` with the ``default:`` keywords it did not set itself (and may inherit)."""
    choice = inherit_choice(d, job, "default")
    if choice is False or not default:
        return job
    result: YMap | None = None
    for key, value in default.items():
        if key in job or (choice is not True and key not in choice):
            continue
        if result is None:
            if budget is not None:
                budget.add_merged(len(job) + len(default), job.pos)
            result = YMap(job.pos, dict(job.kpos))
            result.update(job)
        result.put(key, value, default.at(key))
    return result if result is not None else job


def parse_default(d: Diags, config: YMap) -> YMap:
    """``default:`` merged over the deprecated top-level ``image``, ``services``, ... keys."""
    default = YMap(config.pos)
    for key in LEGACY_GLOBAL_KEYS:
        if key in config:
            default.put(key, config[key], config.at(key))
    value = config.get("default")
    if value is None:
        return default
    if not isinstance(value, YMap):
        d.add(
            config.at("default"),
            f"default must be a mapping of job keywords, not {type_name(value)}",
        )
        return default
    for key, item in value.items():
        pos: Pos = value.at(key)
        if key in ("hooks", "id_tokens"):
            d.warn(pos, f"default:{key} is ignored: {IGNORED_DEFAULTS[key]}")
        elif key not in DEFAULT_KEYS:
            d.add(
                pos,
                f"default:{key} is not a keyword default: can set; allowed: "
                f"{', '.join(DEFAULT_KEYS)}",
            )
        else:
            default.put(key, item, pos)
    return default
