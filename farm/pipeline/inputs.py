"""CI/CD inputs: the ``spec: inputs:`` header and ``$[[ inputs.NAME ]]`` interpolation.

A file may start with a header document (``spec:``, then ``---``) declaring its inputs:
each has a ``type`` (string, number, boolean, array), maybe a ``default`` (without one it
is required), ``options``, a ``regex`` and a ``description``. Whoever includes the file
gives values with ``include: inputs:``; the values are checked against the spec (errors
point at the include), then written into the file's body wherever ``$[[ inputs.NAME ]]``
appears, keys included, before the file is merged. A block that is a whole value keeps
the input's type; inside a longer string it becomes text. Up to three functions may follow
the name: ``expand_vars``, ``truncate(offset, length)``, ``posix_escape``. Files without a
header are not interpolated (as on GitLab). ``$[[ matrix.X ]]`` blocks are left for
``needs:parallel:matrix`` (:mod:`farm.pipeline.matrix`). Every character written is
counted against the pipeline's limits.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from farm.pipeline.checks import Diags, as_str, as_str_list, unknown_keys
from farm.pipeline.expressions import Lookup
from farm.pipeline.limits import Budget, LimitExceeded, check_text
from farm.pipeline.variables import expand_text
from farm.pipeline.yamlsrc import Pos, Ref, YList, YMap, type_name

TYPES = ("string", "number", "boolean", "array")
MAX_FUNCTIONS = 3
BLOCK = re.compile(r"\$\[\[\s*((?:(?!\]\]).)*?)\s*\]\]", re.S)
_ACCESS = re.compile(r"(inputs|component|matrix)\.([A-Za-z0-9_-]+)\Z")
_FUNCTION = re.compile(r"([a-z_]+)\s*(?:\((.*)\))?\Z", re.S)
_SHELL_SAFE = re.compile(r"([^A-Za-z0-9_\-.,:+/@\n])")
_NO_VALUE = object()


class InputError(Exception):
    """A block that cannot be interpolated."""


@dataclass(frozen=True)
class InputSpec:
    """One declared input."""

    name: str
    pos: Pos
    type: str = "string"
    default: Any = _NO_VALUE
    options: tuple[Any, ...] | None = None
    regex: str | None = None

    @property
    def required(self) -> bool:
        return self.default is _NO_VALUE


@dataclass
class Header:
    """A file's ``spec:`` header: its inputs, and the ``component`` context it may use."""

    inputs: dict[str, InputSpec]
    component: tuple[str, ...] = ()
    pos: Pos = ("<pipeline>", 1, 1)


def _input(d: Diags, name: str, raw: Any, pos: Pos) -> InputSpec:
    if raw is None:
        return InputSpec(name, pos)
    if not isinstance(raw, YMap):
        d.add(pos, f"spec:inputs:{name} must be a mapping (type, default, ...), not a scalar")
        return InputSpec(name, pos)
    unknown_keys(d, raw, ("type", "default", "options", "regex", "description"), f"input {name}")
    kind = raw.get("type", "string")
    if kind not in TYPES:
        d.add(raw.at("type"), f"input {name}: type must be one of {', '.join(TYPES)}, not {kind!r}")
        kind = "string"
    options = None
    if "options" in raw:
        if not isinstance(raw["options"], list) or not raw["options"]:
            d.add(raw.at("options"), f"input {name}: options must be a non-empty list")
        else:
            options = tuple(raw["options"])
    regex = None
    if "regex" in raw:
        regex = as_str(d, raw["regex"], raw.at("regex"), f"input {name}: regex")
        if regex is not None and _compile(regex) is None:
            d.add(
                raw.at("regex"), f"input {name}: regex {regex!r} is not a valid regular expression"
            )
    if "description" in raw and raw["description"] is not None:
        as_str(d, raw["description"], raw.at("description"), f"input {name}: description")
    spec = InputSpec(name, pos, str(kind), options=options, regex=regex)
    if "default" in raw:
        default = raw["default"]
        if default is None and kind == "string":
            default = ""
        problem = check_value(spec, default)
        if problem is not None:
            d.add(raw.at("default"), f"input {name}: default value {problem}")
        spec = InputSpec(name, pos, str(kind), default, options, regex)
    return spec


def parse_header(d: Diags, header: YMap) -> Header:
    """The ``spec:`` of a header document."""
    spec, spos = header["spec"], header.at("spec")
    if not isinstance(spec, YMap):
        d.add(spos, f"spec must be a mapping with inputs:, not {type_name(spec)}")
        return Header({}, pos=spos)
    unknown_keys(d, spec, ("inputs", "component"), "spec")
    component = tuple(
        as_str_list(d, spec.get("component", []), spec.at("component"), "spec:component") or ()
    )
    for item in component:
        if item not in ("name", "version", "reference", "sha"):
            d.add(
                spec.at("component"),
                f"spec:component '{item}' is unknown; allowed: name, version, reference, sha",
            )
    raw = spec.get("inputs")
    inputs: dict[str, InputSpec] = {}
    if raw is not None and not isinstance(raw, YMap):
        d.add(spec.at("inputs"), f"spec:inputs must be a mapping of names, not {type_name(raw)}")
    elif raw is not None:
        for name, value in raw.items():
            if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
                d.add(raw.at(name), f"input name '{name}' may only hold letters, digits, - and _")
                continue
            inputs[name] = _input(d, name, value, raw.at(name))
    return Header(inputs, component, spos)


def _compile(regex: str) -> re.Pattern[str] | None:
    body = (
        regex[1:-1] if len(regex) > 1 and regex.startswith("/") and regex.endswith("/") else regex
    )
    try:
        return re.compile(body)
    except (re.error, RecursionError, OverflowError):
        return None


def check_value(spec: InputSpec, value: Any) -> str | None:
    """Why ``value`` does not fit ``spec`` (GitLab's wording), or None."""
    kind = spec.type
    ok = {
        "string": isinstance(value, str),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
        "array": isinstance(value, list),
    }[kind]
    if not ok:
        return f"is not a{'n' if kind == 'array' else ''} {kind}"
    if spec.options is not None and value not in spec.options:
        shown = ", ".join(str(o) for o in spec.options)
        return (
            f"'{value}' cannot be used because it is not in the list of allowed options ({shown})"
        )
    if spec.regex is not None and isinstance(value, str):
        pattern = _compile(spec.regex)
        if pattern is not None and pattern.search(value) is None:
            return f"'{value}' does not match the required regex {spec.regex}"
    return None


def bind(
    d: Diags, header: Header | None, given: Any, at: Pos, filename: str, pipeline: bool = False
) -> dict[str, Any] | None:
    """The values of a file's inputs: ``given`` (an include's ``inputs:``) over defaults.

    Problems are reported at ``at`` (the include) or at the given value; None when the file
    cannot be interpolated. ``pipeline``: the inputs of the pipeline file itself, which only
    get their defaults (a missing one is reported where it is declared).
    """
    if given is not None and not isinstance(given, YMap):
        d.add(at, f"include:inputs must be a mapping of NAME: value, not {type_name(given)}")
        return None
    values = given if given is not None else YMap(at)
    if header is None:
        if values:
            d.add(
                at, f"inputs are given, but '{filename}' has no spec:inputs header declaring them"
            )
        return None
    ok = True
    unknown = [k for k in values if k not in header.inputs]
    if unknown:
        d.add(
            values.at(unknown[0]),
            f"unknown input{'s' if len(unknown) > 1 else ''} for "
            f"'{filename}': {', '.join(unknown)}",
        )
        ok = False
    result: dict[str, Any] = {}
    for name, spec in header.inputs.items():
        if name in values:
            value = values[name]
            if value is None and spec.type == "string":
                value = ""
            problem = check_value(spec, value)
            if problem is not None:
                d.add(values.at(name), f"input '{name}' of '{filename}': provided value {problem}")
                ok = False
            result[name] = value
        elif spec.required and pipeline:
            d.add(
                spec.pos,
                f"pipeline input '{name}' is required, but farm starts pipelines with default "
                "values only: give it a default",
            )
            ok = False
        elif spec.required:
            d.add(
                at,
                f"input '{name}' of '{filename}' is required: no value is given and the "
                "spec has no default",
            )
            ok = False
        else:
            result[name] = spec.default
    return result if ok else None


def posix_escape(text: str) -> str:
    """Ruby's ``Shellwords.escape``: safe as one word in a POSIX shell."""
    if not text:
        return "''"
    return _SHELL_SAFE.sub(r"\\\1", text).replace("\n", "'\n'")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(_plain(value))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Ref):
        return {"!reference": list(value.path)}
    return value


def canonical(values: Mapping[str, Any] | None) -> str:
    """A stable text of input values: the same file included with other inputs is another."""
    return json.dumps(_plain(dict(values or {})), sort_keys=True, default=str)


class Interpolator:
    """Writes input values into one file's body."""

    def __init__(
        self,
        d: Diags,
        values: Mapping[str, Any],
        component: Mapping[str, str],
        env: Lookup,
        budget: Budget,
    ) -> None:
        self.d = d
        self.values = values
        self.component = component
        self.env = env
        self.budget = budget

    def block(self, inner: str) -> tuple[bool, Any]:
        """(True, value) for a block to replace; (False, None) for one left as written."""
        parts = [p.strip() for p in inner.split("|")]
        access = _ACCESS.match(parts[0])
        if access is None:
            raise InputError(f"invalid interpolation block '$[[ {inner} ]]'")
        scope, name = access.groups()
        if scope == "matrix":
            return False, None  # resolved per copy by needs:parallel:matrix
        if scope == "component":
            if name not in self.component:
                raise InputError(
                    f"unknown interpolation key: component.{name} (declare it in "
                    "spec:component, and include the file as a component)"
                )
            value: Any = self.component[name]
        elif name not in self.values:
            raise InputError(
                f"unknown interpolation key: inputs.{name} (not declared in spec:inputs)"
            )
        else:
            value = self.values[name]
        functions = parts[1:]
        if len(functions) > MAX_FUNCTIONS:
            raise InputError(f"too many functions in '$[[ {inner} ]]'; at most {MAX_FUNCTIONS}")
        for call in functions:
            value = self.function(call, value)
        return True, value

    def function(self, call: str, value: Any) -> str:
        found = _FUNCTION.match(call)
        name, args = (found.group(1), found.group(2)) if found else (call, None)
        text = _text(value)
        if name == "expand_vars" and args is None:
            return expand_text(text, self.env, self.budget.limits.max_job_bytes)
        if name == "posix_escape" and args is None:
            return posix_escape(text)
        if name == "truncate" and args is not None:
            numbers = [a.strip() for a in args.split(",")]
            if len(numbers) == 2 and all(n.isdigit() for n in numbers):
                offset, length = int(numbers[0]), int(numbers[1])
                return text[offset : offset + length]
        raise InputError(
            f"no function matching '{call}': use expand_vars, truncate(offset, length) "
            "or posix_escape"
        )

    def text(self, value: str, pos: Pos) -> Any:
        if "$[[" not in value:
            return value
        try:
            return self._text(value, pos)
        except LimitExceeded as exc:
            raise exc.located(pos, "$[[ inputs ]]: ") from None

    def _text(self, value: str, pos: Pos) -> Any:
        whole = BLOCK.fullmatch(value)
        try:
            if whole is not None:
                replace, found = self.block(whole.group(1))
                if not replace:
                    return value
                self._count(found, pos)
                return found

            def sub(m: re.Match[str]) -> str:
                replace, found = self.block(m.group(1))
                return _text(found) if replace else m.group(0)

            result = BLOCK.sub(sub, value)
        except InputError as exc:
            self.d.add(pos, str(exc))
            return value
        self._count(result, pos)
        return result

    def _count(self, value: Any, pos: Pos) -> None:
        if isinstance(value, str):
            check_text(len(value), self.budget.limits.max_job_bytes)
            self.budget.add_interpolated(len(value), pos)
        elif isinstance(value, list | dict):
            self.budget.add_interpolated(len(_text(value)), pos)
            self.budget.add_nodes(len(value), pos)

    def walk(self, value: Any, pos: Pos) -> Any:
        """``value`` with every block replaced (a new tree; the input is not changed)."""
        if isinstance(value, str):
            return self.text(value, pos)
        if isinstance(value, YMap):
            result = YMap(value.pos)
            for key, item in value.items():
                kpos = value.at(key)
                new_key = self.text(key, kpos) if "$[[" in key else key
                if not isinstance(new_key, str):
                    self.d.add(kpos, f"the key '{key}' must interpolate to a string")
                    new_key = key
                result.put(new_key, self.walk(item, kpos), kpos)
            return result
        if isinstance(value, YList):
            items = [self.walk(item, value.at(i)) for i, item in enumerate(value)]
            return YList(value.pos, items, list(value.ipos))
        if isinstance(value, Ref):
            path = tuple(str(self.text(p, value.pos)) for p in value.path)
            return Ref(path, value.pos)
        return value


def interpolate(
    d: Diags,
    body: Any,
    header: Header,
    values: Mapping[str, Any],
    env: Lookup,
    budget: Budget,
    component: Mapping[str, str] | None = None,
) -> Any:
    """``body`` with ``$[[ inputs.NAME ]]`` (and ``$[[ component.X ]]``) written in."""
    context = {k: v for k, v in (component or {}).items() if k in header.component}
    return Interpolator(d, values, context, env, budget).walk(body, header.pos)
