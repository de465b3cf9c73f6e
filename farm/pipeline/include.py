"""``include:``: merge local files and catalog components, deep-merging like GitLab.

What can work offline: ``include:local`` (plain paths, ``*``/``**`` wildcards, paths built
from ``$CI_*`` variables), ``include:project`` naming this very project, and
``include:component`` from a local component catalog (:mod:`farm.pipeline.components`).
Any of them may pass ``inputs:`` to a file with a ``spec:inputs`` header
(:mod:`farm.pipeline.inputs`) and be chosen by ``rules:``. Remote, template and other
projects' includes are refused, never fetched. The including file wins over what it
includes; later includes win over earlier ones. A file is merged once per set of inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from farm.domain.specs import PipelineContext
from farm.pipeline.checks import Diags, glob_match, has_glob, unknown_keys
from farm.pipeline.components import not_configured, parse_address
from farm.pipeline.conditions import first_match, parse_rules
from farm.pipeline.expressions import Lookup
from farm.pipeline.inputs import bind, canonical, interpolate, parse_header
from farm.pipeline.limits import Budget, LimitExceeded, setting
from farm.pipeline.variables import expand_text
from farm.pipeline.yamlsrc import (
    Pos,
    SourceProblem,
    YList,
    YMap,
    deep_merge,
    parse_config,
    type_name,
)

_INCLUDE_KEYS = (
    "local", "remote", "project", "file", "ref", "template", "component", "rules", "inputs",
    "cache", "integrity",
)  # fmt: skip
_OFFLINE = {
    "remote": "copy the file into the repository and use include:local",
    "template": "copy GitLab's template into the repository and use include:local",
}


@dataclass(frozen=True)
class Origin:
    """Where an included file comes from: this repository, or a component's project."""

    read: Callable[[str], Any] | None
    files: tuple[str, ...] | None  # None: not listable (no wildcards)
    prefix: str = ""  # how its paths are shown (the catalog directory of a component)
    component: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """One file an include entry names, with the inputs it passes."""

    path: str
    pos: Pos
    origin: Origin
    inputs: Any = None


class _Includer:
    def __init__(self, d: Diags, ctx: PipelineContext, env: Lookup, budget: Budget) -> None:
        self.d = d
        self.ctx = ctx
        self.env = env
        self.budget = budget
        self.seen: set[tuple[str, str]] = set()
        self.repo = Origin(ctx.read, ctx.files)

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

    def targets(self, entry: Any, pos: Pos, origin: Origin) -> list[Target]:
        """Files an include entry names (after rules and wildcards); reports the rest."""
        if isinstance(entry, str):
            if entry.startswith(("http://", "https://")):
                self.d.add(pos, f"include:remote is not available offline; {_OFFLINE['remote']}")
                return []
            return [Target(p, at, origin) for p, at in self.local(entry, pos, origin)]
        if not isinstance(entry, YMap):
            self.d.add(
                pos,
                f"each include must be a path or a mapping like {{local: path}}, not "
                f"{type_name(entry)}",
            )
            return []
        unknown_keys(self.d, entry, _INCLUDE_KEYS, "include")
        for kind, hint in _OFFLINE.items():
            if kind in entry:
                self.d.add(entry.at(kind), f"include:{kind} is not available offline; {hint}")
                return []
        if "rules" in entry:
            rules = parse_rules(self.d, entry["rules"], entry.at("rules"), budget=self.budget)
            matched = first_match(rules, self.env, self.ctx)
            if matched is None or matched.when == "never":
                return []
        given = entry.get("inputs")
        if "component" in entry:
            return self.component(entry, given)
        if "project" in entry:
            return self.project(entry, given)
        if "local" not in entry:
            self.d.add(entry.pos, "include entry needs local:, component: or project: and file:")
            return []
        local = entry["local"]
        if not isinstance(local, str):
            self.d.add(entry.at("local"), f"include:local must be a path, not {type_name(local)}")
            return []
        found = self.local(local, entry.at("local"), origin)
        return [Target(p, at, origin, given) for p, at in found]

    def project(self, entry: YMap, given: Any) -> list[Target]:
        """``include:project`` + ``file``: only this project's own files can be read."""
        raw = entry["project"]
        name = self.expand(raw, entry.at("project")) if isinstance(raw, str) else ""
        own = self.env("CI_PROJECT_PATH")
        if not name or own is None or name.strip("/") != own.strip("/"):
            self.d.add(
                entry.at("project"),
                "include:project of another project is not available offline; copy the file "
                "into the repository and use include:local",
            )
            return []
        files = entry.get("file")
        paths = files if isinstance(files, list) else [files]
        if files is None or not all(isinstance(f, str) for f in paths):
            self.d.add(entry.at("file"), "include:project needs file: a path or a list of paths")
            return []
        found: list[Target] = []
        for path in paths:
            for p, at in self.local(str(path), entry.at("file"), self.repo):
                found.append(Target(p, at, self.repo, given))
        return found

    def component(self, entry: YMap, given: Any) -> list[Target]:
        raw, pos = entry["component"], entry.at("component")
        if not isinstance(raw, str):
            self.d.add(pos, f"include:component must be an address, not {type_name(raw)}")
            return []
        parsed = parse_address(self.expand(raw, pos))
        if isinstance(parsed, str):
            self.d.add(pos, parsed)
            return []
        reader = self.ctx.read_component
        if reader is None:
            self.d.add(pos, not_configured(parsed.address))
            return []
        catalog = (self.ctx.component_catalog or "").rstrip("/")
        for project, path in parsed.candidates():
            if self.fetch(reader, path, pos, catalog) is None:
                continue
            base = f"{project}/"

            def read(rel: str, base: str = base) -> Any:
                return reader(base + rel.lstrip("/"))

            prefix = f"{catalog}/{base}" if catalog else base
            origin = Origin(read, None, prefix, parsed.context())
            return [Target(path.removeprefix(base), pos, origin, given)]
        tried = ", ".join(p for _, p in parsed.candidates())
        self.d.add(
            pos,
            f"component '{parsed.address}' is not in the component catalog "
            f"{catalog or '(FARM_COMPONENT_CATALOG)'}; looked for {tried}",
        )
        return []

    def expand(self, raw: str, pos: Pos) -> str:
        try:
            return expand_text(raw, self.env, self.ctx.limits.max_job_bytes)
        except LimitExceeded as exc:
            raise exc.located(pos, "include: ") from None

    def local(self, raw: str, pos: Pos, origin: Origin) -> list[tuple[str, Pos]]:
        path = self.expand(raw, pos).strip().lstrip("/")
        if not path:
            self.d.add(pos, "include:local needs a file path")
            return []
        if has_glob(path):
            if origin.files is None:
                self.d.add(pos, f"include:local '{raw}': wildcards cannot be used in a component")
                return []
            matches = sorted(
                f for f in origin.files if glob_match(path, f) and f.endswith((".yml", ".yaml"))
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

    def fetch(self, reader: Callable[[str], Any], path: str, pos: Pos, shown: str) -> Any:
        try:
            text = reader(path)
        except Exception as exc:  # the reader is the coordinator's I/O edge
            self.d.add(pos, f"cannot read included file '{path}' ({shown}): {exc}")
            return None
        return text.decode("utf-8", "replace") if isinstance(text, bytes) else text

    def read(self, target: Target) -> YMap | None:
        path, pos, origin = target.path, target.pos, target.origin
        shown = origin.prefix + path
        text = self.fetch(origin.read, path, pos, shown) if origin.read is not None else None
        if text is None:
            self.d.add(pos, f"included file '{shown}' does not exist in the repository")
            return None
        if not isinstance(text, str):
            self.d.add(pos, f"cannot read included file '{shown}'")
            return None
        try:
            header, config = parse_config(text, shown, self.budget)
        except SourceProblem as exc:
            self.d.add(exc.pos, exc.message)
            return None
        spec = parse_header(self.d, header) if header is not None else None
        values = bind(self.d, spec, target.inputs, pos, shown)
        if spec is not None and values is not None:
            config = interpolate(
                self.d, config, spec, values, self.env, self.budget, origin.component
            )
        elif spec is not None:
            return None  # the inputs are wrong: already reported at the include
        if config is None:
            return YMap((shown, 1, 1))
        if not isinstance(config, YMap):
            self.d.add(
                (shown, 1, 1),
                f"included file '{shown}' must hold a mapping of jobs and keywords, not "
                f"{type_name(config)}",
            )
            return None
        return config

    def expand_file(self, config: YMap, depth: int, origin: Origin) -> YMap:
        if "include" not in config:
            return config
        merged = YMap(config.pos)
        value, ipos = config["include"], config.at("include")
        if depth > 100:
            self.d.add(ipos, "includes are nested more than 100 levels deep")
            return config
        for entry, epos in self.entries(value, ipos):
            for target in self.targets(entry, epos, origin):
                seen = (target.origin.prefix + target.path, canonical(target.inputs))
                if seen in self.seen:
                    continue  # GitLab merges a file included twice (same inputs) only once
                self.seen.add(seen)
                most = self.ctx.limits.max_includes
                if len(self.seen) - 1 > most:  # the including file is not an include
                    raise LimitExceeded(
                        target.pos,
                        f"the pipeline includes more than {most:,} files "
                        f"({setting('max_includes')})",
                    )
                sub = self.read(target)
                if sub is not None:
                    sub = self.expand_file(sub, depth + 1, target.origin)
                    merged = deep_merge(merged, sub, self.budget)
        body = YMap(config.pos)
        for key, item in config.items():
            if key != "include":
                body.put(key, item, config.at(key))
        return deep_merge(merged, body, self.budget) if merged else body


def apply_includes(
    d: Diags, config: YMap, filename: str, ctx: PipelineContext, env: Lookup, budget: Budget
) -> YMap:
    """``config`` with every include merged in; problems go to ``d``.

    Included files share ``budget`` with the including file; more than
    ``ctx.limits.max_includes`` files raise ``LimitExceeded``.
    """
    includer = _Includer(d, ctx, env, budget)
    includer.seen.add((filename.lstrip("/"), canonical(None)))
    return includer.expand_file(config, 0, includer.repo)
