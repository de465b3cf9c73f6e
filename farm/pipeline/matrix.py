"""Matrix expressions: ``$[[ matrix.NAME ]]`` in ``needs:parallel:matrix``.

A ``parallel:matrix`` job can need its own counterpart among another matrix job's copies::

    needs:
      - job: build
        parallel:
          matrix:
            - PROVIDER: $[[ matrix.PROVIDER ]]

Each copy of the needing job writes its own value of ``PROVIDER`` in, so ``deploy: [aws]``
needs ``build: [aws]``. Expressions are resolved when the pipeline is created, by plain
text replacement, and may only name an identifier of the needing job's own matrix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from farm.pipeline.keywords import Matrix

EXPRESSION = re.compile(r"\$\[\[\s*matrix\.([A-Za-z0-9_-]+)\s*\]\]")
_ANY_BLOCK = re.compile(r"\$\[\[\s*((?:(?!\]\]).)*?)\s*\]\]")


class MatrixExpressionError(Exception):
    """An expression that names no identifier of the job's matrix."""


def has_expressions(rows: Matrix) -> bool:
    """Whether any value of ``rows`` holds a ``$[[ ... ]]`` block."""
    return any("$[[" in v for row in rows for values in row.values() for v in values)


def substitute(rows: Matrix, own: Mapping[str, str], job: str) -> Matrix:
    """``rows`` with every ``$[[ matrix.NAME ]]`` replaced by this copy's value of NAME."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in own:
            if not own:
                raise MatrixExpressionError(
                    f"$[[ matrix.{name} ]] can only be used by a parallel:matrix job; "
                    f"'{job}' has no matrix"
                )
            raise MatrixExpressionError(
                f"$[[ matrix.{name} ]]: '{name}' is not an identifier of the parallel:matrix "
                f"of '{job}' (it has {', '.join(own)})"
            )
        return own[name]

    result: Matrix = []
    for row in rows:
        new: dict[str, list[str]] = {}
        for key, values in row.items():
            replaced = [EXPRESSION.sub(sub, v) for v in values]
            for v in replaced:
                block = _ANY_BLOCK.search(v)
                if block is not None:
                    raise MatrixExpressionError(
                        f"'$[[ {block.group(1)} ]]' is not a matrix expression; "
                        "needs:parallel:matrix accepts $[[ matrix.NAME ]]"
                    )
            new[key] = replaced
        result.append(new)
    return result


def describe(rows: Matrix) -> str:
    """A selector as people write it: ``{PROVIDER: aws, STACK: [a, b]}``."""
    parts = []
    for row in rows:
        fields = ", ".join(
            f"{k}: {vs[0]}" if len(vs) == 1 else f"{k}: [{', '.join(vs)}]" for k, vs in row.items()
        )
        parts.append("{" + fields + "}")
    return ", ".join(parts)
