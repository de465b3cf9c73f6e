"""The job graph: ``needs`` and ``dependencies`` resolved to concrete jobs, cycles found.

Needing a ``parallel`` job means needing every copy (or the copies a
``parallel:matrix`` filter selects). Cycle detection models stage order with one barrier
node per stage, so it stays linear in jobs plus needs edges.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Mapping

from farm.domain.specs import JobSpec, Need
from farm.pipeline.checks import Diags
from farm.pipeline.expand import Concrete
from farm.pipeline.keywords import Matrix, NeedRef
from farm.pipeline.limits import Budget, LimitExceeded
from farm.pipeline.matrix import MatrixExpressionError, describe, has_expressions, substitute
from farm.pipeline.variables import expand_text, lookup_in
from farm.pipeline.yamlsrc import Pos


def _selects(rows: Matrix, spec: JobSpec, env: Mapping[str, str], limit: int | None) -> bool:
    lookup = lookup_in(env)
    for row in rows:
        if all(
            spec.matrix.get(k) in {expand_text(v, lookup, limit) for v in vs}
            for k, vs in row.items()
        ):
            return True
    return False


class Graph:
    """Resolves needs for the jobs rules kept; ``defined`` names every job the YAML defines."""

    def __init__(
        self,
        d: Diags,
        jobs: list[Concrete],
        defined: Mapping[str, Pos],
        stages: tuple[str, ...],
        limit: int | None = None,
    ) -> None:
        self.d = d
        self.limit = limit
        self.jobs = jobs
        self.defined = defined
        self.rank = {s: i for i, s in enumerate(stages)}
        self.by_name: dict[str, Concrete] = {c.spec.name: c for c in jobs}
        self.cache: dict[tuple[str, str, bool, bool], tuple[Need, ...]] = {}
        self.groups: dict[str, list[Concrete]] = {}
        for c in jobs:
            self.groups.setdefault(c.group, []).append(c)

    def _targets(
        self, owner: Concrete, name: str, pos: Pos, optional: bool, what: str
    ) -> list[Concrete] | None:
        found = self.groups.get(name)
        if found is None and name in self.by_name:
            found = [self.by_name[name]]
        if found is not None:
            return found
        if optional:
            return None
        job = owner.group
        if name in self.defined:
            self.d.add(
                pos,
                f"job '{job}' {what} '{name}', which is not in this pipeline: its rules, only or "
                "except "
                f"exclude it for this commit (use needs: [{{job: {name}, optional: true}}] if "
                "that is fine)",
            )
        else:
            hint = " (hidden jobs starting with '.' never run)" if name.startswith(".") else ""
            self.d.add(pos, f"job '{job}' {what} '{name}', which does not exist{hint}")
        return None

    def _plain(self, c: Concrete, ref: NeedRef) -> tuple[Need, ...]:
        """A need without matrix filter: resolved once, shared by every job asking for it."""
        key = (c.group, ref.job, ref.artifacts, ref.optional)
        if key not in self.cache:
            targets = self._targets(c, ref.job, ref.pos, ref.optional, "needs") or []
            self.cache[key] = tuple(Need(t.spec.name, ref.artifacts, ref.optional) for t in targets)
        return self.cache[key]

    def needs_of(self, c: Concrete) -> tuple[Need, ...] | None:
        if c.needs is None:
            return None
        if len(c.needs) == 1 and c.needs[0].matrix is None:
            return self._plain(c, c.needs[0])
        result: dict[str, Need] = {}
        for ref in c.needs:
            if ref.matrix is None:
                for need in self._plain(c, ref):
                    result.setdefault(need.job, need)
                continue
            targets = self._targets(c, ref.job, ref.pos, ref.optional, "needs")
            if targets is None:
                continue
            rows = ref.matrix
            if has_expressions(rows):
                try:
                    rows = substitute(rows, c.spec.matrix, c.group)
                except MatrixExpressionError as exc:
                    self.d.add(ref.pos, f"job '{c.group}' needs '{ref.job}': {exc}")
                    continue
            targets = [t for t in targets if _selects(rows, t.spec, c.spec.variables, self.limit)]
            if not targets and not ref.optional:
                self.d.add(
                    ref.pos,
                    f"job '{c.spec.name}' needs '{ref.job}' with parallel:matrix "
                    f"{describe(rows)}, which matches no copy of '{ref.job}' in this pipeline",
                )
            for t in targets:
                result.setdefault(t.spec.name, Need(t.spec.name, ref.artifacts, ref.optional))
        return tuple(result.values())

    def dependencies_of(
        self, c: Concrete, names: list[str] | None, pos: Pos, needs: tuple[Need, ...] | None
    ) -> tuple[str, ...] | None:
        if names is None:
            return None
        result: dict[str, None] = {}
        rank = self.rank.get(c.spec.stage, 0)
        needed = {n.job for n in needs} if needs is not None else None
        for name in names:
            if name not in self.groups and name not in self.by_name and name in self.defined:
                continue  # excluded by rules for this commit: nothing to download
            for t in self._targets(c, name, pos, False, "has dependency") or []:
                if needed is not None and t.spec.name not in needed:
                    self.d.add(
                        pos,
                        f"job '{c.spec.name}' has dependency '{t.spec.name}', which must also be "
                        "in its needs",
                    )
                elif needed is None and self.rank.get(t.spec.stage, 0) >= rank:
                    self.d.add(
                        pos,
                        f"job '{c.spec.name}' has dependency '{t.spec.name}' of stage "
                        f"'{t.spec.stage}', "
                        f"which does not run before stage '{c.spec.stage}'",
                    )
                result[t.spec.name] = None
        return tuple(result)


def find_cycles(
    d: Diags, specs: list[JobSpec], stages: tuple[str, ...], where: Mapping[str, Pos]
) -> None:
    """Report every cycle of needs (stage order included) among ``specs``."""
    n = len(specs)
    rank = {s: i for i, s in enumerate(stages)}
    index = {s.name: i for i, s in enumerate(specs)}
    waits: list[list[int]] = [[] for _ in range(n + len(stages))]  # node -> nodes it waits for
    shared: dict[int, int] = {}  # id of a needs tuple many jobs share -> its own node
    for i, s in enumerate(specs):
        r = rank.get(s.stage, 0)
        waits[n + r].append(i)  # the barrier of stage r waits for its jobs
        if s.needs is not None and len(s.needs) > 4:
            node = shared.get(id(s.needs))
            if node is None:
                node = shared[id(s.needs)] = len(waits)
                waits.append([index[x.job] for x in s.needs if x.job in index])
            waits[i].append(node)
        elif s.needs is not None:
            waits[i].extend(index[x.job] for x in s.needs if x.job in index)
        elif r > 0:
            waits[i].append(n + r - 1)
    for r in range(1, len(stages)):
        waits[n + r].append(n + r - 1)
    total = len(waits)
    pending = [len(w) for w in waits]
    wanted_by: list[list[int]] = [[] for _ in range(total)]
    for node, deps in enumerate(waits):
        for dep in deps:
            wanted_by[dep].append(node)
    done = [False] * total
    ready = deque(i for i in range(total) if pending[i] == 0)

    def drain() -> None:
        while ready:
            node = ready.popleft()
            if done[node]:
                continue
            done[node] = True
            for nxt in wanted_by[node]:
                pending[nxt] -= 1
                if pending[nxt] <= 0 and not done[nxt]:
                    ready.append(nxt)

    drain()
    for _ in range(50):
        start = next((i for i in range(n) if not done[i]), None)
        if start is None:
            return
        path: list[int] = []
        seen: dict[int, int] = {}
        node = start
        while node not in seen:
            seen[node] = len(path)
            path.append(node)
            node = next(x for x in waits[node] if not done[x])
        cycle = path[seen[node] :]
        names = [specs[i].name for i in cycle if i < n]
        via_stage = any(n <= i < n + len(stages) for i in cycle)
        text = " → ".join([*names, names[0]]) if names else "stage order"
        note = " (jobs without needs wait for every job of earlier stages)" if via_stage else ""
        first = names[0] if names else specs[start].name
        d.add(where.get(first, ("<pipeline>", 1, 1)), f"needs form a cycle: {text}{note}")
        for i in cycle:
            done[i] = True
            for nxt in wanted_by[i]:
                pending[nxt] -= 1
                if pending[nxt] <= 0 and not done[nxt]:
                    ready.append(nxt)
        drain()


def link(
    d: Diags,
    jobs: list[Concrete],
    defined: Mapping[str, Pos],
    stages: tuple[str, ...],
    deps: Mapping[str, tuple[list[str] | None, Pos]],
    budget: Budget | None = None,
) -> list[JobSpec]:
    """Concrete specs with needs and dependencies resolved; cycles reported.

    ``budget`` counts each final spec's stored bytes as it is made (needing a parallel job
    means needing every copy, so needs can multiply a pipeline's size).
    """
    limit = budget.limits.max_job_bytes if budget is not None else None
    graph = Graph(d, jobs, defined, stages, limit)
    specs: list[JobSpec] = []
    where: dict[str, Pos] = {}
    for c in jobs:
        pos = defined.get(c.group, ("<pipeline>", 1, 1))
        try:
            needs = graph.needs_of(c)
        except LimitExceeded as exc:
            raise exc.located(pos, f"job '{c.spec.name[:100]}': needs: ") from None
        names, dpos = deps.get(c.group, (None, ("<pipeline>", 1, 1)))
        dependencies = graph.dependencies_of(c, names, dpos, needs)
        spec = dataclasses.replace(c.spec, needs=needs, dependencies=dependencies)
        if budget is not None:
            budget.add_spec(spec, pos, c.spec)
        specs.append(spec)
        where[c.spec.name] = (
            c.needs[0].pos if c.needs else defined.get(c.group, ("<pipeline>", 1, 1))
        )
    find_cycles(d, specs, stages, where)
    return specs
