"""``variables:`` blocks and ``$VAR`` / ``${VAR}`` expansion.

Values are expanded against the other variables the job sees and the predefined ones the
coordinator gives; a reference to an unknown variable is left as written, since the job's
shell expands it at run time. ``$$`` is a literal ``$`` in variable values.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from farm.pipeline.checks import Diags, as_bool, as_str, as_str_list, unknown_keys
from farm.pipeline.limits import check_text
from farm.pipeline.yamlsrc import Pos, YMap, type_name

_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
_NAME = re.compile(r"[A-Za-z0-9_]+\Z")
_MAX_DEPTH = 50


@dataclass(frozen=True)
class Var:
    """One variable as written: its raw value and whether ``$VAR`` references expand."""

    value: str
    expand: bool = True


def parse_variables(d: Diags, value: Any, pos: Pos, what: str) -> dict[str, Var]:
    """A ``variables:`` mapping; values are strings/numbers or ``{value, description, expand}``."""
    if value is None:
        return {}
    if not isinstance(value, YMap):
        d.add(pos, f"{what} must be a mapping of NAME: value, not {type_name(value)}")
        return {}
    result: dict[str, Var] = {}
    for name, raw in value.items():
        kpos = value.at(name)
        if not _NAME.match(name):
            d.add(kpos, f"variable name '{name}' may only hold letters, digits and _")
            continue
        if isinstance(raw, YMap):
            var = _complex(d, name, raw)
            if var is not None:
                result[name] = var
            continue
        if raw is None:
            result[name] = Var("")  # GitLab reads a null value as an empty string
            continue
        if isinstance(raw, bool):
            shown = str(raw).lower()
            d.add(
                kpos,
                f"variable {name} must be a string or number, not {shown}; quote it: '{shown}'",
            )
            continue
        text = as_str(d, raw, kpos, f"variable {name}")
        if text is not None:
            result[name] = Var(text)
    return result


def _complex(d: Diags, name: str, raw: YMap) -> Var | None:
    """``NAME: {value, description, options, expand}``."""
    unknown_keys(d, raw, ("value", "description", "expand", "options"), f"variable {name}")
    value = raw.get("value", "")
    text = "" if value is None else as_str(d, value, raw.at("value"), f"variables:{name}:value")
    flag = as_bool(d, raw.get("expand", True), raw.at("expand"), f"variables:{name}:expand")
    if "description" in raw and raw["description"] is not None:
        as_str(d, raw["description"], raw.at("description"), f"variables:{name}:description")
    if "options" in raw:
        options = as_str_list(d, raw["options"], raw.at("options"), f"variables:{name}:options")
        if options is not None and text is not None and text not in options:
            d.add(
                raw.at("value"),
                f"variables:{name}:value {text!r} must be one of its options: {', '.join(options)}",
            )
    return Var(text, True if flag is None else flag) if text is not None else None


def expand_text(text: str, lookup: Callable[[str], str | None], limit: int | None = None) -> str:
    """Replace ``$VAR``/``${VAR}`` that ``lookup`` knows; leave the rest (and ``$$``) as is.

    With ``limit``, a result longer than ``limit`` characters raises ``LimitExceeded`` as
    soon as the expansion gets there.
    """
    if "$" not in text:
        return text
    length = len(text)

    def sub(m: re.Match[str]) -> str:
        nonlocal length
        name = m.group(1) or m.group(2)
        if name is None:
            return m.group(0)
        found = lookup(name)
        if found is None:
            return m.group(0)
        length += len(found) - len(m.group(0))
        check_text(length, limit)
        return found

    return _REF.sub(sub, text)


def resolve(
    raw: Mapping[str, Var], base: Mapping[str, str], limit: int | None = None
) -> dict[str, str]:
    """Final values of ``raw``: references to other ``raw`` or ``base`` variables expanded.

    With ``limit``, a value that would grow past ``limit`` characters raises
    ``LimitExceeded`` while it is being expanded (``$A$A$A...`` nested is a string bomb).
    """
    done: dict[str, str] = {}
    active: set[str] = set()

    def value_of(name: str, depth: int) -> str | None:
        if name in done:
            return done[name]
        var = raw.get(name)
        if var is None:
            return base.get(name)
        if name in active or depth > _MAX_DEPTH:
            return None  # a cycle: leave the reference as written
        if not var.expand or "$" not in var.value:
            done[name] = var.value
            return var.value
        active.add(name)
        length = len(var.value)

        def sub(m: re.Match[str]) -> str:
            nonlocal length
            ref = m.group(1) or m.group(2)
            if ref is None:
                return "$"
            found = value_of(ref, depth + 1)
            if found is None:
                return m.group(0)
            length += len(found) - len(m.group(0))
            check_text(length, limit)
            return found

        try:
            result = _REF.sub(sub, var.value)
        finally:
            active.discard(name)
        done[name] = result
        return result

    return {name: value_of(name, 0) or "" for name in raw}


def lookup_in(*layers: Mapping[str, str]) -> Callable[[str], str | None]:
    """A lookup over mappings, the first one holding the name wins."""

    def find(name: str) -> str | None:
        for layer in layers:
            if name in layer:
                return layer[name]
        return None

    return find
