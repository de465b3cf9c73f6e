"""``include:``: merge local files into the configuration, deep-merging like GitLab.

Only ``include:local`` (plain paths and ``*``/``**`` wildcards) can work offline: files
come from ``context.read`` and wildcards match ``context.files``. Remote, project,
template and component includes are reported, never fetched. The including file wins over
what it includes; later includes win over earlier ones.
"""

from __future__ import annotations

from typing import Any

from farm.domain.specs import PipelineContext
from farm.pipeline.checks import Diags, glob_match, has_glob, unknown_keys
from farm.pipeline.conditions import first_match, parse_rules
from farm.pipeline.expressions import Lookup
from farm.pipeline.limits import Budget, LimitExceeded, setting
from farm.pipeline.variables import expand_text
from farm.pipeline.yamlsrc import Pos, SourceProblem, YList, YMap, deep_merge, parse_yaml, type_name

_OFFLINE = ("remote", "project", "template", "component")
_INCLUDE_KEYS = (
    "local",
    "remote",
    "project",
    "file",
    "ref",
    "template",
    "component",
    "rules",
    "inputs",
    "cache",
    "integrity",
)


class _Includer:
    def __init__(self, d: Diags, ctx: PipelineContext, env: Lookup, budget: Budget) -> None:
        self.d = d
        self.ctx = ctx
        self.env = env
        self.budget = budget
        self.seen: set[str] = set()

    def entries(self, value: Any, pos: Pos) -> list[tuple[Any, Pos]]:
        if isinstance(value, list):
            out: list[tuple[Any, Pos]] = []
            for i, item in enumerate(value):
                ipos = value.at(i) if isinstance(value, YList) else pos
                if isinstance(item, list):
                    out.extend(self.entries(item, ipos))
                else:
                    out.append((item, ipos))
            return out
        return [(value, pos)]

    def paths(self, entry: Any, pos: Pos) -> list[tuple[str, Pos]]:
        """Local paths an include entry names (after wildcards); reports the rest."""
        if isinstance(entry, str):
            if entry.startswith(("http://", "https://")):
                self.d.add(
                    pos,
                    "include:remote is not available offline; copy the file into the repository "
                    "and use include:local",
                )
                return []
            return self.local(entry, pos)
        if not isinstance(entry, YMap):
            self.d.add(
                pos,
                f"each include must be a path or a mapping like {{local: path}}, not "
                f"{type_name(entry)}",
            )
            return []
        unknown_keys(self.d, entry, _INCLUDE_KEYS, "include")
        for kind in _OFFLINE:
            if kind in entry:
                self.d.add(
                    entry.at(kind),
                    f"include:{kind} is not available offline; copy the file into the repository "
                    "and use include:local",
                )
                return []
        if "inputs" in entry:
            self.d.add(entry.at("inputs"), "include:inputs is not supported by farm")
        if "local" not in entry:
            self.d.add(
                entry.pos, "include entry needs local: path (the only kind available offline)"
            )
            return []
        if "rules" in entry:
            rules = parse_rules(self.d, entry["rules"], entry.at("rules"))
            matched = first_match(rules, self.env, self.ctx)
            if matched is None or matched.when == "never":
                return []
        local = entry["local"]
        if not isinstance(local, str):
            self.d.add(entry.at("local"), f"include:local must be a path, not {type_name(local)}")
            return []
        return self.local(local, entry.at("local"))

    def local(self, raw: str, pos: Pos) -> list[tuple[str, Pos]]:
        try:
            path = expand_text(raw, self.env, self.ctx.limits.max_job_bytes).strip().lstrip("/")
        except LimitExceeded as exc:
            raise exc.located(pos, "include:local: ") from None
        if not path:
            self.d.add(pos, "include:local needs a file path")
            return []
        if has_glob(path):
            matches = sorted(
                f for f in self.ctx.files if glob_match(path, f) and f.endswith((".yml", ".yaml"))
            )
            if not matches:
                self.d.add(
                    pos, f"include:local '{raw}' matches no .yml/.yaml file in the repository"
                )
            return [(m, pos) for m in matches]
        if not path.endswith((".yml", ".yaml")):
            self.d.add(pos, f"included file '{raw}' must have a .yml or .yaml extension")
            return []
        return [(path, pos)]

    def read(self, path: str, pos: Pos) -> YMap | None:
        reader = self.ctx.read
        text: Any = None
        if reader is not None:
            try:
                text = reader(path)
            except Exception as exc:  # the reader is the coordinator's I/O edge
                self.d.add(pos, f"cannot read included file '{path}': {exc}")
                return None
        if text is None:
            self.d.add(pos, f"included file '{path}' does not exist in the repository")
            return None
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        if not isinstance(text, str):
            self.d.add(pos, f"cannot read included file '{path}'")
            return None
        try:
            config = parse_yaml(text, path, self.budget)
        except SourceProblem as exc:
            self.d.add(exc.pos, exc.message)
            return None
        if config is None:
            return YMap((path, 1, 1))
        if not isinstance(config, YMap):
            self.d.add(
                (path, 1, 1),
                f"included file '{path}' must hold a mapping of jobs and keywords, not "
                f"{type_name(config)}",
            )
            return None
        return config

    def expand(self, config: YMap, depth: int) -> YMap:
        if "include" not in config:
            return config
        merged = YMap(config.pos)
        value, ipos = config["include"], config.at("include")
        if depth > 100:
            self.d.add(ipos, "includes are nested more than 100 levels deep")
            return config
        for entry, epos in self.entries(value, ipos):
            for path, ppos in self.paths(entry, epos):
                if path in self.seen:
                    continue  # GitLab merges an already included file only once
                self.seen.add(path)
                most = self.ctx.limits.max_includes
                if len(self.seen) - 1 > most:  # the including file is not an include
                    raise LimitExceeded(
                        ppos,
                        f"the pipeline includes more than {most:,} files "
                        f"({setting('max_includes')})",
                    )
                sub = self.read(path, ppos)
                if sub is not None:
                    merged = deep_merge(merged, self.expand(sub, depth + 1), self.budget)
        body = YMap(config.pos)
        for key, item in config.items():
            if key != "include":
                body.put(key, item, config.at(key))
        return deep_merge(merged, body, self.budget) if merged else body


def apply_includes(
    d: Diags, config: YMap, filename: str, ctx: PipelineContext, env: Lookup, budget: Budget
) -> YMap:
    """``config`` with every local include merged in; problems go to ``d``.

    Included files share ``budget`` with the including file; more than
    ``ctx.limits.max_includes`` files raise ``LimitExceeded``.
    """
    includer = _Includer(d, ctx, env, budget)
    includer.seen.add(filename.lstrip("/"))
    return includer.expand(config, 0)
