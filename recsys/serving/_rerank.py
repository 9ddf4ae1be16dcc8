"""The second stage of a two-stage model: the index's candidates re-ranked by the version's exact filter.

A version published with a filter (``meta["rerank"]``: :class:`~recsys.models.rerank.FilterRerank`, e.g. the
``filter`` model) is asked for ``candidates`` items by its index (hnswlib or Milvus: the first stage, its
low-dimensional vectors), and those are ordered by the filter computed from the request's history alone:
a known user's seen items, a folded-in history, an item (similar items). A version without a filter is
answered by the index as before; every function here is then the plain query.

Items a delta added after the fit are not in the filter: their part of a score is what the candidate
vectors give (the filter on its leading directions: ``item_vectors[i] . sum of the history's fold-in
vectors``), so they compete with the fitted items on the same scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vectorstore import AllowedIds

from ._ranking import search
from .serving_model import ServingModel

__all__ = ["ranked_query", "ranked_rank", "ranked_search", "ranked_subset", "rerank"]


def rerank(model: ServingModel, history: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of the candidate dense ``ids`` (an index's padding, -1, left out) by the version's filter
    for ``history`` (dense ids), best first: ``(ids, scores)``."""
    f = model.rerank
    assert f is not None  # callers check
    cand = np.asarray(ids, dtype=np.int64)
    cand = cand[cand >= 0]
    hist = np.unique(np.asarray(history, dtype=np.int64))
    known_c, known_h = cand < f.n_items, hist < f.n_items
    scores = np.zeros(len(cand), np.float32)
    if known_c.any():
        scores[known_c] = f.score(hist[known_h], cand[known_c])
    if not (known_c.all() and known_h.all()):  # items a delta added: the candidate vectors' share of the filter
        folded = model.fold_in_vectors[hist].sum(axis=0) if len(hist) else np.zeros(model.item_vectors.shape[1])
        if not known_c.all():
            scores[~known_c] = model.item_vectors[cand[~known_c]] @ folded
        if not known_h.all() and known_c.any():
            scores[known_c] += model.item_vectors[cand[known_c]] @ model.fold_in_vectors[hist[~known_h]].sum(axis=0)
    order = np.argsort(-scores, kind="stable")[:k]
    return cand[order], scores[order]


def _wide(model: ServingModel, k: int) -> int:
    assert model.rerank is not None
    return min(max(k, model.rerank.candidates), model.n_items)


def ranked_search(model: ServingModel, path: str, vectors: Any, k: int, exclude: Any, allowed: AllowedIds | None,
                  histories: np.ndarray | Sequence[np.ndarray], **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
    """:func:`~recsys.serving._ranking.search`, then (a version with a filter) its candidates re-ranked.

    Args:
        histories: the history of the query (one vector) or of each query (a batch): dense item ids.

    Returns:
        ``(ids, scores)`` as ``search`` gives them (a batch: rows padded with id -1 and score NaN).
    """
    if model.rerank is None:
        return search(model, path, vectors, k, exclude, allowed, **kwargs)
    ids, _ = search(model, path, vectors, _wide(model, k), exclude, allowed, **kwargs)
    if ids.ndim == 1:
        return rerank(model, histories, ids, k)  # type: ignore[arg-type]
    out_ids = np.full((len(ids), k), -1, np.int64)
    out_scores = np.full((len(ids), k), np.nan, np.float32)
    for row, (history, cand) in enumerate(zip(histories, ids)):
        top, scores = rerank(model, history, cand, k)
        out_ids[row, : len(top)], out_scores[row, : len(top)] = top, scores
    return out_ids, out_scores


def ranked_subset(model: ServingModel, vector: np.ndarray, allowed: set[int], k: int,
                  history: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of an ``include`` list's ``allowed`` dense ids: by the filter when the version has one,
    else by exact score against ``vector``."""
    cand = np.fromiter(allowed, np.int64, len(allowed))
    if model.rerank is not None and len(cand):
        return rerank(model, history, cand, k)
    scores = model.item_vectors[cand] @ vector
    order = np.argsort(-scores, kind="stable")[:k]
    return cand[order], scores[order]


def ranked_query(model: ServingModel, vectors: np.ndarray, k: int,
                 seen: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """A batch of users' ``recommend`` lists as the client ranks them (the precomputed top-N lists)."""
    args = model.search.get("recommend", {})
    if model.rerank is None:
        return model.index.query(vectors, k=min(k, model.n_items), exclude=seen, **args)
    ids, _ = model.index.query(vectors, k=_wide(model, k), exclude=seen, **args)
    out_ids = np.full((len(ids), min(k, model.n_items)), -1, np.int64)
    out_scores = np.full(out_ids.shape, np.nan, np.float32)
    for row, (history, cand) in enumerate(zip(seen, ids)):
        top, scores = rerank(model, history, cand, k)
        out_ids[row, : len(top)], out_scores[row, : len(top)] = top, scores
    return out_ids, out_scores


def ranked_rank(model: ServingModel, vector: np.ndarray, k: int, history: np.ndarray, *, exclude: np.ndarray,
                include: set[int] | None, passing: AllowedIds | None, expression: str | None,
                fields: list[str] | None) -> tuple[np.ndarray, np.ndarray, dict[str, list] | None]:
    """A known user's ``recommend`` through the version's index backend (``model.backend.rank``), its candidates
    re-ranked by the filter when the version has one: ``(dense ids, scores, fields or None)``."""
    if model.rerank is None:
        return model.backend.rank(model, vector, k, exclude=exclude, include=include, passing=passing,
                                  expression=expression, fields=fields)
    if include is not None:  # an include list: the filter scores every allowed item of it
        allowed = {i for i in include - set(exclude.tolist()) if passing is None or i in passing}
        ids, scores = ranked_subset(model, vector, allowed, k, history)
        return ids, scores, None
    wide, _, found = model.backend.rank(model, vector, _wide(model, k), exclude=exclude, include=None,
                                        passing=passing, expression=expression, fields=fields)
    wide = np.asarray(wide, dtype=np.int64)
    top, scores = rerank(model, history, wide, k)
    if found is None:
        return top, scores, None
    where = {int(d): n for n, d in enumerate(wide)}
    picked = [where[int(d)] for d in top]
    return top, scores, {name: [column[n] for n in picked] for name, column in found.items()}
