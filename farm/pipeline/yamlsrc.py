"""YAML with positions: parse text into plain values that remember where they came from.

Mappings become :class:`YMap` (a ``dict`` whose keys are always strings and which records
each key's position), sequences :class:`YList` (records each item's position), scalars
stay plain Python values. ``!reference [job, key, ...]`` becomes a :class:`Ref`, resolved
later once every include is merged. Anchors, aliases and ``<<:`` merge keys are applied
here, straight from the parser's events (no node graph is composed first): each alias
followed is counted against the pipeline's :class:`~farm.pipeline.limits.Budget` at the
cost of everything behind it, so an anchor bomb is refused after a few thousand events.
Nothing in this module raises anything but :class:`SourceProblem` and
:class:`~farm.pipeline.limits.LimitExceeded`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml
from yaml import events, nodes

from farm.pipeline.limits import Budget, LimitExceeded

Pos = tuple[str, int, int]  # file, line, col; 1-based

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SCALARS = yaml.constructor.SafeConstructor()
_PLAIN_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
REFERENCE_TAG = "!reference"


class SourceProblem(Exception):
    """A problem in the YAML text itself; carries its position."""

    def __init__(self, pos: Pos, message: str) -> None:
        super().__init__(message)
        self.pos = pos
        self.message = message


class YMap(dict[str, Any]):
    """A mapping that remembers where it and each of its keys were written."""

    __slots__ = ("kpos", "pos")

    def __init__(self, pos: Pos, kpos: dict[str, Pos] | None = None) -> None:
        super().__init__()
        self.pos = pos
        self.kpos: dict[str, Pos] = kpos if kpos is not None else {}

    def at(self, key: str) -> Pos:
        """Where ``key`` was written (the mapping's own position if unknown)."""
        return self.kpos.get(key, self.pos)

    def put(self, key: str, value: Any, pos: Pos) -> None:
        self[key] = value
        self.kpos[key] = pos


class YList(list[Any]):
    """A sequence that remembers where it and each item were written."""

    __slots__ = ("ipos", "pos")

    def __init__(self, pos: Pos, items: Iterable[Any] = (), ipos: list[Pos] | None = None) -> None:
        super().__init__(items)
        self.pos = pos
        self.ipos: list[Pos] = ipos if ipos is not None else [pos] * len(self)

    def at(self, index: int) -> Pos:
        return self.ipos[index] if 0 <= index < len(self.ipos) else self.pos


class Ref:
    """An unresolved ``!reference [a, b, ...]`` tag."""

    __slots__ = ("path", "pos")

    def __init__(self, path: tuple[str, ...], pos: Pos) -> None:
        self.path = path
        self.pos = pos

    def __repr__(self) -> str:
        return f"!reference {list(self.path)}"


def pos_of(value: Any, fallback: Pos) -> Pos:
    """Position of a container value, else ``fallback``."""
    if isinstance(value, YMap | YList | Ref):
        return value.pos
    return fallback


def _mark(filename: str, item: nodes.Node | events.Event) -> Pos:
    m = item.start_mark
    if m is None:  # pragma: no cover - the parser marks every event
        return (filename, 1, 1)
    return (filename, m.line + 1, m.column + 1)


class _Anchor:
    """An ``&anchor`` seen in this document: its value and what it costs to repeat it."""

    __slots__ = ("aliases", "done", "key", "merge", "nodes", "value")

    def __init__(self) -> None:
        self.done = False  # False while its own content is being built (a recursive alias)
        self.value: Any = None
        self.key: str | None = None  # the text of an anchored scalar, for use as a key
        self.merge = False  # an anchored ``<<``
        self.nodes = 0  # nodes of its content, aliases inside followed
        self.aliases = 0  # aliases inside its content, followed


class _Builder:
    """Builds values straight from the parser's events, counting every node and every alias
    as it is followed: an alias costs what its anchor's content cost, so a repeated anchor
    is refused by the budget before anything is built for it (values behind an alias are
    shared, never copied)."""

    def __init__(self, filename: str, loader: Any, budget: Budget) -> None:
        self.filename = filename
        self.loader = loader
        self.budget = budget
        self.anchors: dict[str, _Anchor] = {}
        self.first: dict[str, Pos] = {}

    def event(self) -> events.Event:
        return self.loader.get_event()  # type: ignore[no-any-return]

    def documents(self) -> list[tuple[Any, Pos]]:
        """Every document of the stream, with where each starts."""
        self.event()  # StreamStartEvent
        found: list[tuple[Any, Pos]] = []
        while not isinstance(self.event(), events.StreamEndEvent):  # a DocumentStartEvent
            root = self.event()
            pos = _mark(self.filename, root)
            if len(found) >= 2:
                raise SourceProblem(
                    pos,
                    "a pipeline file holds one YAML document, or a spec: header document "
                    "and then the configuration after ---",
                )
            found.append((self.node(root), pos))
            self.event()  # DocumentEndEvent
            self.anchors = {}
            self.first = {}
        return found

    def node(self, event: events.Event) -> Any:
        """The value of the node that starts with ``event``."""
        if isinstance(event, events.AliasEvent):
            return self.alias(event).value
        pos = _mark(self.filename, event)
        self.budget.add_nodes(1, pos)
        anchor: str | None = getattr(event, "anchor", None)
        record = self._anchor(anchor, pos) if anchor is not None else None
        nodes0, aliases0 = self.budget.nodes - 1, self.budget.aliases
        if isinstance(event, events.ScalarEvent):
            value: Any = self._scalar(event, pos)
        elif isinstance(event, events.SequenceStartEvent):
            value = self._sequence(event, pos)
        elif isinstance(event, events.MappingStartEvent):
            value = self._mapping(event, pos)
        else:  # pragma: no cover - the parser only starts nodes with the events above
            raise SourceProblem(pos, f"invalid YAML: unexpected {type(event).__name__}")
        if record is not None:
            if isinstance(event, events.ScalarEvent):
                record.key = str(event.value)
            record.value = value
            record.nodes = self.budget.nodes - nodes0
            record.aliases = self.budget.aliases - aliases0
            record.done = True
        return value

    def _anchor(self, name: str, pos: Pos) -> _Anchor:
        if name in self.anchors:
            first = self.first[name]
            raise SourceProblem(
                pos, f"invalid YAML: anchor &{name} is defined twice (first on line {first[1]})"
            )
        record = self.anchors[name] = _Anchor()
        self.first[name] = pos
        return record

    def alias(self, event: events.AliasEvent) -> _Anchor:
        pos = _mark(self.filename, event)
        record = self.anchors.get(str(event.anchor))
        if record is None:
            raise SourceProblem(pos, f"invalid YAML: alias *{event.anchor} has no anchor before it")
        if not record.done:
            raise SourceProblem(pos, "recursive alias: an anchor contains itself")
        self.budget.add_aliases(1 + record.aliases, pos)
        self.budget.add_nodes(record.nodes, pos)
        return record

    def _tag(self, event: events.NodeEvent, kind: type[nodes.Node]) -> str:
        tag = getattr(event, "tag", None)
        if tag is None or tag == "!":
            value = event.value if isinstance(event, events.ScalarEvent) else None
            tag = self.loader.resolve(kind, value, event.implicit)  # type: ignore[attr-defined]
        return str(tag)

    def _scalar(self, event: events.ScalarEvent, pos: Pos) -> Any:
        tag = self._tag(event, nodes.ScalarNode)
        if tag == REFERENCE_TAG:
            raise SourceProblem(pos, "!reference needs a list, like !reference [.setup, script]")
        if tag == _TIMESTAMP_TAG:
            return str(event.value)
        if tag not in _PLAIN_TAGS:
            raise SourceProblem(pos, f"unsupported YAML tag {tag}; only !reference is allowed")
        node = nodes.ScalarNode(tag, event.value, style=event.style)
        try:
            return _SCALARS.yaml_constructors[tag](_SCALARS, node)
        except (yaml.YAMLError, ValueError, OverflowError) as exc:
            raise SourceProblem(pos, f"invalid scalar {event.value!r}: {exc}") from None

    def _sequence(self, start: events.SequenceStartEvent, pos: Pos) -> Any:
        tag = self._tag(start, nodes.SequenceNode)
        if tag not in (REFERENCE_TAG, _SEQ_TAG):
            raise SourceProblem(pos, f"unsupported YAML tag {tag}; only !reference is allowed")
        items: list[Any] = []
        ipos: list[Pos] = []
        event = self.event()
        while not isinstance(event, events.SequenceEndEvent):
            ipos.append(_mark(self.filename, event))
            items.append(self.node(event))
            event = self.event()
        if tag == REFERENCE_TAG:
            if not items or not all(isinstance(i, str | int) for i in items):
                raise SourceProblem(
                    pos, "!reference needs a list of names, like !reference [.setup, script]"
                )
            return Ref(tuple(str(i) for i in items), pos)
        return YList(pos, items, ipos)

    def _key(self, event: events.Event) -> tuple[str, bool]:
        """A mapping key's text, and whether it is the ``<<`` merge key."""
        if isinstance(event, events.AliasEvent):
            record = self.alias(event)
            if record.key is None:
                raise SourceProblem(
                    _mark(self.filename, event),
                    "mapping keys must be plain names, not lists or mappings",
                )
            return record.key, record.merge
        pos = _mark(self.filename, event)
        if not isinstance(event, events.ScalarEvent):
            raise SourceProblem(pos, "mapping keys must be plain names, not lists or mappings")
        self.budget.add_nodes(1, pos)
        text = str(event.value)
        merge = self._tag(event, nodes.ScalarNode) == _MERGE_TAG
        if event.anchor is not None:
            record = self._anchor(str(event.anchor), pos)
            record.key, record.merge, record.nodes, record.done = text, merge, 1, True
            record.value = text if merge else self._scalar(event, pos)
        return text, merge

    def _mapping(self, start: events.MappingStartEvent, pos: Pos) -> YMap:
        tag = self._tag(start, nodes.MappingNode)
        if tag != _MAP_TAG:
            raise SourceProblem(pos, f"unsupported YAML tag {tag}; only !reference is allowed")
        result = YMap(pos)
        merged: list[YMap] = []
        event = self.event()
        while not isinstance(event, events.MappingEndEvent):
            kpos = _mark(self.filename, event)
            key, merge = self._key(event)
            event = self.event()
            vpos = _mark(self.filename, event)
            value = self.node(event)
            if merge:
                merged.extend(self._merge_sources(value, vpos))
            else:
                result.put(key, value, kpos)
            event = self.event()
        # explicit keys win; among merged maps the first one listed wins
        for source in merged:
            self.budget.add_merged(len(source), pos)
            for key, value in source.items():
                if key not in result:
                    result.put(key, value, source.at(key))
        return result

    def _merge_sources(self, value: Any, pos: Pos) -> list[YMap]:
        if isinstance(value, YMap):
            return [value]
        if isinstance(value, YList) and all(isinstance(v, YMap) for v in value):
            return list(value)
        raise SourceProblem(
            pos,
            "<<: merge key needs a mapping or a list of mappings (use an alias like <<: *defaults)",
        )


def _parse(text: str, filename: str, budget: Budget) -> list[tuple[Any, Pos]]:
    budget.add_source(len(text), (filename, 1, 1))
    loader = _Loader(text)
    try:
        return _Builder(filename, loader, budget).documents()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        raise SourceProblem((filename, line, col), f"invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise SourceProblem((filename, 1, 1), f"invalid YAML: {exc}") from None
    except RecursionError:
        raise SourceProblem((filename, 1, 1), "invalid YAML: nested too deeply") from None
    finally:
        loader.dispose()


def parse_config(text: str, filename: str, budget: Budget) -> tuple[YMap | None, Any]:
    """A pipeline file: its ``spec:`` header document (None without one) and its body.

    GitLab's CI/CD inputs put ``spec: inputs:`` in a first document, separated from the
    configuration by ``---``. ``budget`` counts the text, nodes and aliases as
    :func:`parse_yaml` does.
    """
    docs = _parse(text, filename, budget)
    if not docs:
        return None, None
    if len(docs) == 1:
        return None, docs[0][0]
    (header, _), (body, bpos) = docs
    if not (isinstance(header, YMap) and "spec" in header):
        raise SourceProblem(
            bpos,
            "a pipeline file holds one YAML document; only a spec: header may come "
            "before a --- line",
        )
    for key in header:
        if key != "spec":
            raise SourceProblem(
                header.at(key), f"the spec: header document holds only spec:, not '{key}'"
            )
    return header, body


def parse_yaml(text: str, filename: str, budget: Budget | None = None) -> Any:
    """Parse one YAML document (a ``spec:`` header document first is refused).

    ``budget`` counts the text, nodes and aliases against the pipeline's limits and raises
    :class:`LimitExceeded`. Without one (other YAML files, like rollout plans) the default
    limits apply and going over one is a :class:`SourceProblem` like any other.
    """
    if budget is None:
        try:
            return parse_yaml(text, filename, Budget())
        except LimitExceeded as exc:
            raise SourceProblem(exc.pos or (filename, 1, 1), exc.message) from None
    docs = _parse(text, filename, budget)
    if len(docs) > 1:
        raise SourceProblem(docs[1][1], "a pipeline file must hold one YAML document, not several")
    return docs[0][0] if docs else None


def deep_merge(base: Any, over: Any, budget: Budget | None = None) -> Any:
    """GitLab's deep merge: mappings merge key by key, anything else is replaced by ``over``.

    ``budget`` counts the keys copied (see :meth:`Budget.add_merged`).
    """
    if not (isinstance(base, YMap) and isinstance(over, YMap)):
        return over
    if budget is not None:
        budget.add_merged(len(base) + len(over), over.pos)
    result = YMap(over.pos, dict(base.kpos))
    result.update(base)
    for key, value in over.items():
        result[key] = deep_merge(base[key], value, budget) if key in base else value
        result.kpos[key] = over.at(key)
    return result


def type_name(value: Any) -> str:
    """How a YAML value is called in messages."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Ref):
        return "a !reference"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "a string"
