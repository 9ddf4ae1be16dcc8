"""Filter expressions on item metadata: a small, safe parser of a subset of Milvus' boolean expressions.

The grammar (every expression it accepts means the same to Milvus, so one string serves both backends)::

    expr       := or
    or         := and { ("or" | "OR" | "||") and }
    and        := unary { ("and" | "AND" | "&&") unary }
    unary      := ("not" | "NOT" | "!") ("(" expr ")" | unary) | "(" expr ")" | comparison
    comparison := FIELD op literal | literal op FIELD
                | literal ("<" | "<=") FIELD ("<" | "<=") literal      (a range; also with ">" / ">=")
                | FIELD ["not" | "NOT"] ("in" | "IN") "[" literal { "," literal } "]"
    op         := "==" | "!=" | "<" | "<=" | ">" | ">="
    literal    := ["-" | "+"] NUMBER | STRING | true | false       (strings in "..." or '...', \\-escapes)

Examples: ``genre == "Comedy" and year >= 1990``, ``genre in ["Comedy", "Drama"]``, ``in_stock == true``,
``1990 <= year < 2000``, ``not (genre == "Horror" or rating < 3)``.

Nothing is evaluated as Python: the text is tokenised and parsed into a tree of :class:`Compare`,
:class:`Member`, :class:`And`, :class:`Or` and :class:`Not` nodes (:func:`parse_filter`), which
:mod:`recsys.serving._filter_cache` evaluates against a model's item metadata. A bad expression raises
:class:`~recsys.exceptions.InvalidFilter` naming the token and its position.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from ..exceptions import InvalidFilter

__all__ = ["MAX_FILTER_CHARS", "MAX_FILTER_TERMS", "MAX_LIST_VALUES", "MAX_NUMBER_CHARS", "And", "Compare", "Member",
           "Node", "Not", "Or", "fields_of", "parse_filter"]

#: the longest filter expression accepted
MAX_FILTER_CHARS = 10_000
#: how deeply parentheses and ``not`` may nest
MAX_DEPTH = 64
#: comparisons (and ``in`` lists) in one expression: each is a pass over every item of the catalogue, so the
#: bound keeps one request's cost to tens of milliseconds on a million items (a 620-term ``or`` took 4.7 CPU-s)
MAX_FILTER_TERMS = 64
#: values in one ``in [...]`` list (one vectorised membership test, whatever the length)
MAX_LIST_VALUES = 4_096
#: the longest number literal: beyond it a number is either out of float64's range or finer than it can hold
MAX_NUMBER_CHARS = 32

Literal = str | int | float | bool


@dataclass(frozen=True)
class Compare:
    """``field op value`` (``op`` one of ``== != < <= > >=``); ``pos`` is the field's offset in the text."""

    field: str
    op: str
    value: Literal
    pos: int


@dataclass(frozen=True)
class Member:
    """``field in [values]`` (``negate``: ``not in``)."""

    field: str
    values: tuple[Literal, ...]
    negate: bool
    pos: int


@dataclass(frozen=True)
class And:
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    part: Node


Node = Compare | Member | And | Or | Not

_AND, _OR, _NOT, _IN = {"and", "AND", "&&"}, {"or", "OR", "||"}, {"not", "NOT", "!"}, {"in", "IN"}
_TRUE, _FALSE = {"true", "True", "TRUE"}, {"false", "False", "FALSE"}
_KEYWORDS = _AND | _OR | _NOT | _IN | _TRUE | _FALSE
_CMP = {"==", "!=", "<", "<=", ">", ">="}
_FLIP = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t", "r": "\r"}
_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|&&|\|\||[<>!()\[\],+-])
  | (?P<quote>["'])
""", re.VERBOSE | re.ASCII)  # ASCII digits and spaces only: Milvus refuses other Unicode digits


@dataclass(frozen=True)
class _Tok:
    kind: str  # "number", "string", "word", "op", "end"
    text: str
    pos: int
    value: Literal | None = None


def _shown(text: str) -> str:
    return repr(text if len(text) <= 24 else text[:21] + "...")


def _tokens(text: str) -> list[_Tok]:
    out, i = [], 0
    while i < len(text):
        m = _TOKEN.match(text, i)
        if m is None:
            raise InvalidFilter(f"unexpected character {text[i]!r} at position {i}"
                                + (" (equality is '==')" if text[i] == "=" else ""))
        kind = m.lastgroup
        assert kind is not None
        if kind == "quote":
            value, end = _string(text, i)
            out.append(_Tok("string", text[i:end], i, value))
            i = end
            continue
        if kind == "number":
            out.append(_Tok("number", m.group(), i, _number(m.group(), i)))
        elif kind != "space":
            out.append(_Tok(kind, m.group(), i))
        i = m.end()
    out.append(_Tok("end", "end of expression", len(text)))
    return out


def _number(raw: str, pos: int) -> int | float:
    """A number literal's value: refused when longer than :data:`MAX_NUMBER_CHARS` or beyond float64."""
    if len(raw) > MAX_NUMBER_CHARS:
        raise InvalidFilter(f"number at position {pos} has {len(raw)} characters (at most {MAX_NUMBER_CHARS})")
    number = int(raw) if raw.isdigit() else float(raw)
    if isinstance(number, float) and math.isinf(number):
        raise InvalidFilter(f"number {_shown(raw)} at position {pos} is beyond float64's range")
    return number


def _string(text: str, start: int) -> tuple[str, int]:
    quote, i = text[start], start + 1
    chars: list[str] = []
    while i < len(text):
        c = text[i]
        if c == quote:
            return "".join(chars), i + 1
        if c == "\\":
            nxt = text[i + 1] if i + 1 < len(text) else ""
            if nxt not in _ESCAPES:
                raise InvalidFilter(f"unknown escape '\\{nxt}' at position {i} in the string at position {start}")
            chars.append(_ESCAPES[nxt])
            i += 2
            continue
        chars.append(c)
        i += 1
    raise InvalidFilter(f"unterminated string starting at position {start}")


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0
        self.depth = 0
        self.terms = 0

    def term(self, pos: int) -> None:
        """Counts one comparison (or ``in`` list) against :data:`MAX_FILTER_TERMS`."""
        self.terms += 1
        if self.terms > MAX_FILTER_TERMS:
            raise InvalidFilter(f"more than {MAX_FILTER_TERMS} comparisons (the one at position {pos} is one too "
                                "many): use 'field in [...]' for a list of values")

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def fail(self, expected: str, tok: _Tok | None = None) -> InvalidFilter:
        tok = tok or self.tok
        found = "the end of the expression" if tok.kind == "end" else _shown(tok.text)
        return InvalidFilter(f"expected {expected} at position {tok.pos}, found {found}")

    def parse(self) -> Node:
        node = self.disjunction()
        if self.tok.kind != "end":
            raise self.fail("'and', 'or' or the end of the expression")
        return node

    def disjunction(self) -> Node:
        return self.chain(_OR, self.conjunction, Or)

    def conjunction(self) -> Node:
        return self.chain(_AND, self.unary, And)

    def chain(self, words: set[str], operand: Callable[[], Node], kind: type[And] | type[Or]) -> Node:
        """``operand { word operand }``: one operand as itself, more as ``kind``."""
        parts = [operand()]
        while self.tok.text in words:  # a string token's text keeps its quotes: never a keyword
            self.take()
            parts.append(operand())
        return parts[0] if len(parts) == 1 else kind(tuple(parts))

    def unary(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise InvalidFilter(f"expression nests deeper than {MAX_DEPTH} levels at position {self.tok.pos}")
        try:
            if self.tok.text in _NOT:
                self.take()
                # Milvus binds 'not' tighter than a comparison ('not a == 1' is '(not a) == 1'):
                # asking for parentheses keeps every accepted expression's meaning the same in both
                if self.tok.text not in _NOT and self.tok.text != "(":
                    raise self.fail("'(' after 'not' (write: not (field == value))")
                return Not(self.unary())
            if self.tok.text == "(":
                self.take()
                node = self.disjunction()
                if self.tok.text != ")":
                    raise self.fail("')'")
                self.take()
                return node
            return self.comparison()
        finally:
            self.depth -= 1

    def field(self) -> _Tok:
        tok = self.tok
        if tok.kind != "word" or tok.text in _KEYWORDS:
            raise self.fail("a field name")
        return self.take()

    def literal(self) -> _Tok:
        tok = self.tok
        if tok.text in ("-", "+") and tok.kind == "op":
            self.take()
            num = self.tok
            if num.kind != "number":
                raise self.fail(f"a number after {tok.text!r}")
            self.take()
            assert isinstance(num.value, int | float)
            return _Tok("number", tok.text + num.text, tok.pos, -num.value if tok.text == "-" else num.value)
        if tok.kind in ("number", "string"):
            return self.take()
        if tok.kind == "word" and tok.text in _TRUE | _FALSE:
            self.take()
            return _Tok("bool", tok.text, tok.pos, tok.text in _TRUE)
        raise self.fail("a value (number, \"string\", true or false)")

    def is_literal(self) -> bool:
        tok = self.tok
        return tok.kind in ("number", "string") or tok.text in _TRUE | _FALSE or (
            tok.kind == "op" and tok.text in ("-", "+"))

    def comparison(self) -> Node:
        if self.is_literal():
            return self.reversed()
        name = self.field()
        self.term(name.pos)
        tok = self.tok
        if tok.text in _CMP:
            self.take()
            return Compare(name.text, tok.text, self._value(self.literal()), name.pos)
        negate = False
        if tok.text in ("not", "NOT"):
            self.take()
            negate = True
        if self.tok.text not in _IN:
            raise self.fail(f"a comparison ({', '.join(sorted(_CMP))}) or 'in' after field {name.text!r}")
        self.take()
        if self.tok.text != "[":
            raise self.fail("'[' opening the list of values")
        self.take()
        values = [self._value(self.literal())]
        while self.tok.text == ",":
            self.take()
            values.append(self._value(self.literal()))
            if len(values) > MAX_LIST_VALUES:
                raise InvalidFilter(f"the list of field {name.text!r} at position {name.pos} has more than "
                                    f"{MAX_LIST_VALUES} values")
        if self.tok.text != "]":
            raise self.fail("',' or ']'")
        self.take()
        return Member(name.text, tuple(values), negate, name.pos)

    def reversed(self) -> Node:
        """``literal op field`` and ranges ``lo < field <= hi``."""
        lo = self.literal()
        op1 = self.tok
        if op1.text not in _CMP:
            raise self.fail(f"a comparison after the value {lo.text}")
        self.take()
        name = self.field()
        self.term(name.pos)
        first = Compare(name.text, _FLIP[op1.text], self._value(lo), name.pos)
        op2 = self.tok
        if op2.text not in _CMP:
            return first
        same = {"<", "<="} if op1.text in ("<", "<=") else {">", ">="} if op1.text in (">", ">=") else set()
        if op2.text not in same:
            raise self.fail(f"a range ('a < field < b' or 'a > field > b'), not {op1.text} then {op2.text}", op2)
        self.take()
        return And((first, Compare(name.text, op2.text, self._value(self.literal()), name.pos)))

    @staticmethod
    def _value(tok: _Tok) -> Literal:
        assert tok.value is not None
        return tok.value


def parse_filter(text: str) -> Node:
    """The tree of a filter expression (cached: a page asks the same filter again and again).

    Raises:
        InvalidFilter: not a str, empty, longer than :data:`MAX_FILTER_CHARS`, more than
            :data:`MAX_FILTER_TERMS` comparisons or :data:`MAX_LIST_VALUES` values in a list, a number longer than
            :data:`MAX_NUMBER_CHARS` or beyond float64, or not in the grammar (the message names the offending
            token and its position).
    """
    if not isinstance(text, str):
        raise InvalidFilter(f"a filter is an expression string, got {type(text).__name__}")
    if len(text) > MAX_FILTER_CHARS:
        raise InvalidFilter(f"filter is {len(text)} characters long (at most {MAX_FILTER_CHARS})")
    if not text.strip():
        raise InvalidFilter("filter is empty")
    return _parse(text)


@lru_cache(maxsize=512)
def _parse(text: str) -> Node:
    return _Parser(text).parse()


def fields_of(node: Node) -> set[str]:
    """The field names an expression reads."""
    if isinstance(node, Compare | Member):
        return {node.field}
    if isinstance(node, Not):
        return fields_of(node.part)
    return set().union(*(fields_of(p) for p in node.parts))
