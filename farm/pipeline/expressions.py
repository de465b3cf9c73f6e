"""The ``rules:if`` expression language: parse once, evaluate against variables.

Grammar (GitLab's): ``||`` binds looser than ``&&``; parentheses group; a comparison is
``operand (== | != | =~ | !~) operand`` or a bare operand (true when it is a non-empty
string). Operands: ``$VAR`` / ``${VAR}`` (unset is null), ``"string"``, ``'string'``,
``null``, ``/regex/flags`` (right of ``=~``/``!~``; a variable holding ``/regex/`` works too).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

Lookup = Callable[[str], str | None]
Eval = Callable[[Lookup], bool]
Operand = Callable[[Lookup], "str | re.Pattern[str] | None"]

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<var>\$\{[A-Za-z_][A-Za-z0-9_]*\}|\$[A-Za-z_][A-Za-z0-9_]*)
    | (?P<str>"[^"]*"|'[^']*')
    | (?P<null>null\b)
    | (?P<regex>/(?:\\.|[^/\\])*/[a-zA-Z]*)
    | (?P<op>==|!=|=~|!~|&&|\|\||\(|\))
    )""",
    re.X,
)
_FLAGS = {"i": re.IGNORECASE, "m": re.DOTALL, "s": re.DOTALL, "x": re.VERBOSE, "U": 0}


class ExprError(Exception):
    """An expression that cannot be parsed; ``offset`` is where, 0-based."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    offset: int


def compile_regex(literal: str) -> re.Pattern[str]:
    """``/pattern/flags`` (Ruby/RE2 flavour) as a Python pattern; ValueError if invalid."""
    if len(literal) < 2 or not literal.startswith("/") or literal.rfind("/") == 0:
        raise ValueError(f"{literal!r} is not a /regex/")
    end = literal.rfind("/")
    body, flags = literal[1:end], literal[end + 1 :]
    bits = 0
    for f in flags:
        if f not in _FLAGS:
            raise ValueError(f"unknown regex flag {f!r} (allowed: i, m, s, x)")
        bits |= _FLAGS[f]
    body = re.sub(r"\(\?<(?=[A-Za-z_])", "(?P<", body).replace(r"\z", r"\Z").replace(r"\/", "/")
    try:
        return re.compile(body, bits)
    except (re.error, OverflowError, RecursionError) as exc:
        raise ValueError(f"invalid regex {literal}: {exc}") from None


def _tokenize(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            at = pos + len(text[pos:]) - len(text[pos:].lstrip())
            raise ExprError(f"unexpected {text[at : at + 10]!r}", at)
        kind = m.lastgroup or "op"
        start = m.start(kind)
        tokens.append(_Tok(kind, m.group(kind), start))
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    def peek(self) -> _Tok | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise ExprError("expression ends too early", len(self.text))
        self.i += 1
        return tok

    def parse(self) -> Eval:
        if not self.tokens:
            raise ExprError("empty expression", 0)
        result = self.or_expr()
        extra = self.peek()
        if extra is not None:
            raise ExprError(f"unexpected {extra.text!r}", extra.offset)
        return result

    def or_expr(self) -> Eval:
        parts = [self.and_expr()]
        while (tok := self.peek()) is not None and tok.text == "||":
            self.i += 1
            parts.append(self.and_expr())
        if len(parts) == 1:
            return parts[0]
        return lambda env: any(p(env) for p in parts)

    def and_expr(self) -> Eval:
        parts = [self.primary()]
        while (tok := self.peek()) is not None and tok.text == "&&":
            self.i += 1
            parts.append(self.primary())
        if len(parts) == 1:
            return parts[0]
        return lambda env: all(p(env) for p in parts)

    def primary(self) -> Eval:
        tok = self.peek()
        if tok is not None and tok.text == "(":
            self.i += 1
            inner = self.or_expr()
            close = self.take()
            if close.text != ")":
                raise ExprError(f"expected ')' but found {close.text!r}", close.offset)
            return inner
        left = self.operand()
        tok = self.peek()
        if tok is None or tok.text not in ("==", "!=", "=~", "!~"):
            return lambda env: bool(left(env))
        self.i += 1
        right = self.operand()
        return _compare(tok.text, left, right)

    def operand(self) -> Operand:
        tok = self.take()
        if tok.kind == "var":
            name = tok.text.strip("${}")
            return lambda env: env(name)
        if tok.kind == "str":
            text = tok.text[1:-1]
            return lambda env: text
        if tok.kind == "null":
            return lambda env: None
        if tok.kind == "regex":
            try:
                pattern = compile_regex(tok.text)
            except ValueError as exc:
                raise ExprError(str(exc), tok.offset) from None
            return lambda env: pattern
        raise ExprError(
            f"expected a $VARIABLE, 'string', null or /regex/ but found {tok.text!r}", tok.offset
        )


def _as_pattern(value: str | re.Pattern[str] | None) -> re.Pattern[str] | None:
    if isinstance(value, re.Pattern):
        return value
    if value is None:
        return None
    try:
        return compile_regex(value)
    except ValueError:
        return re.compile(re.escape(value))


def _compare(op: str, left: Operand, right: Operand) -> Eval:
    if op in ("==", "!="):
        equal = op == "=="

        def eq(env: Lookup) -> bool:
            a, b = left(env), right(env)
            a = a.pattern if isinstance(a, re.Pattern) else a
            b = b.pattern if isinstance(b, re.Pattern) else b
            return (a == b) is equal

        return eq
    matches = op == "=~"

    def search(env: Lookup) -> bool:
        subject = left(env)
        pattern = _as_pattern(right(env))
        if subject is None or pattern is None:
            return not matches
        text = subject.pattern if isinstance(subject, re.Pattern) else subject
        try:
            return (pattern.search(text) is not None) is matches
        except RecursionError:
            return not matches

    return search


@lru_cache(maxsize=2048)
def compile_expression(text: str) -> Eval:
    """Parse ``text`` once into a function of a variable lookup; ExprError if invalid."""
    try:
        return _Parser(text).parse()
    except RecursionError:
        raise ExprError("expression nested too deeply", 0) from None
