"""Exact top-k recommendation and ranking metrics under the LightGCN protocol.

:func:`top_k` ranks every item for every user (full ranking, seen items excluded) in user batches, so
memory is ``batch x n_items`` rather than ``n_users x n_items``. :func:`ranking_metrics` computes
Recall@k, NDCG@k, Precision@k and coverage exactly as ``shared/bench/recsys_score.py``: averaged over
users with a non-empty truth set; a user without recommendations counts as 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..data.interactions import Interactions
from ..exceptions import InvalidParameter

__all__ = ["top_k", "ranking_metrics"]


def top_k(
    user_vectors: np.ndarray,
    item_vectors: np.ndarray,
    k: int,
    exclude: sp.spmatrix | Sequence[np.ndarray] | None = None,
    users: np.ndarray | Sequence[int] | None = None,
    batch: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` items by ``user . item`` for each user, best first.

    Args:
        user_vectors: ``n_users x d`` (normalise rows beforehand for cosine).
        item_vectors: ``n_items x d``.
        k: number of items per user.
        exclude: items never recommended to a user (e.g. their training items): a users x items sparse
            matrix or a list of item-id arrays, both indexed by the row of ``user_vectors``.
        users: rows of ``user_vectors`` to rank for (default all).
        batch: users scored at once (memory ``batch x n_items`` floats).

    Returns:
        ``(items, scores)``: int64 and float32 arrays ``len(users) x k``; padded with -1 / -inf when a user
        has fewer than k candidate items.

    Raises:
        InvalidParameter: k or batch < 1, mismatched dimensions.
    """
    if k < 1 or batch < 1:
        raise InvalidParameter(f"k={k}, batch={batch}: both must be >= 1")
    U = np.asarray(user_vectors, dtype=np.float32)
    V = np.asarray(item_vectors, dtype=np.float32)
    if U.ndim != 2 or V.ndim != 2 or U.shape[1] != V.shape[1]:
        raise InvalidParameter(
            f"user_vectors {U.shape} and item_vectors {V.shape} must be 2-D with equal dims"
        )
    rows = np.arange(len(U)) if users is None else np.asarray(users, dtype=np.int64)
    n_items = len(V)
    if exclude is not None and sp.issparse(exclude):
        exclude = sp.csr_matrix(exclude)
    kk = min(k, n_items)
    out_items = np.full((len(rows), k), -1, dtype=np.int64)
    out_scores = np.full((len(rows), k), -np.inf, dtype=np.float32)
    VT = np.ascontiguousarray(V.T)
    for start in range(0, len(rows), batch):
        block = rows[start : start + batch]
        scores = U[block] @ VT
        if exclude is not None:
            r, c = _exclusions(exclude, block)
            scores[r, c] = -np.inf
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk] if kk < n_items else np.tile(
            np.arange(n_items), (len(block), 1)
        )
        part_scores = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-part_scores, axis=1, kind="stable")
        best = np.take_along_axis(part, order, axis=1)
        best_scores = np.take_along_axis(part_scores, order, axis=1)
        best[~np.isfinite(best_scores)] = -1
        out_items[start : start + len(block), :kk] = best
        out_scores[start : start + len(block), :kk] = best_scores
    return out_items, out_scores


def _exclusions(exclude: Any, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row-in-block, item) pairs to mask for the users in ``block``."""
    if sp.issparse(exclude):
        sub = exclude[block]
        counts = np.diff(sub.indptr)
        return np.repeat(np.arange(len(block)), counts), sub.indices
    parts = [np.asarray(exclude[u], dtype=np.int64) for u in block]
    counts = np.array([len(p) for p in parts], dtype=np.int64)
    cols = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    return np.repeat(np.arange(len(block)), counts), cols


def _truth_sets(truth: Any) -> dict[Any, set]:
    if isinstance(truth, Interactions):
        truth = truth.user_matrix()
    if sp.issparse(truth):
        m = sp.csr_matrix(truth)
        return {
            u: set(m.indices[m.indptr[u] : m.indptr[u + 1]].tolist())
            for u in range(m.shape[0])
            if m.indptr[u + 1] > m.indptr[u]
        }
    if isinstance(truth, Mapping):
        return {u: set(v) for u, v in truth.items()}
    raise InvalidParameter(
        f"truth: expected a dict, a sparse matrix or Interactions, got {type(truth).__name__}"
    )


def _rec_lists(recommendations: Any) -> dict[Any, list]:
    if isinstance(recommendations, Mapping):
        return {u: list(v) for u, v in recommendations.items()}
    if isinstance(recommendations, tuple) and len(recommendations) == 2:
        users, items = recommendations
        items = np.asarray(items)
        return {u: [i for i in row.tolist() if i >= 0] for u, row in zip(np.asarray(users).tolist(), items)}
    raise InvalidParameter(
        "recommendations: expected a dict user -> ranked items or a (users, items matrix) tuple, "
        f"got {type(recommendations).__name__}"
    )


def ranking_metrics(
    recommendations: Mapping[Any, Iterable] | tuple[np.ndarray, np.ndarray],
    truth: Mapping[Any, Iterable] | sp.spmatrix | Interactions,
    k: int,
    *,
    n_items: int | None = None,
) -> dict[str, float]:
    """Recall@k, NDCG@k, Precision@k and coverage@k of ranked recommendations against held-out truth.

    Args:
        recommendations: ``{user: [item, ...]}`` best first, or ``(users, items)`` with one row of item ids
            per user (-1 = padding), e.g. from :func:`top_k`.
        truth: held-out items per user: ``{user: items}``, a users x items sparse matrix or
            :class:`Interactions` (dense ids, e.g. from :meth:`Interactions.align`).
        k: cut-off.
        n_items: catalogue size for coverage (default: distinct items in truth and recommendations).

    Returns:
        ``{"recall@k", "ndcg@k", "precision@k", "coverage@k", "users"}``; averages over the users with a
        non-empty truth set (a user without recommendations scores 0).

    Raises:
        InvalidParameter: k < 1, unsupported input types, or no user with a non-empty truth set.
    """
    if k < 1:
        raise InvalidParameter(f"k={k}: must be >= 1")
    sets = _truth_sets(truth)
    recs = _rec_lists(recommendations)
    idcg_table = np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))
    recall = ndcg = precision = 0.0
    n = 0
    for user, relevant in sets.items():
        if not relevant:
            continue
        n += 1
        ranked = recs.get(user, [])[:k]
        hits = [1.0 if item in relevant else 0.0 for item in ranked]
        n_hits = sum(hits)
        recall += n_hits / len(relevant)
        precision += n_hits / k
        dcg = sum(h / math.log2(i + 2) for i, h in enumerate(hits))
        ndcg += dcg / idcg_table[min(len(relevant), k) - 1]
    if n == 0:
        raise InvalidParameter("truth: no user has a non-empty set of held-out items")
    recommended = {item for items in recs.values() for item in items[:k]}
    if n_items is None:
        n_items = len(recommended | {item for items in sets.values() for item in items})
    return {
        f"recall@{k}": recall / n,
        f"ndcg@{k}": ndcg / n,
        f"precision@{k}": precision / n,
        f"coverage@{k}": len(recommended) / max(n_items, 1),
        "users": n,
    }
