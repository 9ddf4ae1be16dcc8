"""Evaluating filter expressions (:mod:`recsys.serving._filter_grammar`) on a serving model's item metadata.

An expression becomes the set of dense item ids it allows (:class:`vectorstore.AllowedIds`),
computed once per (expression, metadata state) and reused by every query with it. Item metadata can
change while a client serves (deltas): the state a set was computed for is part of its cache key
(:func:`metadata_state`), so a changed item is filtered by its new values on the next query.

Logic is SQL's (and Milvus'): a comparison with a missing value (``None``), or with a value of another
type than the literal (a string in a mostly numeric column), is *unknown*; ``not`` of unknown is unknown,
``and``/``or`` follow the three-valued tables, and only items whose whole expression is true are allowed.
A comparison whose field holds values, none of them of the literal's type (``year == "1990"`` on a numeric
column), is refused as :class:`~recsys.exceptions.InvalidFilter`, as Milvus refuses it.
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from vectorstore import AllowedIds

from ..exceptions import InvalidFilter
from ._filter_grammar import And, Compare, Literal, Member, Node, Not, Or, fields_of, parse_filter

__all__ = ["MAX_CACHE_BYTES", "FilterCache", "metadata_state"]

_NUMBER, _STRING, _BOOL = "number", "string", "boolean"


def _kind(value: Literal) -> str:
    if isinstance(value, bool):
        return _BOOL
    return _NUMBER if isinstance(value, int | float) else _STRING


#: the largest float64: an integer beyond it (a metadata value stored before writers refused them) is "other"
_FLOAT_MAX = float(np.finfo(np.float64).max)


def _as_float64(values: Sequence[Any]) -> np.ndarray | None:
    """``values`` as float64, or None when an integer among them is beyond float64 (Python ints are unbounded)."""
    try:
        return np.array(values, dtype=np.float64)
    except OverflowError:
        return None


def metadata_state(model: Any) -> Hashable:
    """What a filter's allowed set depends on: the version, its metadata (and its revision), the catalogue size.

    A serving model whose metadata changes in place bumps ``metadata_revision``; one replaced whole has a
    new ``metadata`` object.
    """
    return (model.name, model.version, id(model.metadata), getattr(model, "metadata_revision", 0), model.n_items)


class _Column:
    """One metadata column in the arrays comparisons need, split by the type of each value."""

    def __init__(self, values: Sequence[Any]) -> None:
        n = len(values)
        self.kinds = np.zeros(n, np.int8)  # 0 missing, 1 number, 2 string, 3 boolean, 4 other
        self.numbers = np.full(n, np.nan)
        self.bools = np.zeros(n, bool)
        self.codes = np.full(n, -1, np.int64)  # ranks among the sorted strings: ordering strings is comparing codes
        self.uniques: list[str] = []
        # One type throughout (missing values aside), told by pandas' C type inference: whole-array work, about
        # 10x faster than the per-value loop a mixed column takes (a metadata change rebuilds the column).
        inferred = pd.api.types.infer_dtype(values, skipna=True)
        numbers = _as_float64(values) if inferred in ("integer", "floating", "mixed-integer-float") else None
        if numbers is not None:
            self.numbers = numbers
            self.kinds[~np.isnan(self.numbers)] = 1
        elif inferred == "string":
            codes, uniques = pd.factorize(np.asarray(values, dtype=object))
            order = np.argsort(np.asarray(uniques, dtype=object)).astype(np.int64)
            rank = np.empty(len(order), np.int64)
            rank[order] = np.arange(len(order))
            self.uniques = [str(uniques[i]) for i in order]
            self.codes = np.where(codes >= 0, rank[np.maximum(codes, 0)] if len(rank) else -1, -1)
            self.kinds[codes >= 0] = 2
        elif inferred == "boolean":
            arr = np.asarray(values, dtype=object)
            present = ~pd.isna(arr)
            self.bools = present & (arr == True)  # noqa: E712 - elementwise, on an object array
            self.kinds[present] = 3
        elif inferred != "empty":  # mixed types, or an integer beyond float64
            self._by_value(values)
        self.has = {_NUMBER: bool((self.kinds == 1).any()), _STRING: bool((self.kinds == 2).any()),
                    _BOOL: bool((self.kinds == 3).any())}

    def _by_value(self, values: Sequence[Any]) -> None:
        """A column of mixed types, value by value."""
        strings: dict[str, list[int]] = {}
        for i, v in enumerate(values):
            if v is None or (isinstance(v, float) and v != v):
                continue
            if isinstance(v, bool):
                self.kinds[i], self.bools[i] = 3, v
            elif isinstance(v, float) or (isinstance(v, int) and -_FLOAT_MAX <= v <= _FLOAT_MAX):
                self.kinds[i], self.numbers[i] = 1, float(v)
            elif isinstance(v, str):
                self.kinds[i] = 2
                strings.setdefault(v, []).append(i)
            else:
                self.kinds[i] = 4
        self.uniques = sorted(strings)
        for code, s in enumerate(self.uniques):
            self.codes[strings[s]] = code

    def member(self, values: Sequence[Literal]) -> np.ndarray:
        """Where the value is one of ``values`` (all of one kind): one vectorised test, whatever their number."""
        kind = _kind(values[0])
        if kind == _NUMBER:
            return np.isin(self.numbers, np.array([float(v) for v in values])) & self.typed(kind)
        if kind == _BOOL:
            return self.typed(kind) & np.isin(self.bools, np.array(values, dtype=bool))
        u = self.uniques
        at = [(bisect.bisect_left(u, v), v) for v in values]
        found = [i for i, v in at if i < len(u) and u[i] == v]
        return np.isin(self.codes, np.array(found, dtype=np.int64)) & (self.codes >= 0)

    def typed(self, kind: str) -> np.ndarray:
        return self.kinds == {_NUMBER: 1, _STRING: 2, _BOOL: 3}[kind]

    def compare(self, op: str, value: Literal) -> np.ndarray:
        """Where ``value op`` holds among the values of ``value``'s type (others: False)."""
        kind = _kind(value)
        if kind == _NUMBER:
            x, value = self.numbers, float(value)
            with np.errstate(invalid="ignore"):
                out = {"==": x == value, "!=": x != value, "<": x < value, "<=": x <= value, ">": x > value,
                       ">=": x >= value}[op]
            return out & self.typed(kind)
        if kind == _BOOL:
            return self.typed(kind) & ((self.bools == value) if op == "==" else (self.bools != value))
        assert isinstance(value, str)
        c, u = self.codes, self.uniques
        lo, hi = bisect.bisect_left(u, value), bisect.bisect_right(u, value)
        ranged = {"==": (c >= lo) & (c < hi), "!=": (c < lo) | (c >= hi), "<": c < lo, "<=": c < hi,
                  ">": c >= hi, ">=": c >= lo}[op]
        return ranged & (c >= 0)


#: the bytes a client's cached filters may hold: a broad filter on a million items holds about 16 MB (its ids,
#: and the per-item table hnswlib's filter callable reads), and 64 of them held 488 MB
MAX_CACHE_BYTES = 64 << 20


def _footprint(allowed: AllowedIds, n_items: int) -> int:
    """What a cached set holds at most: its ids and, once searched with, a table of one pointer per item."""
    return int(allowed.ids.nbytes) + 8 * n_items


class FilterCache:
    """Allowed item sets of filter expressions, per metadata state, shared by a client's threads.

    Args:
        size: expressions (per state) kept; the least recently used go first.
        max_bytes: what the kept sets may hold together (:data:`MAX_CACHE_BYTES`); the least recently used go
            first, and the newest is kept even when it alone is larger.
    """

    def __init__(self, size: int = 64, max_bytes: int = MAX_CACHE_BYTES) -> None:
        self._size = size
        self._max_bytes = max_bytes
        self._bytes: dict[tuple[str, Hashable], int] = {}
        self._lock = threading.Lock()
        self._allowed: OrderedDict[tuple[str, Hashable], AllowedIds] = OrderedDict()
        self._columns: dict[tuple[Hashable, str], _Column] = {}

    def allowed(self, model: Any, expression: str | None) -> AllowedIds | None:
        """The dense item ids ``expression`` allows in ``model`` now (``None`` for no filter).

        Raises:
            InvalidFilter: bad syntax, an unknown field (the message lists the model's fields) or a comparison
                of a field with a value of a type it never holds.
        """
        if expression is None:
            return None
        node = parse_filter(expression)
        state = metadata_state(model)
        key = (expression, state)
        with self._lock:
            found = self._allowed.get(key)
            if found is not None:
                self._allowed.move_to_end(key)
                return found
        metadata = model.metadata
        unknown = sorted(fields_of(node) - set(metadata))
        if unknown:
            where = _position(node, unknown[0])
            raise InvalidFilter(f"unknown field {unknown[0]!r} at position {where}; model {model.name!r} "
                                f"v{model.version} has fields {sorted(metadata)}")
        n = model.n_items
        true, _ = self._evaluate(node, state, metadata, n)
        allowed = AllowedIds(np.flatnonzero(true))
        with self._lock:
            self._allowed[key] = allowed
            self._bytes[key] = _footprint(allowed, n)
            while len(self._allowed) > 1 and (len(self._allowed) > self._size
                                              or sum(self._bytes.values()) > self._max_bytes):
                self._bytes.pop(self._allowed.popitem(last=False)[0], None)
            # columns of an older state are never asked again
            self._columns = {k: v for k, v in self._columns.items() if k[0] == state}
        return allowed

    def _column(self, state: Hashable, metadata: dict[str, list], name: str, n: int) -> _Column:
        col = self._columns.get((state, name))
        if col is None:
            values = list(metadata[name])
            values += [None] * (n - len(values))  # items added without metadata
            col = self._columns[(state, name)] = _Column(values[:n])
        return col

    def _evaluate(self, node: Node, state: Hashable, metadata: dict[str, list], n: int) -> tuple[np.ndarray, ...]:
        """``(true, unknown)`` masks over the items (false = neither)."""
        if isinstance(node, Compare | Member):
            col = self._column(state, metadata, node.field, n)
            values = (node.value,) if isinstance(node, Compare) else node.values
            kinds = {_kind(v) for v in values}
            for kind in kinds:
                if not col.has[kind] and any(col.has.values()):
                    held = ", ".join(k for k, v in col.has.items() if v)
                    raise InvalidFilter(f"field {node.field!r} at position {node.pos} holds {held} values, "
                                        f"compared with a {kind}")
                if kind == _BOOL and isinstance(node, Compare) and node.op not in ("==", "!="):
                    raise InvalidFilter(f"field {node.field!r} at position {node.pos}: booleans compare only "
                                        f"with == and !=, not {node.op}")
            known = np.zeros(n, bool)
            for kind in kinds:
                known |= col.typed(kind)
            if isinstance(node, Compare):
                true = col.compare(node.op, node.value)
            else:
                true = np.zeros(n, bool)
                for kind in kinds:
                    true |= col.member([v for v in node.values if _kind(v) == kind])
                if node.negate:
                    true = known & ~true
            return true, ~known
        if isinstance(node, Not):
            true, unknown = self._evaluate(node.part, state, metadata, n)
            return ~true & ~unknown, unknown
        parts = [self._evaluate(p, state, metadata, n) for p in node.parts]
        if isinstance(node, And):
            true = np.logical_and.reduce([t for t, _ in parts])
            false = np.logical_or.reduce([~t & ~u for t, u in parts])
        else:
            assert isinstance(node, Or)
            true = np.logical_or.reduce([t for t, _ in parts])
            false = np.logical_and.reduce([~t & ~u for t, u in parts])
        return true, ~true & ~false


def _position(node: Node, field: str) -> int:
    if isinstance(node, Compare | Member):
        return node.pos if node.field == field else -1
    for part in (node.part,) if isinstance(node, Not) else node.parts:
        found = _position(part, field)
        if found >= 0:
            return found
    return -1
