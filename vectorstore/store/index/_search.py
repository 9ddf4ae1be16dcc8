"""How :class:`~vectorstore.ItemIndex` answers the rows of a query: by its HNSW graph or by exact search.

:meth:`ItemIndex.query <vectorstore.ItemIndex.query>` chooses per row; the functions here fill that row's
ids and scores. Exact search reads a copy of the live vectors sorted by id (:func:`exact_data`, kept in step
with changes by :mod:`._mutation`) in blocks of rows, and a blocked top-k (:func:`top_k_columns`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ...exceptions import InvalidModelData

# ``index`` below is a vectorstore.store.index.item_index.ItemIndex (not imported: item_index.py imports this).

__all__ = ["exact_data", "exclusions", "merge_outside", "normalised", "query_exact", "query_graph", "top_k_columns"]


def top_k_columns(sims: np.ndarray, k: int, block: int = 64) -> np.ndarray:
    """Column indices of the ``k`` largest values of each row (unordered), faster than a full argpartition.

    The k-th largest value of a row is at least the k-th largest of its block maxima, so only values
    reaching that bound are candidates: a few per row instead of every column.
    """
    rows, n = sims.shape
    if k >= n:
        return np.tile(np.arange(n), (rows, 1))
    blocks = -(-n // block)
    if blocks <= k * 2:
        return np.argpartition(sims, n - k, axis=1)[:, n - k :]
    padded = sims
    if blocks * block != n:
        padded = np.full((rows, blocks * block), -np.inf, dtype=sims.dtype)
        padded[:, :n] = sims
    maxima = padded.reshape(rows, blocks, block).max(axis=2)
    bound = np.partition(maxima, blocks - k, axis=1)[:, blocks - k]
    out = np.empty((rows, k), dtype=np.int64)
    hit_rows, hit_cols = np.nonzero(sims >= bound[:, None])
    starts = np.searchsorted(hit_rows, np.arange(rows + 1))
    for r in range(rows):
        cols = hit_cols[starts[r] : starts[r + 1]]
        if cols.size < k:  # only when -inf (excluded) values tie the bound: fall back for this row
            out[r] = np.argpartition(sims[r], n - k)[n - k :]
        elif cols.size == k:
            out[r] = cols
        else:
            out[r] = cols[np.argpartition(sims[r, cols], cols.size - k)[cols.size - k :]]
    return out


def exclusions(exclude: Any, rows: int) -> list[np.ndarray]:
    """One int64 array of excluded ids per query row (duplicates are harmless)."""
    empty = np.empty(0, dtype=np.int64)
    if exclude is None:
        return [empty] * rows
    if isinstance(exclude, np.ndarray) and exclude.ndim == 1:
        return [exclude.astype(np.int64, copy=False)] * rows
    exclude = list(exclude)
    if exclude and all(isinstance(e, Iterable) and not isinstance(e, str | bytes) for e in exclude):
        if len(exclude) != rows:
            raise InvalidModelData(f"exclude has {len(exclude)} rows for {rows} queries")
        return [e.astype(np.int64, copy=False) if isinstance(e, np.ndarray) else np.fromiter(e, dtype=np.int64)
                for e in exclude]
    shared = np.unique(np.asarray(exclude, dtype=np.int64)) if exclude else empty
    return [shared] * rows


def normalised(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit length (cosine space), as float32."""
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def query_graph(index: Any, q: np.ndarray, sel: np.ndarray, per_row: list[np.ndarray], fetch: int, k_out: int,
                labels: np.ndarray, scores: np.ndarray, num_threads: int, *, filtered: bool) -> None:
    """Rows ``sel`` of ``q`` by the graph, ``fetch`` neighbours asked, exclusions dropped after (rows the graph
    cannot answer, many items deleted, go to :func:`query_exact`)."""
    if index._augmented:
        data = np.zeros((len(sel), index.dim + 1), np.float32)
        data[:, : index.dim] = q[sel]
    else:
        data = q[sel]
    # hnswlib searches with max(ef, k): asking for more neighbours than ef needs no set_ef (which
    # would race with concurrent queries on the shared index).
    try:
        found, dist = index._index.knn_query(data, k=fetch, num_threads=num_threads)
    except RuntimeError:  # too few live items reached (many deleted): exact search answers
        query_exact(index, q, sel, per_row, k_out, labels, scores)
        return
    found = index._ids_of(found.astype(np.int64))
    sims = index._scores(dist, data[:, : index.dim])
    if not filtered:  # nothing to filter: one vectorised copy
        m = min(k_out, found.shape[1])
        labels[sel, :m], scores[sel, :m] = found[:, :m], sims[:, :m]
        return
    for j, r in enumerate(sel):
        row_l, row_s = found[j], sims[j]
        banned = per_row[r]
        if banned.size:
            span = index._label_span()
            if span is not None:  # small id range: a boolean table beats sorting or hashing
                table = np.zeros(span, dtype=bool)
                table[banned[(banned >= 0) & (banned < span)]] = True
                keep = ~table[row_l]
            else:
                keep = ~np.isin(row_l, banned)
            row_l, row_s = row_l[keep], row_s[keep]
        m = min(k_out, row_l.size)
        labels[r, :m], scores[r, :m] = row_l[:m], row_s[:m]


def merge_outside(index: Any, q: np.ndarray, sel: np.ndarray, per_row: list[np.ndarray], labels: np.ndarray,
                  scores: np.ndarray, test: Any = None) -> None:
    """Rows ``sel`` answered by the graph, with the ids the graph cannot place (added longer than the MIPS
    radius: ``index._outside``) scored exactly and merged in, in place (their graph scores, wrong, dropped).
    ``test``: an allowed-id test (a filtered search)."""
    outside = index._outside
    if not outside:
        return
    ids = np.fromiter((i for i in outside if i not in index._deleted and (test is None or test(i))), np.int64)
    if not ids.size:
        return
    vectors = np.stack([outside[i] for i in ids.tolist()])
    k_out = labels.shape[1]
    for r in sel.tolist():
        mine = ids[~np.isin(ids, per_row[r])] if per_row[r].size else ids
        if not mine.size:
            continue
        row_l, row_s = labels[r], scores[r]
        keep = (row_l >= 0) & ~np.isin(row_l, ids)
        cand_l = np.concatenate([row_l[keep], mine])
        cand_s = np.concatenate([row_s[keep], (vectors[np.isin(ids, mine)] @ q[r]).astype(np.float32)])
        order = np.argsort(-cand_s, kind="stable")[:k_out]
        labels[r], scores[r] = -1, np.nan
        labels[r, : order.size], scores[r, : order.size] = cand_l[order], cand_s[order]


def query_exact(index: Any, q: np.ndarray, sel: np.ndarray, per_row: list[np.ndarray], k_out: int,
                labels: np.ndarray, scores: np.ndarray) -> None:
    """Rows ``sel`` of ``q`` by exact blocked matrix products over the live vectors."""
    vectors, ids, dead = exact_data(index)
    n = len(ids)
    dense = ids[0] == 0 and ids[-1] == n - 1  # ids are sorted and unique: 0..n-1 means column = id
    block = max(1, index.EXACT_BUDGET // max(1, n) // 4)
    for start in range(0, sel.size, block):
        part = sel[start : start + block]
        data = q[part] if index.space != "cosine" else normalised(q[part])
        if index.space == "l2":
            sims = -(np.square(vectors).sum(1)[None, :] - 2.0 * data @ vectors.T
                     + np.square(data).sum(1)[:, None])
        else:
            sims = data @ vectors.T
        banned = [per_row[r] for r in part]
        counts = np.fromiter((b.size for b in banned), np.int64, len(banned))
        if counts.any():
            cols = np.concatenate(banned)
            rows_of = np.repeat(np.arange(len(part)), counts)
            if not dense:
                pos = np.searchsorted(ids, cols)
                found = (pos < n) & (ids[np.minimum(pos, n - 1)] == cols)
                rows_of, cols = rows_of[found], pos[found]
            inside = (cols >= 0) & (cols < n)
            sims[rows_of[inside], cols[inside]] = -np.inf
        if dead.size:
            sims[:, dead] = -np.inf
        top = top_k_columns(sims, k_out)
        top_s = np.take_along_axis(sims, top, axis=1)
        order = np.argsort(-top_s, axis=1, kind="stable")
        top, top_s = np.take_along_axis(top, order, axis=1), np.take_along_axis(top_s, order, axis=1)
        valid = np.isfinite(top_s)
        out_s = -top_s if index.space == "l2" else top_s
        labels[part] = np.where(valid, ids[top], -1)
        scores[part] = np.where(valid, out_s, np.nan)


def exact_data(index: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(vectors, sorted labels, columns of labels deleted since)`` for exact search (mask those columns)."""
    cached = index._exact
    if cached is None:  # hnswlib returns no vector of a deleted label: the copy holds the live ones
        labels = np.sort(index.ids())
        cached = index._exact = (index.get_vectors(labels.tolist()), labels, len(labels))
    vectors, labels, n = cached
    return vectors[:n], labels[:n], _dead_columns(index, labels[:n])


def _dead_columns(index: Any, labels: np.ndarray) -> np.ndarray:
    """Columns of :func:`exact_data`'s ``labels`` that are deleted labels (to mask in exact search)."""
    dead = index._dead
    if dead is None or (dead.size and dead[-1] >= len(labels)):
        gone = np.fromiter(index._deleted, np.int64, len(index._deleted))
        n = len(labels)
        dead = np.searchsorted(labels, gone) if gone.size else np.empty(0, np.int64)
        if gone.size:
            dead = np.sort(dead[(dead < n) & (labels[np.minimum(dead, max(n - 1, 0))] == gone)])
        index._dead = dead
    return dead
