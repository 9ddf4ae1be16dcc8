"""Filtered search: the ids a query may return (:class:`AllowedIds`) and how :class:`ItemIndex` honours them.

A filter is applied inside the search, never to its results, so a query returns ``k`` ids whenever ``k``
allowed ids exist:

* few allowed ids: exact search over the allowed vectors only, gathered once per filter and index state
  (the last :data:`_GATHERED_SIZE` filters). Its cost grows with the allowed count ``a``; an HNSW graph
  search, which walks disallowed nodes to find ``ef`` allowed ones, costs about ``1 / share``. On 100k
  clustered 64-d items (CPU per query, 20 ids excluded, unfiltered 0.20 ms): 1% allowed 0.07 ms exact
  against 15.5 ms by the graph, 3% 0.37 / 5.7, 10% 0.51 / 2.0, 30% 0.31 / 0.82, 50% 0.40 / 0.60. So exact
  search answers up to ``a <= EXACT_ALLOWED`` (50,000: 12.8 MB of 64-d vectors held per filter), and on
  larger catalogues while ``a * share <= EXACT_PRODUCT``; it also never misses an allowed item the graph
  would not lead to;
* otherwise: hnswlib's own filtered search (``knn_query(filter=...)``), with a Python list's
  ``__getitem__`` as the test (the fastest callable hnswlib can call: no Python frame).
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from ...exceptions import InvalidModelData
from ._mutation import ALIAS_BASE
from ._search import exact_data, exclusions, merge_outside, top_k_columns
from .item_index import ItemIndex, as_vectors

__all__ = ["EXACT_ALLOWED", "EXACT_PRODUCT", "AllowedIds", "by_exact_search", "search"]

#: allowed sets up to this size are searched exactly
EXACT_ALLOWED = 50_000
#: ... and so are sets whose size times their share of the index is at most this
EXACT_PRODUCT = 2_500


class AllowedIds:
    """The ids a filtered query may return, built once and reused by every query with the same filter.

    Args:
        ids: the allowed ids (any order, repeats ignored; negative ids refused).

    Attributes:
        ids: sorted unique int64 ids.
    """

    def __init__(self, ids: Any) -> None:
        arr = np.unique(np.asarray(ids, dtype=np.int64).ravel())
        if arr.size and arr[0] < 0:
            raise InvalidModelData(f"allowed ids must be >= 0, got {int(arr[0])}")
        self.ids = arr
        self._tests: dict[int, Callable[[int], bool]] = {}

    @classmethod
    def from_mask(cls, mask: np.ndarray) -> AllowedIds:
        """The ids whose entry of the boolean ``mask`` is true."""
        return cls(np.flatnonzero(np.asarray(mask, dtype=bool)))

    def __len__(self) -> int:
        return int(self.ids.size)

    def __contains__(self, label: object) -> bool:
        if not isinstance(label, int | np.integer):
            return False
        pos = int(np.searchsorted(self.ids, label))
        return pos < self.ids.size and int(self.ids[pos]) == int(label)

    def test(self, span: int) -> Callable[[int], bool]:
        """``label -> allowed?`` for every label below ``span`` (hnswlib's ``filter`` callable), cached."""
        fn = self._tests.get(span)
        if fn is None:
            table = np.zeros(max(span, 1), dtype=bool)
            inside = self.ids[self.ids < span]
            table[inside] = True
            fn = table.tolist().__getitem__
            self._tests = {span: fn}  # one span at a time: an index that grew needs a longer table
        return fn


def by_exact_search(allowed: int, n: int) -> bool:
    """Whether a filter allowing ``allowed`` of ``n`` ids is answered by exact search over them."""
    return allowed <= EXACT_ALLOWED or allowed * allowed <= EXACT_PRODUCT * max(n, 1)


def search(index: ItemIndex, vectors: Any, k: int, allowed: AllowedIds, *,
           exclude: Iterable[int] | Sequence[Iterable[int]] | None = None, ef: int | None = None,
           exact: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`ItemIndex.query` restricted to ``allowed`` ids: the ``k`` best allowed ids of each query vector.

    Args:
        index: the index searched.
        vectors: one query vector (d,) or a batch (m x d).
        k: ids wanted; a row gets ``k`` whenever ``k`` allowed ids (not excluded, not deleted) exist.
        allowed: the ids that may be returned.
        exclude, ef, exact: as for :meth:`ItemIndex.query` (``exact=True`` or an index set exact: exact search).

    Returns:
        ``(ids, scores)`` as :meth:`ItemIndex.query` returns them (rows padded with -1 and NaN).

    Raises:
        InvalidModelData: wrong dimension, non-finite query or k < 1.
    """
    if not isinstance(k, int | np.integer) or isinstance(k, bool) or k < 1:
        raise InvalidModelData(f"k={k!r} must be a positive integer")
    single = np.ndim(vectors) == 1
    q = as_vectors(np.atleast_2d(vectors), name="query")
    if q.shape[1] != index.dim:
        raise InvalidModelData(f"query has dimension {q.shape[1]}, the index has {index.dim}")
    per_row = exclusions(exclude, q.shape[0])
    k_out = min(int(k), len(allowed))
    labels = np.full((q.shape[0], k_out), -1, dtype=np.int64)
    scores = np.full((q.shape[0], k_out), np.nan, dtype=np.float32)
    gate = getattr(index, "_gate", None)  # an index that changes in place (deltas) is read under its lock
    with gate.read() if gate is not None else contextlib.nullcontext():
        if k_out:
            _search(index, q, per_row, k_out, allowed, int(ef or index.ef), bool(exact or index.exact), labels,
                    scores)
    return (labels[0], scores[0]) if single else (labels, scores)


def _search(index: ItemIndex, q: np.ndarray, per_row: list[np.ndarray], k_out: int, allowed: AllowedIds,
            ef: int, exact: bool, labels: np.ndarray, scores: np.ndarray) -> None:
    """Fill ``labels``/``scores`` (rows x ``k_out``) with each row's best allowed ids: graph or exact."""
    n_allowed = len(allowed)
    if not n_allowed:
        return
    graph_ok = not exact and not by_exact_search(n_allowed, len(index))
    span = _span(index) if graph_ok else 0
    rows = np.arange(q.shape[0])
    excluded = np.array([e.size for e in per_row], dtype=np.int64)
    # a row whose exclusions leave too few allowed ids for the beam goes exact too
    graph_rows = rows[excluded + max(k_out, ef) < n_allowed // 2] if graph_ok else rows[:0]
    exact_rows = np.setdiff1d(rows, graph_rows, assume_unique=True)
    for r in graph_rows:
        if not _graph_row(index, q, int(r), per_row[r], k_out, allowed.test(span), ef, labels, scores):
            exact_rows = np.append(exact_rows, r)
        else:
            merge_outside(index, q, np.asarray([r]), per_row, labels, scores, allowed.test(span))
    if exact_rows.size:
        _exact_rows(index, q, exact_rows, per_row, k_out, allowed, labels, scores)


_spans: weakref.WeakKeyDictionary[ItemIndex, tuple[int, int]] = weakref.WeakKeyDictionary()


def _span(index: ItemIndex) -> int:
    """``max id + 1`` of the index (the length of a filter's lookup table), cached until the index grows."""
    small = index._label_span()
    if small is not None:
        return small
    count = index._index.element_count
    cached = _spans.get(index)
    if cached is None or cached[0] != count:
        cached = (count, int(np.max(index._all_ids())) + 1 if count else 0)
        _spans[index] = cached
    return cached[1]


def _graph_row(index: ItemIndex, q: np.ndarray, r: int, banned: np.ndarray, k_out: int,
               test: Callable[[int], bool], ef: int, labels: np.ndarray, scores: np.ndarray) -> bool:
    """One row by hnswlib's filtered search; ``False`` when hnswlib could not find enough allowed ids."""
    data = q[r : r + 1]
    if index._augmented:  # the graph holds augmented vectors; the query's extra coordinate is 0
        data = np.hstack([data, np.zeros((1, 1), np.float32)])
    fetch = max(k_out + int(banned.size), ef)
    owners = index._owners
    if len(owners):  # fresh nodes of ids whose vector changed are tested as those ids
        inner = test

        def test(label: int) -> bool:
            return inner(int(owners[label - ALIAS_BASE]) if label >= ALIAS_BASE else label)

    try:
        found, dist = index._index.knn_query(data, k=fetch, num_threads=1, filter=test)
    except RuntimeError:  # fewer than ``fetch`` reachable allowed nodes: exact search answers it
        return False
    row_l = index._ids_of(found[0].astype(np.int64))
    row_s = index._scores(dist, data[:, : index.dim])[0]
    if banned.size:
        keep = ~np.isin(row_l, banned)
        row_l, row_s = row_l[keep], row_s[keep]
    m = min(k_out, row_l.size)
    labels[r, :m], scores[r, :m] = row_l[:m], row_s[:m]
    return m == k_out


def _exact_rows(index: ItemIndex, q: np.ndarray, sel: np.ndarray, per_row: list[np.ndarray], k_out: int,
                allowed: AllowedIds, labels: np.ndarray, scores: np.ndarray) -> None:
    """Exact search of rows ``sel`` over the allowed vectors only."""
    cand_ids, cand = _candidates(index, allowed)
    if not cand_ids.size:
        return
    data = q[sel] if index.space != "cosine" else q[sel] / np.maximum(
        np.linalg.norm(q[sel], axis=1, keepdims=True), 1e-12)
    if index.space == "l2":
        sims = -(np.square(cand).sum(1)[None, :] - 2.0 * data @ cand.T + np.square(data).sum(1)[:, None])
    else:
        sims = data @ cand.T
    for j, r in enumerate(sel):
        banned = per_row[r]
        if banned.size:
            at = np.searchsorted(cand_ids, banned)
            hit = at < cand_ids.size
            at = at[hit][cand_ids[at[hit]] == banned[hit]]
            sims[j, at] = -np.inf
    m = min(k_out, cand_ids.size)
    top = top_k_columns(sims, m)
    top_s = np.take_along_axis(sims, top, axis=1)
    order = np.argsort(-top_s, axis=1, kind="stable")
    top, top_s = np.take_along_axis(top, order, axis=1), np.take_along_axis(top_s, order, axis=1)
    valid = np.isfinite(top_s)
    labels[sel, :m] = np.where(valid, cand_ids[top], -1)
    scores[sel, :m] = np.where(valid, -top_s if index.space == "l2" else top_s, np.nan)


#: the allowed vectors of the last few filters searched exactly, gathered once (a gather of 20,000 rows of 64
#: floats costs more than their product with the query)
_GATHERED: OrderedDict[int, tuple[AllowedIds, tuple[Any, ...], np.ndarray, np.ndarray]] = OrderedDict()
_GATHERED_SIZE = 8
_gathered_lock = threading.Lock()


def _candidates(index: ItemIndex, allowed: AllowedIds) -> tuple[np.ndarray, np.ndarray]:
    """The allowed ids the index holds (deleted ones left out) and their vectors, cached while the index is
    unchanged: any change to it (``add_items``, ``mark_deleted``) makes :func:`._search.exact_data` return
    a new deleted-columns array, held here so that its identity cannot be reused."""
    data = exact_data(index)
    vectors, ids = data[0], data[1]
    dead = data[2] if len(data) > 2 else None
    buffer = vectors.base if vectors.base is not None else vectors  # exact_data slices it anew per call
    key = (index, buffer, len(ids), dead)
    with _gathered_lock:
        found = _GATHERED.get(id(allowed))
        if (found is not None and found[0] is allowed and found[1][2] == key[2]
                and all(found[1][i] is key[i] for i in (0, 1, 3))):
            _GATHERED.move_to_end(id(allowed))
            return found[2], found[3]
    if ids.size and ids[0] == 0 and ids[-1] == ids.size - 1:  # dense ids: the column is the id
        pos = allowed.ids[allowed.ids < ids.size]
    else:
        pos = _present(ids, allowed.ids)
    if dead is not None and dead.size:  # columns of deleted ids (an index changed in place)
        pos = np.setdiff1d(pos, dead, assume_unique=True)
    cand_ids, cand = ids[pos], vectors[pos]
    with _gathered_lock:
        _GATHERED[id(allowed)] = (allowed, key, cand_ids, cand)
        _GATHERED.move_to_end(id(allowed))
        while len(_GATHERED) > _GATHERED_SIZE:
            _GATHERED.popitem(last=False)
    return cand_ids, cand


def _present(ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Positions in sorted ``ids`` of those ``wanted`` ids it holds."""
    pos = np.searchsorted(ids, wanted)
    inside = pos < ids.size
    pos, wanted = pos[inside], wanted[inside]
    return pos[ids[pos] == wanted]
