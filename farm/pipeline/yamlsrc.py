"""YAML with positions: parse text into plain values that remember where they came from.

Mappings become :class:`YMap` (a ``dict`` whose keys are always strings and which records
each key's position), sequences :class:`YList` (records each item's position), scalars
stay plain Python values. ``!reference [job, key, ...]`` becomes a :class:`Ref`, resolved
later once every include is merged. Anchors, aliases and ``<<:`` merge keys are applied
here. Nothing in this module raises anything but :class:`SourceProblem`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml
from yaml import nodes

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
MAX_NODES = 2_000_000


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


def _mark(filename: str, node: nodes.Node) -> Pos:
    m = node.start_mark
    return (filename, m.line + 1, m.column + 1)


class _Builder:
    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.done: dict[int, Any] = {}
        self.active: set[int] = set()
        self.count = 0

    def build(self, node: nodes.Node) -> Any:
        key = id(node)
        if key in self.done:
            return self.done[key]
        if key in self.active:
            raise SourceProblem(
                _mark(self.filename, node), "recursive alias: an anchor contains itself"
            )
        self.count += 1
        if self.count > MAX_NODES:
            raise SourceProblem(_mark(self.filename, node), "document too large")
        self.active.add(key)
        try:
            if isinstance(node, nodes.MappingNode):
                value: Any = self._mapping(node)
            elif isinstance(node, nodes.SequenceNode):
                value = self._sequence(node)
            else:
                value = self._scalar(node)
        finally:
            self.active.discard(key)
        self.done[key] = value
        return value

    def _scalar(self, node: nodes.Node) -> Any:
        pos = _mark(self.filename, node)
        if node.tag == REFERENCE_TAG:
            raise SourceProblem(pos, "!reference needs a list, like !reference [.setup, script]")
        if node.tag == _TIMESTAMP_TAG:
            return str(node.value)
        if node.tag not in _PLAIN_TAGS:
            raise SourceProblem(pos, f"unsupported YAML tag {node.tag}; only !reference is allowed")
        try:
            return _SCALARS.yaml_constructors[node.tag](_SCALARS, node)
        except (yaml.YAMLError, ValueError, OverflowError) as exc:
            raise SourceProblem(pos, f"invalid scalar {node.value!r}: {exc}") from None

    def _sequence(self, node: nodes.SequenceNode) -> Any:
        pos = _mark(self.filename, node)
        items = [self.build(child) for child in node.value]
        ipos = [_mark(self.filename, child) for child in node.value]
        if node.tag == REFERENCE_TAG:
            if not items or not all(isinstance(i, str | int) for i in items):
                raise SourceProblem(
                    pos, "!reference needs a list of names, like !reference [.setup, script]"
                )
            return Ref(tuple(str(i) for i in items), pos)
        if node.tag != _SEQ_TAG:
            raise SourceProblem(pos, f"unsupported YAML tag {node.tag}; only !reference is allowed")
        return YList(pos, items, ipos)

    def _key(self, node: nodes.Node) -> str:
        if not isinstance(node, nodes.ScalarNode):
            raise SourceProblem(
                _mark(self.filename, node),
                "mapping keys must be plain names, not lists or mappings",
            )
        return str(node.value)

    def _mapping(self, node: nodes.MappingNode) -> YMap:
        pos = _mark(self.filename, node)
        if node.tag != _MAP_TAG:
            raise SourceProblem(pos, f"unsupported YAML tag {node.tag}; only !reference is allowed")
        result = YMap(pos)
        merged: list[YMap] = []
        for knode, vnode in node.value:
            if knode.tag == _MERGE_TAG:
                merged.extend(self._merge_sources(vnode))
                continue
            key = self._key(knode)
            result.put(key, self.build(vnode), _mark(self.filename, knode))
        # explicit keys win; among merged maps the first one listed wins
        for source in merged:
            for key, value in source.items():
                if key not in result:
                    result.put(key, value, source.at(key))
        return result

    def _merge_sources(self, vnode: nodes.Node) -> list[YMap]:
        pos = _mark(self.filename, vnode)
        value = self.build(vnode)
        if isinstance(value, YMap):
            return [value]
        if isinstance(value, YList) and all(isinstance(v, YMap) for v in value):
            return list(value)
        raise SourceProblem(
            pos,
            "<<: merge key needs a mapping or a list of mappings (use an alias like <<: *defaults)",
        )


def parse_yaml(text: str, filename: str) -> Any:
    """Parse one YAML document; a file may also hold a ``spec:`` header document first."""
    try:
        docs = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        raise SourceProblem((filename, line, col), f"invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise SourceProblem((filename, 1, 1), f"invalid YAML: {exc}") from None
    except RecursionError:
        raise SourceProblem((filename, 1, 1), "invalid YAML: nested too deeply") from None
    docs = [d for d in docs if d is not None]
    if not docs:
        return None
    if len(docs) > 1:
        first = docs[0]
        if isinstance(first, nodes.MappingNode) and any(
            isinstance(k, nodes.ScalarNode) and k.value == "spec" for k, _ in first.value
        ):
            raise SourceProblem(
                _mark(filename, first), "spec:inputs headers are not supported by farm"
            )
        raise SourceProblem(
            _mark(filename, docs[1]), "a pipeline file must hold one YAML document, not several"
        )
    builder = _Builder(filename)
    try:
        return builder.build(docs[0])
    except RecursionError:
        raise SourceProblem((filename, 1, 1), "invalid YAML: nested too deeply") from None


def deep_merge(base: Any, over: Any) -> Any:
    """GitLab's deep merge: mappings merge key by key, anything else is replaced by ``over``."""
    if not (isinstance(base, YMap) and isinstance(over, YMap)):
        return over
    result = YMap(over.pos, dict(base.kpos))
    result.update(base)
    for key, value in over.items():
        result[key] = deep_merge(base[key], value) if key in base else value
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
